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

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Options configures a Link. Broker and DeviceID are required.
type Options struct {
	Broker   string // tcp://host:port, ssl://…, ws://…
	DeviceID string
	ClientID string // defaults to DeviceID
	Username string
	Password string

	KeepAlive            time.Duration
	ConnectTimeout       time.Duration // one connection attempt
	ConnectRetryInterval time.Duration // between attempts before the first connection
	MaxReconnectInterval time.Duration // cap of the backoff between reconnect attempts
	// Jitter delays every connection attempt but the first by a random part of the current
	// backoff step, up to this fraction of it, so a fleet that lost its broker together does
	// not reconnect in lock-step (paho's own backoff has no jitter). Negative disables it.
	Jitter float64
	// Epoch is the buffer's epoch: only acks carrying it are delivered (see wire.Ack).
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
)

// Link is an agent.Uplink. Its methods are safe for concurrent use.
type Link struct {
	opts   Options
	client mqtt.Client
	log    *slog.Logger

	acks        chan uint64
	ackMu       sync.Mutex // serializes ack hand-off so coalescing keeps the maximum
	badAcks     atomic.Uint64
	foreignAcks atomic.Uint64
	failures    atomic.Int64 // consecutive failed connection attempts
	attempts    atomic.Int64 // connection attempts since New
	connecting  sync.Once
	closed      chan struct{} // closed by Close: ends a jitter wait
	closeOnce   sync.Once

	upd updates // model-update traffic, see update.go
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
	l := &Link{opts: opts, log: opts.Logger, acks: make(chan uint64, 16), closed: make(chan struct{})}
	if l.log == nil {
		l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l.upd = newUpdates()
	will, err := wire.Encode(&wire.State{Device: opts.DeviceID, State: wire.StateOffline, Time: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("mqtt link: encode will: %w", err)
	}
	co := mqtt.NewClientOptions().
		AddBroker(opts.Broker).
		SetClientID(opts.ClientID).
		SetUsername(opts.Username).
		SetPassword(opts.Password).
		SetCleanSession(true).
		SetOrderMatters(false). // handlers must not block the client; ours only hand off
		SetStore(mqtt.NewMemoryStore()).
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
	l.log.Info("mqtt connected", "broker", l.opts.Broker)
	ackTopic := wire.ControllerTopic(l.opts.DeviceID, wire.LeafAck)
	if err := wait(c.Subscribe(ackTopic, 1, l.onAck), l.opts.ConnectTimeout); err != nil {
		l.log.Warn("mqtt subscribe", "topic", ackTopic, "err", err)
	}
	l.subscribeUpdates(c)
	if err := l.publishState(c, wire.StateOnline); err != nil {
		l.log.Warn("mqtt publish online state", "err", err)
	}
}

// onAttempt runs before each connection attempt, on paho's connecting goroutine: it adds the
// jitter. paho sleeps ConnectRetryInterval between attempts before the first connection and
// 1 s doubling up to MaxReconnectInterval after a loss; the jitter is a random part of
// an estimate of that step.
func (l *Link) onAttempt(_ *url.URL, cfg *tls.Config) *tls.Config {
	if l.attempts.Add(1) == 1 || l.opts.Jitter == 0 {
		return cfg
	}
	step := min(l.opts.ConnectRetryInterval<<min(l.failures.Load(), 16), l.opts.MaxReconnectInterval)
	d := time.Duration(rand.Float64() * l.opts.Jitter * float64(step))
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

func wait(tok mqtt.Token, d time.Duration) error {
	if !tok.WaitTimeout(d) {
		return fmt.Errorf("no reply from broker within %v", d)
	}
	return tok.Error()
}

func (l *Link) onNotification(_ mqtt.Client, n mqtt.ConnectionNotification) {
	switch n := n.(type) {
	case mqtt.ConnectionNotificationFailed:
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
	if a.Epoch != l.opts.Epoch {
		// An ack for another sequence space (a data dir since wiped) must delete nothing.
		if l.foreignAcks.Add(1) == 1 {
			l.log.Warn("ignoring ack for another epoch", "epoch", a.Epoch, "ours", l.opts.Epoch, "seq", a.Seq)
		}
		return
	}
	seq := a.Seq
	l.ackMu.Lock()
	defer l.ackMu.Unlock()
	for {
		select {
		case l.acks <- seq:
			return
		default:
		}
		select {
		case old := <-l.acks:
			seq = max(seq, old)
		default:
		}
	}
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
func (l *Link) Acks() <-chan uint64 { return l.acks }

// Connected implements agent.Uplink.
func (l *Link) Connected() bool { return l.client.IsConnectionOpen() }

// BadAcks counts ack messages that could not be decoded.
func (l *Link) BadAcks() uint64 { return l.badAcks.Load() }

// ForeignAcks counts acks ignored because they named another epoch.
func (l *Link) ForeignAcks() uint64 { return l.foreignAcks.Load() }

// Close announces "offline" (retained) if connected, waiting at most until ctx ends, then
// disconnects cleanly, which tells the broker not to send the last-will.
func (l *Link) Close(ctx context.Context) error {
	l.closeOnce.Do(func() { close(l.closed) })
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
	l.client.Disconnect(250)
	return err
}
