package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/pahostore"
)

// DefaultClientID is the controller's MQTT client id. It is fixed, not random, so that with
// CleanSession=false a broker that keeps sessions (Mosquitto) queues device results while the
// controller restarts.
const DefaultClientID = "outpost-controller"

// Defaults for Options.
const (
	// DefaultQueueSize holds every batch the agents can have in flight at once for a fleet
	// of 1,000 devices (the agent's window of 8 unacked batches each) with room to spare, so
	// that at that size a controller falling behind never drops a batch: the devices' windows
	// fill and they wait (their batches grow instead), which is the backpressure. A dropped
	// batch costs the device its ack timeout (10 s) and the controller the whole resend. One
	// queued message costs 72 bytes of channel slot plus its payload, bounded by QueueBytes.
	DefaultQueueSize  = 16384
	DefaultQueueBytes = 64 << 20
	// DefaultMaxBatch lets a controller that has fallen behind take a large group per store
	// transaction: a group holds only what is already queued, so it is large only then, and
	// then it holds several batches of each device, which share one ack, one output-summary
	// update and the pages of one commit (measured in docs/performance.md).
	DefaultMaxBatch       = 2048
	DefaultGroupBytes     = 8 << 20
	DefaultRetryInterval  = 2 * time.Second
	DefaultAuthRetry      = time.Minute
	DefaultDeviceFlush    = time.Second
	DefaultMalformedQuiet = time.Minute
)

// Options configure New.
type Options struct {
	// Store persists devices and results. Run owns it from the start and closes it on return.
	Store Store
	// BrokerURL is the MQTT broker, e.g. tcp://127.0.0.1:1883 (schemes tcp, mqtt, ssl, tls,
	// mqtts, ws, wss). User info in the URL is used as credentials unless Username is set.
	BrokerURL          string
	Username, Password string
	ClientID           string // default DefaultClientID

	// ShareGroup, when set, makes this controller one of several replicas splitting the
	// ingest (scale-out mode, a PostgreSQL store): result topics are subscribed through the
	// MQTT shared subscription $share/ShareGroup/..., so the broker hands each batch to one
	// replica, while state and health stay plain subscriptions so every replica keeps the
	// whole registry. The session is clean: a batch in flight to a replica that dies is not
	// kept for it at the broker but resent by its device, which keeps it until acked. Each
	// replica needs its own ClientID.
	ShareGroup string

	// QueueSize and QueueBytes bound the hand-off from the MQTT client's callback to the
	// ingest loop, in messages and in payload bytes. The callback never blocks: paho reads
	// every packet, PINGRESP and SUBACK included, on the goroutine that runs it, so a blocked
	// callback stalls the connection. Overflow policy: result (and capture) messages are taken while the
	// queue is under three quarters of either bound, state and health up to the full bounds;
	// beyond, a message is dropped and counted (Stats.Overflowed). A dropped result batch is
	// not lost: no ack covered it, so the device sends it again after its ack timeout. A
	// dropped health snapshot is replaced by the next; a dropped state message is the one
	// real loss, and needs a quarter of the queue full of state and health traffic.
	// Defaults DefaultQueueSize, DefaultQueueBytes.
	QueueSize  int
	QueueBytes int64
	// MaxBatch is the most messages handled per store transaction, and GroupBytes the most
	// JSON bytes decoded for one (a message that passes it still ends the group), so one
	// group holds at most about GroupBytes + wire.MaxBatchBytes of decoded results.
	// Defaults DefaultMaxBatch, DefaultGroupBytes.
	MaxBatch   int
	GroupBytes int64
	// RetryInterval is the wait between connection attempts. Default DefaultRetryInterval.
	RetryInterval time.Duration
	// AuthRetry is the wait after the broker refused the controller's credentials: they will
	// not change by themselves, so it is long. Default DefaultAuthRetry.
	AuthRetry time.Duration
	// DeviceFlush is the most often routine registry updates (last seen, health) are written;
	// new devices and online/offline changes are written at once. Default DefaultDeviceFlush.
	DeviceFlush time.Duration
	// DrainTimeout bounds the store writes after Run's context ended: queued results are
	// stored for half of it, the registry within it (see drainResults). Default 10 s.
	DrainTimeout time.Duration
	// Logger receives the controller's log lines; nil discards them.
	Logger *slog.Logger
	// OnDrift, when set, is given the drift records of each group once they are stored (and
	// their acks published), in arrival order: ingest is the one place drift summaries are
	// stored, and the monitor's alerts follow from what was committed. It runs on the ingest
	// loop and must not block.
	OnDrift func([]DriftRecord)
}

