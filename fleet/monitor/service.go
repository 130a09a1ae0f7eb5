package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Store is what the service reads and writes (fleet.ViewStore satisfies it).
type Store interface {
	PutFeedback(ctx context.Context, labels []fleet.Feedback) error
	PutDrift(ctx context.Context, records []fleet.DriftRecord) error
	Drift(ctx context.Context, q fleet.DriftQuery) ([]fleet.DriftRecord, error)
}

// DefaultClientID is the service's MQTT client id; it logs in with the controller's
// credential, the only one the embedded broker lets publish on wire.TopicAlerts.
const DefaultClientID = "outpost-monitor"

// Defaults for Options.
const (
	DefaultQueue    = 256
	DefaultLookback = 48 * time.Hour
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
	// Queue bounds messages waiting for the worker; beyond it a message is dropped and
	// counted (Stats.Dropped). Default DefaultQueue.
	Queue  int
	Now    func() time.Time // default time.Now
	Logger *slog.Logger
}

// Stats are the service's counters since start.
type Stats struct {
	LabelsStored  uint64 `json:"labels_stored"`
	LabelsRefused uint64 `json:"labels_refused"` // malformed batches' labels count as one each
	DriftStored   uint64 `json:"drift_stored"`
	Alerts        uint64 `json:"alerts"`
	Dropped       uint64 `json:"dropped"`
}

// Service takes labels published on wire.TopicFeedback into the store, stores the drift
// summaries devices publish on d/+/drift (PutDrift: a redelivered window replaces itself) and
// publishes drift alerts on wire.TopicAlerts. It runs its own MQTT session beside the
// controller's, like blobserve, so the results ingest path stays as it is.
type Service struct {
	opts  Options
	log   *slog.Logger
	in    chan inbound
	stats struct{ stored, refused, drift, alerts, dropped atomic.Uint64 }
	ready atomic.Bool

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
	return &Service{opts: opts, log: log, in: make(chan inbound, opts.Queue)}, nil
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	return Stats{LabelsStored: s.stats.stored.Load(), LabelsRefused: s.stats.refused.Load(),
		DriftStored: s.stats.drift.Load(), Alerts: s.stats.alerts.Load(), Dropped: s.stats.dropped.Load()}
}

// Subscribed reports whether the service is connected and subscribed.
func (s *Service) Subscribed() bool { return s.ready.Load() }

// Run seeds the alert state from the store, connects (retrying) and works until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	stored, err := s.opts.Store.Drift(ctx, fleet.DriftQuery{Since: s.opts.Now().Add(-s.opts.Lookback), Limit: fleet.MaxResultLimit})
	if err != nil {
		return fmt.Errorf("monitor: load drift records: %w", err)
	}
	alerter := NewAlerter(stored, s.opts.Recover)
	handler := func(_ paho.Client, m paho.Message) {
		select {
		case s.in <- inbound{m.Topic(), m.Payload()}:
		default:
			// The callback must not block paho's reader; a dropped drift summary costs at
			// most a late alert, a dropped label is logged.
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
			tok := c.SubscribeMultiple(map[string]byte{wire.TopicFeedback: 1, wire.DeviceWildcard(wire.LeafDrift): 1}, handler)
			if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
				s.ready.Store(true)
				s.log.Info("monitor subscribed", "topics", []string{wire.TopicFeedback, wire.DeviceWildcard(wire.LeafDrift)})
				return
			}
			s.log.Error("monitor subscribe", "err", tok.Error())
		})
	client := paho.NewClient(o)
	client.Connect()
	defer client.Disconnect(250)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case m := <-s.in:
				s.handle(gctx, client, alerter, m)
			}
		}
	})
	return g.Wait()
}

func (s *Service) handle(ctx context.Context, client paho.Client, a *Alerter, m inbound) {
	if m.topic == wire.TopicFeedback {
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
		return
	}
	dev, _, ok := wire.ParseDeviceTopic(m.topic)
	if !ok {
		return
	}
	sum, err := wire.DecodeDriftSummary(m.payload)
	if err != nil || sum.Device != dev {
		return // the controller's ingest counts malformed messages
	}
	rec := fleet.DriftRecord{Received: s.opts.Now().UTC(), Summary: *sum}
	if err := s.opts.Store.PutDrift(ctx, []fleet.DriftRecord{rec}); err != nil {
		// Not acked: a queueing agent sends it again.
		s.log.Warn("store drift summary", "device", dev, "window", sum.Window, "err", err)
	} else {
		s.stats.drift.Add(1)
		if sum.ID != 0 {
			s.ackDrift(client, dev, sum.ID)
		}
	}
	al := a.Observe(&rec, s.opts.Now())
	if al == nil {
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

// ackDrift tells dev its summary id is stored. A lost ack costs a resend, which PutDrift
// stores once, so the publish is not waited for.
func (s *Service) ackDrift(client paho.Client, dev string, id uint64) {
	payload, err := wire.Encode(&wire.DriftAck{IDs: []uint64{id}})
	if err != nil {
		return
	}
	client.Publish(wire.ControllerTopic(dev, wire.LeafDriftAck), 1, false, payload)
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
