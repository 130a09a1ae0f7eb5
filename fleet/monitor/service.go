package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Store is what the service reads and writes (fleet.ViewStore satisfies it). It writes no
// drift: the controller's ingest stores and acks drift summaries and hands the stored records
// to DriftStored.
type Store interface {
	PutFeedback(ctx context.Context, labels []fleet.Feedback) error
	Drift(ctx context.Context, q fleet.DriftQuery) ([]fleet.DriftRecord, error)
}

// DefaultClientID is the service's MQTT client id; it logs in with the controller's
// credential, the only one the embedded broker lets publish on wire.TopicAlerts.
const DefaultClientID = "outpost-monitor"

// Defaults for Options.
const (
	DefaultQueue    = 256
	DefaultLookback = 48 * time.Hour
	// DefaultPending bounds the stored drift records handed over before the alert state is
	// seeded from the store (the first moments of Run); beyond it they only miss an alert.
	DefaultPending = 4096
)

// Options configure NewService.
type Options struct {
	Store              Store
	BrokerURL          string // tcp://host:port
	Username, Password string // the controller's broker credential
	ClientID           string // default DefaultClientID
	// Recover is the clean windows in a row that end a drift (DefaultRecover).
	Recover int
	// Lookback is how far back stored drift records seed the alert state at start, so a
	// restart neither repeats nor misses a transition. Default DefaultLookback.
	Lookback time.Duration
	// Queue bounds labels, and alerts waiting to be published, for the worker; beyond it one
	// is dropped and counted (Stats.Dropped). Default DefaultQueue.
	Queue int
	// Elected makes the service one of several replicas that each see every drift summary
	// (scale-out mode): every replica keeps the whole alert state, so whichever leads knows
	// each device's drift, but only the replica inside Lead publishes alerts; the others
	// count theirs as Stats.Followed. Unset, the service publishes every alert.
	Elected bool
	Now     func() time.Time // default time.Now
	Logger  *slog.Logger
}

// Stats are the service's counters since start.
type Stats struct {
	LabelsStored  uint64 `json:"labels_stored"`
	LabelsRefused uint64 `json:"labels_refused"` // malformed batches' labels count as one each
	DriftSeen     uint64 `json:"drift_seen"`     // stored drift records handed to DriftStored
	Alerts        uint64 `json:"alerts"`         // alerts published
	// Started and Recovered count drift state changes (alerts raised, published or not).
	Started   uint64 `json:"started"`
	Recovered uint64 `json:"recovered"`
	Dropped   uint64 `json:"dropped"`
	// Followed counts alerts not published because another replica leads (Options.Elected).
	Followed uint64 `json:"followed"`
}

// Service takes labels published on wire.TopicFeedback into the store and publishes drift
// alerts on wire.TopicAlerts for the drift records the controller's ingest stored (fed to
// DriftStored: fleet.Options.OnDrift). It runs its own MQTT session beside the controller's,
// like blobserve, so the results ingest path stays as it is.
type Service struct {
	opts   Options
	log    *slog.Logger
	in     chan inbound
	alerts chan *wire.DriftAlert
	stats  struct{ stored, refused, drift, alerts, started, recovered, dropped, followed atomic.Uint64 }
	ready  atomic.Bool
	// leading is set while Lead runs; read only with Options.Elected.
	leading atomic.Bool

	// mu guards the alert state: nil until Run seeded it from the store; records stored
	// before then wait in pending.
	mu      sync.Mutex
	alerter *Alerter
	pending []fleet.DriftRecord

	lastDropLog, lastBadLog atomic.Int64 // unix ns of the last such log line
}

// quiet reports whether a minute has passed since *last, and if so sets it to now.
func (s *Service) quiet(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	return now-prev >= int64(time.Minute) && last.CompareAndSwap(prev, now)
}

type inbound struct {
	topic   string
	payload []byte
}