// Controller consumes device traffic from an MQTT broker into a Store and acknowledges results.
type Controller struct {
	opts   Options
	store  Store
	broker *url.URL
	log    *slog.Logger

	// mu guards the fields below; the ingest loop is their only writer.
	mu              sync.Mutex
	devices         map[string]*deviceState
	stats           Stats
	connected       bool
	lastOverflowLog time.Time
	queue           *queue // the running ingest queue, nil outside Run (for Stats)

	// resuming is set from OnConnect until the controller is ready: the SUBACK came or a
	// message of the session arrived, whichever first.
	resuming atomic.Bool

	capture captureState // capture.go
}

// deviceState is the in-memory view of one device: the registry record plus counters.
type deviceState struct {
	dev       Device
	results   ResultStats
	malformed uint64
	// resent counts the duplicates of resent batches answered without the store (which
	// therefore does not count them; see resentLocked), since this controller started.
	resent uint64
}

// New validates opts and builds a Controller. It connects to nothing and starts no goroutines.
func New(opts Options) (*Controller, error) {
	if opts.Store == nil {
		return nil, errors.New("controller: no store")
	}
	u, err := ParseBrokerURL(opts.BrokerURL)
	if err != nil {
		return nil, err
	}
	if opts.Username == "" && u.User != nil {
		opts.Username = u.User.Username()
		opts.Password, _ = u.User.Password()
	}
	u.User = nil
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if err := validShareGroup(opts.ShareGroup); err != nil {
		return nil, err
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.GroupBytes <= 0 {
		opts.GroupBytes = DefaultGroupBytes
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = DefaultRetryInterval
	}
	if opts.AuthRetry <= 0 {
		opts.AuthRetry = DefaultAuthRetry
	}
	if opts.DeviceFlush <= 0 {
		opts.DeviceFlush = DefaultDeviceFlush
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = drainTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Controller{opts: opts, store: opts.Store, broker: u, log: log, devices: map[string]*deviceState{}}, nil
}

// ParseBrokerURL checks an MQTT broker URL: a known scheme, a host and a port.
func ParseBrokerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("broker url %q: %w", s, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return nil, fmt.Errorf("broker url %q: scheme must be tcp, mqtt, ssl, tls, mqtts, ws or wss", s)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("broker url %q: want scheme://host:port", s)
	}
	return u, nil
}

// Devices returns the live fleet table ordered by device id. Safe to call at any time.
func (c *Controller) Devices() []DeviceStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]DeviceStatus, 0, len(c.devices))
	for _, d := range c.devices {
		s := DeviceStatus{
			ID:              d.dev.ID,
			Online:          d.dev.Online,
			Model:           d.dev.Model,
			ResultsReceived: d.results.Stored,
			Duplicates:      d.results.Duplicates + d.resent,
			Dropped:         d.results.Dropped,
			Rejected:        d.results.Rejected,
			Acked:           d.results.Contiguous,
			Malformed:       d.malformed,
			FirstSeen:       d.dev.FirstSeen,
			LastSeen:        d.dev.LastSeen,
			StateAt:         d.dev.StateAt,
		}
		if h := d.dev.Health; h != nil {
			hc := *h
			s.Health = &hc
			s.InferencesPerS, s.LatencyP50Ms, s.LatencyP99Ms, s.Buffered = h.InferencesPerS, h.LatencyP50Ms, h.LatencyP99Ms, h.Buffered
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b DeviceStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Register adds device id to the registry before its first contact (outpost devices add): it
// is stored at once and listed, never seen, until the device connects. A device already known
// here or to the store is left as it is.
func (c *Controller) Register(ctx context.Context, id string) error {
	if err := wire.ValidDeviceID(id); err != nil {
		return err
	}
	c.mu.Lock()
	_, known := c.devices[id]
	c.mu.Unlock()
	if known {
		return nil
	}
	// Insert only if absent: another replica sharing the store may know the device already,
	// and its record must not be replaced by an empty one.
	added, err := c.store.AddDevice(ctx, id)
	if err != nil {
		return fmt.Errorf("register device: %w", err)
	}
	rec := Device{ID: id}
	if !added {
		// Rare (an admin command for a device another replica has seen): list what it knows.
		devs, err := c.store.Devices(ctx)
		if err != nil {
			return fmt.Errorf("register device: %w", err)
		}
		if i := slices.IndexFunc(devs, func(d Device) bool { return d.ID == id }); i >= 0 {
			rec = devs[i]
			rec.Online = false // presence is learned from State messages
		}
	}
	c.mu.Lock()
	if _, known := c.devices[id]; !known { // the device may have connected meanwhile
		c.devices[id] = &deviceState{dev: rec}
	}
	c.mu.Unlock()
	return nil
}

// Stats returns the controller-wide counters.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stats
	if q := c.queue; q != nil {
		st.QueueMessages, st.QueueBytes = len(q.ch), q.bytes.Load()
	}
	return st
}

// Connected reports whether the MQTT client is currently connected and subscribed.
func (c *Controller) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// inbound is one device message handed from the MQTT callback to the ingest loop.
type inbound struct {
	topic    string
	payload  []byte
	retained bool
	at       time.Time
}

// Run loads the registry, connects to the broker (retrying until it answers or ctx ends) and
// ingests until ctx ends. It then disconnects, stores what was already received, writes the
// registry and closes the store. It returns nil after a clean stop, or the first store error:
// results it cannot store are never acknowledged, so devices keep them.
func (c *Controller) Run(ctx context.Context) (err error) {
	defer func() {
		if cerr := c.store.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := c.load(ctx); err != nil {
		return err
	}

	q := newQueue(c.opts.QueueSize, c.opts.QueueBytes)
	c.mu.Lock()
	c.queue = q
	c.mu.Unlock()
	client := paho.NewClient(c.clientOptions(q))
	c.log.Info("controller connecting", "broker", c.broker.String(), "client_id", c.opts.ClientID)

	stopped := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		c.connect(gctx, client)
		<-gctx.Done()
		client.Disconnect(250)
		c.setConnected(false)
		close(stopped)
		return nil
	})
	g.Go(func() error { return c.runIngest(gctx, client, q, stopped) })
	return g.Wait()
}

