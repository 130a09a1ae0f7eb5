// Package mqttlink is the agent's Uplink over MQTT 3.1.1 with paho: QoS 1 publishes that
// return after the broker's PUBACK, a retained "online" state on every connect with a retained
// "offline" last-will, and the controller's acks delivered on a channel.
//
// Durability does not live here: paho's in-memory store is used (its file store does not
// fsync) and a publish token may complete without delivery across a reconnect, so the agent
// keeps results in its own buffer until the controller acks them.
package mqttlink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/pahostore"
)

// Options configures a Link. Broker and DeviceID are required.
type Options struct {
	Broker   string // tcp://host:port, ssl://…, ws://…
	DeviceID string
	ClientID string // defaults to DeviceID
	// Username defaults to DeviceID, so broker ACLs keyed on the username (Mosquitto's %u)
	// match the device's topics.
	Username string
	Password string
	// TLS configures ssl:// brokers (CA to trust, client certificate); nil uses the system's
	// roots and no client certificate.
	TLS *tls.Config

	KeepAlive            time.Duration
	ConnectTimeout       time.Duration // one connection attempt
	ConnectRetryInterval time.Duration // between attempts before the first connection
	MaxReconnectInterval time.Duration // cap of the backoff between reconnect attempts
	// Jitter delays every connection attempt but the first by a random part of the current
	// backoff step, up to this fraction of it, so a fleet that lost its broker together does
	// not reconnect in lock-step (paho's own backoff has no jitter). Negative disables it.
	Jitter float64
	// AuthRetryInterval and AuthRetryMax space the attempts after the broker refused the
	// credentials: the first retry waits AuthRetryInterval, each later one twice as long up
	// to AuthRetryMax. Retrying a refused password every few seconds only fills the logs of
	// both sides; the credentials are more likely to be fixed in minutes than in seconds.
	AuthRetryInterval time.Duration
	AuthRetryMax      time.Duration
	// Epoch is the buffer's epoch: only acks carrying it are delivered (see wire.Ack and
	// SetEpoch).
	Epoch  uint64
	Logger *slog.Logger // nil logs nothing
}

// Defaults for zero Options fields.
const (
	DefaultKeepAlive            = 30 * time.Second
	DefaultConnectTimeout       = 10 * time.Second
	DefaultConnectRetryInterval = 2 * time.Second
	DefaultMaxReconnectInterval = 30 * time.Second
	DefaultJitter               = 0.5
	DefaultAuthRetryInterval    = time.Minute
	DefaultAuthRetryMax         = 10 * time.Minute
)

// maxCoalescedRejected bounds the rejections carried by acks waiting unread in the channel;
// beyond it they are counted (RejectedLost) rather than kept.
const maxCoalescedRejected = 4096

// ErrAuthRefused is reported (Err) while the broker refuses the link's credentials.
var ErrAuthRefused = errors.New("mqtt authentication refused")

// ErrSubscribeRefused is reported (Err) when the broker refused the ack subscription: the
// device would publish without ever learning what the controller stored.
var ErrSubscribeRefused = errors.New("mqtt subscription refused")

// Link is an agent.Uplink. Its methods are safe for concurrent use.
type Link struct {
	opts   Options
	client mqtt.Client
	log    *slog.Logger

	acks         chan wire.Ack
	ackMu        sync.Mutex // serializes ack hand-off so coalescing keeps the maximum
	epoch        atomic.Uint64
	badAcks      atomic.Uint64
	foreignAcks  atomic.Uint64
	rejectedLost atomic.Uint64
	failures     atomic.Int64 // consecutive failed connection attempts
	authFailures atomic.Int64 // consecutive attempts refused for bad credentials
	attempts     atomic.Int64 // connection attempts since New
	connecting   sync.Once
	closed       chan struct{} // closed by Close: ends a jitter wait
	closeOnce    sync.Once
	// redialMu orders Redial and Close: Close takes it after closing closed, so a Redial
	// under way finishes before Close disconnects, and none starts after.
	redialMu sync.Mutex
	redials  sync.WaitGroup // Redial's reconnecting goroutines; Close waits for them

	// driftAcks delivers the controller's drift-summary acks (driftack.go).
	driftAcks chan wire.DriftAck
	upd       updates     // model-update traffic, see update.go
	capAcks   captureAcks // capture.go

	// errMu guards err, the link's current standing problem (nil when none).
	errMu sync.Mutex
	err   error
}