// NewService checks opts; it connects to nothing.
func NewService(opts Options) (*Service, error) {
	if opts.Store == nil || opts.BrokerURL == "" {
		return nil, errors.New("monitor: store and broker url are required")
	}
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	if opts.Lookback <= 0 {
		opts.Lookback = DefaultLookback
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{opts: opts, log: log, in: make(chan inbound, opts.Queue), alerts: make(chan *wire.DriftAlert, opts.Queue)}, nil
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	return Stats{LabelsStored: s.stats.stored.Load(), LabelsRefused: s.stats.refused.Load(),
		DriftSeen: s.stats.drift.Load(), Alerts: s.stats.alerts.Load(), Started: s.stats.started.Load(), Recovered: s.stats.recovered.Load(), Dropped: s.stats.dropped.Load(), Followed: s.stats.followed.Load()}
}

// Lead makes this replica the one that publishes alerts until ctx ends (Options.Elected); it
// has the shape of pgstore.Elector's lead function. Leadership changes hands at a CheckEvery
// boundary, so around a change an alert can be published by both replicas or by neither:
// alerts are edge-triggered notices, and the drift view stays the record of the state.
func (s *Service) Lead(ctx context.Context) error {
	s.leading.Store(true)
	defer s.leading.Store(false)
	s.log.Info("monitor publishes drift alerts for the replicas")
	<-ctx.Done()
	return nil
}

// publishes reports whether this replica publishes alerts now.
func (s *Service) publishes() bool { return !s.opts.Elected || s.leading.Load() }

// Subscribed reports whether the service is connected and subscribed.
func (s *Service) Subscribed() bool { return s.ready.Load() }

// Run seeds the alert state from the store, connects (retrying) and works until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if err := s.seed(ctx); err != nil {
		return err
	}
	handler := func(_ paho.Client, m paho.Message) {
		select {
		case s.in <- inbound{m.Topic(), m.Payload()}:
		default:
			// The callback must not block paho's reader; a dropped label is counted and
			// logged.
			// Logged at most once a minute: a flood would otherwise flood the log too.
			if n := s.stats.dropped.Add(1); s.quiet(&s.lastDropLog) {
				s.log.Warn("monitor queue full, messages dropped", "topic", m.Topic(), "dropped_total", n)
			}
		}
	}
	o := paho.NewClientOptions().AddBroker(s.opts.BrokerURL).SetClientID(s.opts.ClientID).
		SetUsername(s.opts.Username).SetPassword(s.opts.Password).
		SetCleanSession(false). // labels published while the service restarts wait in the broker (Mosquitto)
		SetOrderMatters(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetAutoReconnect(true).SetMaxReconnectInterval(10 * time.Second).SetKeepAlive(30 * time.Second).
		SetConnectionLostHandler(func(paho.Client, error) { s.ready.Store(false) }).
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.Subscribe(wire.TopicFeedback, 1, handler)
			if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
				s.ready.Store(true)
				s.log.Info("monitor subscribed", "topic", wire.TopicFeedback)
				return
			}
			s.log.Error("monitor subscribe", "err", tok.Error())
		})
	client := paho.NewClient(o)
	client.Connect()
	defer client.Disconnect(250)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// Alerts wait in their queue while the session is down (at start, alerts of records
		// handed over before the seed are ready before the connection is): a publish while
		// paho (re)connects is neither delivered nor safe.
		recheck := time.NewTicker(100 * time.Millisecond)
		defer recheck.Stop()
		for {
			var alerts <-chan *wire.DriftAlert
			if s.ready.Load() {
				alerts = s.alerts
			}
			select {
			case <-gctx.Done():
				return nil
			case m := <-s.in:
				s.handle(gctx, m)
			case al := <-alerts:
				s.publish(client, al)
			case <-recheck.C:
			}
		}
	})
	return g.Wait()
}