// connect makes the first connection, retrying until it succeeds or ctx ends; paho's
// auto-reconnect takes over after that. It is not left to paho's ConnectRetry because that
// hides why an attempt failed: a refused login would read as an unreachable broker forever.
// A refusal is said once, as such, and retried only every AuthRetry.
func (c *Controller) connect(ctx context.Context, client paho.Client) {
	refused := false
	for attempt := 1; ; attempt++ {
		tok := client.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return
		}
		err := tok.Error()
		if err == nil {
			if refused {
				c.log.Info("broker accepted the controller's credentials", "broker", c.broker.String())
			}
			return
		}
		wait := c.opts.RetryInterval
		if errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised) {
			wait = c.opts.AuthRetry
			if !refused {
				c.log.Error("broker authentication refused: check the controller's MQTT username and password; retrying rarely",
					"broker", c.broker.String(), "username", c.opts.Username, "err", err, "retry_every", wait)
			}
			refused = true
		} else {
			refused = false
			c.log.Warn("broker not reachable, retrying", "broker", c.broker.String(), "attempt", attempt, "err", err)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}

func (c *Controller) clientOptions(q *queue) *paho.ClientOptions {
	// The handler runs on paho's reading goroutine (SetOrderMatters), so it must not block:
	// it offers the message to the bounded queue and drops it when full (see Options.QueueSize).
	handler := func(_ paho.Client, m paho.Message) {
		in := inbound{topic: m.Topic(), payload: m.Payload(), retained: m.Retained(), at: time.Now()}
		if !q.offer(in) {
			c.overflowed(in)
		}
		// A message before the SUBACK comes from a resumed session: the broker holds the
		// subscriptions and is delivering, so the controller is ready. Waiting for the SUBACK
		// instead made readiness wait for the whole backlog: the embedded broker writes a
		// resumed session's queued messages before it reads the SUBSCRIBE (see
		// TestRestartUnderBacklog).
		if c.resuming.CompareAndSwap(true, false) {
			c.setConnected(true)
			c.log.Info("controller connected; resumed session delivering its backlog", "broker", c.broker.String())
		}
	}
	o := paho.NewClientOptions().SetStore(pahostore.New()).
		AddBroker(c.broker.String()).
		SetClientID(c.opts.ClientID).
		SetUsername(c.opts.Username).
		SetPassword(c.opts.Password).
		SetProtocolVersion(4).
		SetCleanSession(c.opts.ShareGroup != "").
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * c.opts.RetryInterval).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		// Messages from a resumed session can arrive before OnConnect resubscribes.
		SetDefaultPublishHandler(handler).
		SetOnConnectHandler(func(cl paho.Client) {
			c.resuming.Store(true)
			filters := c.filters()
			// OnConnect runs on its own goroutine in paho, so waiting here blocks no delivery.
			// The handler never blocks, so the SUBACK is read promptly even while a resumed
			// session delivers a backlog; a slow one is still waited for, not abandoned.
			tok := cl.SubscribeMultiple(filters, handler)
			if !tok.WaitTimeout(30 * time.Second) {
				c.log.Warn("subscription not yet acknowledged after 30s; still waiting")
				tok.Wait()
			}
			if tok.Error() != nil {
				c.log.Error("subscribe to device topics", "err", tok.Error())
				return
			}
			for f, q := range tok.(*paho.SubscribeToken).Result() {
				if q > 1 {
					c.log.Error("broker refused subscription", "filter", f, "code", q)
					return
				}
			}
			if c.resuming.Swap(false) {
				c.setConnected(true)
				c.log.Info("controller connected and subscribed", "broker", c.broker.String())
			}
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			c.resuming.Store(false)
			c.setConnected(false)
			c.log.Warn("broker connection lost, reconnecting", "err", err)
		})
	return o
}