// New checks opts and prepares a Link; it does not connect (see Connect).
func New(opts Options) (*Link, error) {
	if err := wire.ValidDeviceID(opts.DeviceID); err != nil {
		return nil, fmt.Errorf("mqtt link: %w", err)
	}
	u, err := url.Parse(opts.Broker)
	if err != nil {
		return nil, fmt.Errorf("mqtt link: broker %q: %w", opts.Broker, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return nil, fmt.Errorf("mqtt link: broker %q: scheme must be tcp, ssl, ws or wss", opts.Broker)
	}
	if u.Host == "" || u.Port() == "" {
		return nil, fmt.Errorf("mqtt link: broker %q: want scheme://host:port", opts.Broker)
	}
	if opts.ClientID == "" {
		opts.ClientID = opts.DeviceID
	}
	if opts.Username == "" {
		opts.Username = opts.DeviceID
	}
	if opts.AuthRetryInterval <= 0 {
		opts.AuthRetryInterval = DefaultAuthRetryInterval
	}
	if opts.AuthRetryMax <= 0 {
		opts.AuthRetryMax = DefaultAuthRetryMax
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.ConnectRetryInterval <= 0 {
		opts.ConnectRetryInterval = DefaultConnectRetryInterval
	}
	if opts.MaxReconnectInterval <= 0 {
		opts.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	switch {
	case opts.Jitter == 0:
		opts.Jitter = DefaultJitter
	case opts.Jitter < 0:
		opts.Jitter = 0
	case opts.Jitter > 1 || math.IsNaN(opts.Jitter):
		return nil, fmt.Errorf("mqtt link: jitter %v must be a fraction in [0, 1]", opts.Jitter)
	}
	l := &Link{opts: opts, log: opts.Logger, acks: make(chan wire.Ack, 16), closed: make(chan struct{}), capAcks: captureAcks{ch: make(chan wire.Ack, 1)}}
	l.epoch.Store(opts.Epoch)
	if l.log == nil {
		l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l.upd = newUpdates()
	l.driftAcks = make(chan wire.DriftAck, driftAckQueue)
	// The will carries no time: the broker may deliver it long after it was registered, and
	// the controller stamps the time it saw it.
	will, err := wire.Encode(&wire.State{Device: opts.DeviceID, State: wire.StateOffline})
	if err != nil {
		return nil, fmt.Errorf("mqtt link: encode will: %w", err)
	}
	co := mqtt.NewClientOptions().
		AddBroker(opts.Broker).
		SetClientID(opts.ClientID).
		SetUsername(opts.Username).
		SetPassword(opts.Password).
		SetTLSConfig(opts.TLS).
		SetCleanSession(true).
		SetProtocolVersion(4).     // no fallback to 3.1, which would hide a refused login behind a protocol error
		SetOrderMatters(false).    // handlers must not block the client; ours only hand off
		SetStore(pahostore.New()). // copies: paho races its own store on reconnect (internal/pahostore)
		SetKeepAlive(opts.KeepAlive).
		SetConnectTimeout(opts.ConnectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true). // off by default: without it an absent broker at start is fatal
		SetConnectRetryInterval(opts.ConnectRetryInterval).
		SetMaxReconnectInterval(opts.MaxReconnectInterval).
		SetBinaryWill(wire.DeviceTopic(opts.DeviceID, wire.LeafState), will, 1, true).
		SetOnConnectHandler(l.onConnect).
		SetConnectionAttemptHandler(l.onAttempt).
		SetConnectionNotificationHandler(l.onNotification)
	l.client = mqtt.NewClient(co)
	return l, nil
}

// Connect starts connecting in the background and returns at once; paho retries until it
// succeeds or Close is called. It has no effect after the first call.
func (l *Link) Connect() {
	l.connecting.Do(func() { l.client.Connect() })
}

// onConnect runs in its own goroutine after every (re)connection: announce presence and
// subscribe again, since the session is clean.
func (l *Link) onConnect(c mqtt.Client) {
	l.failures.Store(0)
	if l.authFailures.Swap(0) > 0 {
		l.log.Info("mqtt credentials accepted again", "broker", l.opts.Broker, "username", l.opts.Username)
	}
	l.setErr(nil)
	l.log.Info("mqtt connected", "broker", l.opts.Broker)
	ackTopic := wire.ControllerTopic(l.opts.DeviceID, wire.LeafAck)
	if err := subscribe(c, ackTopic, l.opts.ConnectTimeout, l.onAck); err != nil {
		l.setErr(err)
		l.log.Warn("mqtt subscribe; acks will not arrive and results will be resent", "topic", ackTopic, "err", err)
	}
	l.subscribeUpdates(c)
	l.subscribeDriftAcks(c)
	l.subscribeCapture(c)
	if err := l.publishState(c, wire.StateOnline); err != nil {
		l.log.Warn("mqtt publish online state", "err", err)
	}
}

// onAttempt runs before each connection attempt, on paho's connecting goroutine: it adds the
// jitter. paho sleeps ConnectRetryInterval between attempts before the first connection and
// 1 s doubling up to MaxReconnectInterval after a loss; the jitter is a random part of
// an estimate of that step.
func (l *Link) onAttempt(_ *url.URL, cfg *tls.Config) *tls.Config {
	if l.attempts.Add(1) == 1 {
		return cfg
	}
	var d time.Duration
	if af := l.authFailures.Load(); af > 0 {
		// Refused credentials: wait the long auth backoff (plus jitter) instead of paho's.
		d = min(l.opts.AuthRetryInterval<<min(af-1, 16), l.opts.AuthRetryMax)
		d += time.Duration(rand.Float64() * l.opts.Jitter * float64(d))
		d = min(d, l.opts.AuthRetryMax)
	} else if l.opts.Jitter > 0 {
		step := min(l.opts.ConnectRetryInterval<<min(l.failures.Load(), 16), l.opts.MaxReconnectInterval)
		d = time.Duration(rand.Float64() * l.opts.Jitter * float64(step))
	}
	if d <= 0 {
		return cfg
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.closed:
	}
	return cfg
}

func (l *Link) publishState(c mqtt.Client, state string) error {
	payload, err := wire.Encode(&wire.State{Device: l.opts.DeviceID, State: state, Time: time.Now().UTC()})
	if err != nil {
		return err
	}
	return wait(c.Publish(wire.DeviceTopic(l.opts.DeviceID, wire.LeafState), 1, true, payload), l.opts.ConnectTimeout)
}

// subscribe subscribes at QoS 1 and checks the broker's SUBACK: a refusal (0x80, for example an
// ACL that denies the topic) completes the token without an error in paho.
func subscribe(c mqtt.Client, topic string, d time.Duration, h mqtt.MessageHandler) error {
	tok := c.Subscribe(topic, 1, h)
	if err := wait(tok, d); err != nil {
		return fmt.Errorf("subscribe %s: %w", topic, err)
	}
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	if code, ok := st.Result()[topic]; !ok || code >= 0x80 {
		return fmt.Errorf("%w: broker answered %#x for %s (does its ACL let this device's username read it?)", ErrSubscribeRefused, code, topic)
	}
	return nil
}

func wait(tok mqtt.Token, d time.Duration) error {
	if !tok.WaitTimeout(d) {
		return fmt.Errorf("no reply from broker within %v", d)
	}
	return tok.Error()
}

func (l *Link) onNotification(_ mqtt.Client, n mqtt.ConnectionNotification) {
	switch n := n.(type) {
	case mqtt.ConnectionNotificationFailed:
		if errors.Is(n.Reason, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(n.Reason, packets.ErrorRefusedNotAuthorised) {
			// Said once, clearly: retrying will not help until someone fixes the credentials.
			af := l.authFailures.Add(1)
			err := fmt.Errorf("%w by %s for username %q (%v); retrying every %v at most", ErrAuthRefused, l.opts.Broker, l.opts.Username, n.Reason, l.opts.AuthRetryMax)
			l.setErr(err)
			if af == 1 {
				l.log.Error("mqtt authentication refused: check the device's username and password on the broker; retrying slowly",
					"broker", l.opts.Broker, "username", l.opts.Username, "err", n.Reason)
			}
			return
		}
		l.authFailures.Store(0)
		// Log the 1st, 2nd, 4th, 8th… consecutive failure: about once per backoff step
		// rather than on every attempt.
		f := l.failures.Add(1)
		if f&(f-1) == 0 {
			l.log.Warn("mqtt broker unreachable; buffering and retrying", "broker", l.opts.Broker, "attempts", f, "err", n.Reason)
		}
	case mqtt.ConnectionNotificationLost:
		l.log.Warn("mqtt connection lost; buffering and reconnecting", "broker", l.opts.Broker, "err", n.Reason)
	}
}

// onAck must not block: it hands the ack to the channel, coalescing with any value still
// waiting there, since acks are cumulative.
func (l *Link) onAck(_ mqtt.Client, m mqtt.Message) {
	var a wire.Ack
	if err := wire.Decode(m.Payload(), &a); err != nil {
		if l.badAcks.Add(1) == 1 {
			l.log.Warn("ignoring malformed ack", "topic", m.Topic(), "err", err)
		}
		return
	}
	if ours := l.epoch.Load(); a.Epoch != ours {
		// An ack for another sequence space (a data dir since wiped) must delete nothing.
		if l.foreignAcks.Add(1) == 1 {
			l.log.Warn("ignoring ack for another epoch", "epoch", a.Epoch, "ours", ours, "seq", a.Seq)
		}
		return
	}
	l.ackMu.Lock()
	defer l.ackMu.Unlock()
	for {
		select {
		case l.acks <- a:
			return
		default:
		}
		select {
		case old := <-l.acks:
			a = l.coalesce(old, a)
		default:
		}
	}
}

// coalesce merges an unread ack into a newer one: the higher seq of the newer epoch, with
// the rejections of both (up to maxCoalescedRejected).
func (l *Link) coalesce(old, a wire.Ack) wire.Ack {
	if old.Epoch != a.Epoch {
		return a // the older one names an epoch the agent has left
	}
	a.Seq = max(a.Seq, old.Seq)
	if len(old.Rejected) > 0 {
		merged := append(old.Rejected[:len(old.Rejected):len(old.Rejected)], a.Rejected...)
		if over := len(merged) - maxCoalescedRejected; over > 0 {
			l.rejectedLost.Add(uint64(over))
			merged = merged[:maxCoalescedRejected]
		}
		a.Rejected = merged
	}
	return a
}

// Publish implements agent.Uplink.
func (l *Link) Publish(ctx context.Context, leaf string, payload []byte, retained bool) error {
	if !l.client.IsConnectionOpen() {
		return agent.ErrNotConnected
	}
	tok := l.client.Publish(wire.DeviceTopic(l.opts.DeviceID, leaf), 1, retained, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publish %s: %w", leaf, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", leaf, ctx.Err())
	}
}

// Acks implements agent.Uplink.
func (l *Link) Acks() <-chan wire.Ack { return l.acks }

// SetEpoch makes the link deliver only acks for epoch from now on; the agent calls it when its
// buffer opens a new epoch.
func (l *Link) SetEpoch(epoch uint64) { l.epoch.Store(epoch) }

// Err reports the link's standing problem, nil when there is none: refused credentials
// (ErrAuthRefused) or a refused ack subscription (ErrSubscribeRefused). It clears on the next
// successful connection and subscription.
func (l *Link) Err() error {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return l.err
}

func (l *Link) setErr(err error) {
	l.errMu.Lock()
	l.err = err
	l.errMu.Unlock()
}

// RejectedLost counts rejections dropped while coalescing acks that went unread.
func (l *Link) RejectedLost() uint64 { return l.rejectedLost.Load() }

// Connected implements agent.Uplink.
func (l *Link) Connected() bool { return l.client.IsConnectionOpen() }

// BadAcks counts ack messages that could not be decoded.
func (l *Link) BadAcks() uint64 { return l.badAcks.Load() }

// ForeignAcks counts acks ignored because they named another epoch.
func (l *Link) ForeignAcks() uint64 { return l.foreignAcks.Load() }

// redialQuiesce is how long Redial and Close give paho to send DISCONNECT, which tells the
// broker not to publish the last-will.
const redialQuiesce = 250

// Redial drops the connection cleanly and connects again: a new clean session, its
// subscriptions made afresh by onConnect. It is for a connection that carries the device's
// publishes but no longer delivers anything to it (agent.Redialer): the broker cannot tell, and
// neither can MQTT's keep-alive, which the broker still answers. The DISCONNECT keeps the
// last-will from firing, so the controller sees no "offline"; "online" is published again on
// connecting. It returns once the old connection is closed (at most redialQuiesce ms), with
// the new one on its way, and reports false, doing nothing, while the link is not connected
// (paho is reconnecting already) or after Close.
func (l *Link) Redial(reason string) bool {
	l.redialMu.Lock()
	defer l.redialMu.Unlock()
	select {
	case <-l.closed:
		return false
	default:
	}
	if !l.client.IsConnectionOpen() {
		return false
	}
	l.log.Warn("mqtt reconnecting: publishes go through but nothing comes back", "broker", l.opts.Broker, "reason", reason)
	l.client.Disconnect(redialQuiesce)
	l.redials.Add(1)
	go func() {
		defer l.redials.Done()
		// paho may return from Disconnect before its status is back to disconnected (the
		// quiesce time passed first); Connect then fails at once and is tried again. Once it
		// is accepted paho goes on connecting by itself (ConnectRetry) until it succeeds.
		for {
			tok := l.client.Connect()
			select {
			case <-tok.Done():
				if tok.Error() == nil {
					return
				}
			case <-time.After(50 * time.Millisecond):
				return // accepted, connecting
			}
			select {
			case <-l.closed:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return true
}

// Close announces "offline" (retained) if connected, waiting at most until ctx ends, then
// disconnects cleanly, which tells the broker not to send the last-will.
func (l *Link) Close(ctx context.Context) error {
	l.closeOnce.Do(func() { close(l.closed) })
	l.redialMu.Lock() // a Redial under way ends first (see redialMu)
	l.redialMu.Unlock()
	l.redials.Wait()
	var err error
	if l.client.IsConnectionOpen() {
		payload, encErr := wire.Encode(&wire.State{Device: l.opts.DeviceID, State: wire.StateOffline, Time: time.Now().UTC()})
		if encErr != nil {
			return encErr
		}
		tok := l.client.Publish(wire.DeviceTopic(l.opts.DeviceID, wire.LeafState), 1, true, payload)
		select {
		case <-tok.Done():
			err = tok.Error()
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			err = fmt.Errorf("publish offline state: %w", err)
		}
	}
	l.client.Disconnect(redialQuiesce)
	return err
}