// seed builds the alert state from the records stored in the last Lookback, then folds in
// those handed over meanwhile. A handed-over record is also in the store; it is left out of
// the seed so that its window still raises the alert it causes.
func (s *Service) seed(ctx context.Context) error {
	stored, err := s.opts.Store.Drift(ctx, fleet.DriftQuery{Since: s.opts.Now().Add(-s.opts.Lookback), Limit: fleet.MaxResultLimit})
	if err != nil {
		return fmt.Errorf("monitor: load drift records: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	handed := map[recordKey]bool{}
	for i := range s.pending {
		handed[keyOf(&s.pending[i])] = true
	}
	seed := stored[:0]
	for _, r := range stored {
		if !handed[keyOf(&r)] {
			seed = append(seed, r)
		}
	}
	s.alerter = NewAlerter(seed, s.opts.Recover)
	pending := s.pending
	s.pending = nil
	s.observeLocked(pending)
	return nil
}

// recordKey is a drift record's identity in the store.
type recordKey struct {
	device, model string
	window        uint64
	start         int64
}

func keyOf(r *fleet.DriftRecord) recordKey {
	return recordKey{r.Summary.Device, r.Summary.Model.String(), r.Summary.Window, r.Summary.Start.UnixNano()}
}

// DriftStored folds drift records the controller has stored into the alert state and queues
// the alerts they cause. It never blocks (fleet.Options.OnDrift).
func (s *Service) DriftStored(recs []fleet.DriftRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.drift.Add(uint64(len(recs)))
	if s.alerter == nil {
		n := min(len(recs), max(DefaultPending-len(s.pending), 0))
		s.pending = append(s.pending, recs[:n]...)
		if n < len(recs) {
			s.stats.dropped.Add(uint64(len(recs) - n))
		}
		return
	}
	s.observeLocked(recs)
}

func (s *Service) observeLocked(recs []fleet.DriftRecord) {
	now := s.opts.Now()
	for i := range recs {
		al := s.alerter.Observe(&recs[i], now)
		if al == nil {
			continue
		}
		if al.State == wire.AlertDrifting {
			s.stats.started.Add(1)
		} else {
			s.stats.recovered.Add(1)
		}
		if !s.publishes() {
			s.stats.followed.Add(1)
			continue
		}
		select {
		case s.alerts <- al:
		default:
			if n := s.stats.dropped.Add(1); s.quiet(&s.lastDropLog) {
				s.log.Warn("monitor alert queue full, alert not published", "device", al.Device, "dropped_total", n)
			}
		}
	}
}

// Drifting returns the current drift state of every device and model version the service
// knows (from the last Lookback and since), drifting or not; nil before Run has seeded it.
func (s *Service) Drifting() []DeviceDrift {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.alerter == nil {
		return nil
	}
	return s.alerter.State()
}

func (s *Service) handle(ctx context.Context, m inbound) {
	b, err := wire.DecodeFeedback(m.payload)
	if err != nil {
		s.stats.refused.Add(1)
		if s.quiet(&s.lastBadLog) {
			s.log.Warn("feedback refused", "err", err)
		}
		return
	}
	n, err := StoreFeedback(ctx, s.opts.Store, b.Labels, "mqtt", s.opts.Now())
	if err != nil {
		s.stats.refused.Add(uint64(len(b.Labels)))
		s.log.Warn("feedback not stored", "labels", len(b.Labels), "err", err)
		return
	}
	s.stats.stored.Add(uint64(n))
}

// publish sends one alert; a failed publish is logged (alerts are edge-triggered, so the
// state behind it stays visible in the drift view and in Prometheus).
func (s *Service) publish(client paho.Client, al *wire.DriftAlert) {
	if !s.publishes() { // leadership was lost while the alert waited
		s.stats.followed.Add(1)
		return
	}
	payload, err := wire.Encode(al)
	if err != nil {
		return
	}
	tok := client.Publish(wire.TopicAlerts, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		s.log.Warn("publish drift alert", "device", al.Device, "state", al.State, "err", tok.Error())
	} else {
		s.stats.alerts.Add(1)
	}
	s.log.Info("drift alert", "device", al.Device, "model", al.Model.String(), "state", al.State, "features", al.Features)
}

// StoreFeedback stores labels as fleet.Feedback received at now, marked with source when
// the label names none. It returns how many were stored: all or, on error, none.
func StoreFeedback(ctx context.Context, st interface {
	PutFeedback(context.Context, []fleet.Feedback) error
}, labels []wire.FeedbackLabel, source string, now time.Time) (int, error) {
	fb := make([]fleet.Feedback, len(labels))
	for i, l := range labels {
		if l.Source == "" {
			l.Source = source
		}
		fb[i] = fleet.Feedback{Device: l.Device, Epoch: l.Epoch, Seq: l.Seq, Label: l.Label, Source: l.Source, At: now.UTC()}
	}
	if err := st.PutFeedback(ctx, fb); err != nil {
		return 0, err
	}
	return len(fb), nil
}