// SharePrefix starts an MQTT shared subscription filter: $share/{group}/{filter}.
const SharePrefix = "$share/"

// validShareGroup checks a shared-subscription group name: one topic level, no wildcards.
func validShareGroup(g string) error {
	if strings.ContainsAny(g, "/+#") || !utf8.ValidString(g) {
		return fmt.Errorf("share group %q: must not contain '/', '+' or '#'", g)
	}
	return nil
}

// filters are the subscriptions to device topics, results shared with the other replicas when
// ShareGroup is set. State, health and drift stay plain: every replica keeps the whole registry
// and sees every drift summary (their writes replace by identity, so two replicas storing one
// are harmless).
func (c *Controller) filters() map[string]byte {
	results := []string{wire.DeviceWildcard(wire.LeafResults), wire.DeviceWildcard(wire.LeafResultsZ), wire.DeviceWildcard(wire.LeafCapture)}
	if g := c.opts.ShareGroup; g != "" {
		for i, f := range results {
			results[i] = SharePrefix + g + "/" + f
		}
	}
	return map[string]byte{
		wire.DeviceWildcard(wire.LeafState):  1,
		wire.DeviceWildcard(wire.LeafHealth): 1,
		wire.DeviceWildcard(wire.LeafDrift):  1,
		results[0]:                           1,
		results[1]:                           1,
		results[2]:                           1,
	}
}

// overflowed counts a message the full queue could not take and logs it, at most once per
// DefaultMalformedQuiet. It runs on paho's goroutine, so it only takes c.mu briefly.
func (c *Controller) overflowed(m inbound) {
	c.mu.Lock()
	c.stats.Overflowed++
	n := c.stats.Overflowed
	log := m.at.Sub(c.lastOverflowLog) >= DefaultMalformedQuiet
	if log {
		c.lastOverflowLog = m.at
	}
	c.mu.Unlock()
	if log {
		c.log.Warn("ingest queue full: message dropped (a result batch is resent by its device)", "topic", m.topic, "overflowed_total", n)
	}
}

func (c *Controller) setConnected(v bool) {
	c.mu.Lock()
	c.connected = v
	c.mu.Unlock()
}

// load fills the in-memory registry from the store. Every device starts offline: presence is
// re-learned from State messages (retained at an external broker, republished by agents on
// reconnecting to the embedded one).
func (c *Controller) load(ctx context.Context) error {
	devs, err := c.store.Devices(ctx)
	if err != nil {
		return fmt.Errorf("load registry: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range devs {
		st, err := c.store.ResultStats(ctx, d.ID)
		if err != nil {
			return fmt.Errorf("load registry: %w", err)
		}
		d.Online = false
		c.devices[d.ID] = &deviceState{dev: d, results: st}
	}
	return nil
}
