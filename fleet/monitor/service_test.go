package monitor

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestServiceAlertsOnStoredDrift: the service stores no drift itself; it alerts on the records
// the controller hands it after storing them. Its state is seeded from the store (no alert
// for what was stored before), records handed over before the seed still raise their alert
// though they are in the store too, a redelivered window raises nothing, and each transition
// is published once on wire.TopicAlerts.
func TestServiceAlertsOnStoredDrift(t *testing.T) {
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	bctx, stopBroker := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(bctx) }()
	defer func() { stopBroker(); <-bdone }()
	store, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()

	// What the controller stored earlier: device a drifting since window 1.
	a := seq("a", vib1, "d")
	put := func(recs ...fleet.DriftRecord) {
		t.Helper()
		if err := store.PutDrift(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	put(a...)

	user, pass := b.ControllerCredentials()
	var mu sync.Mutex
	var alerts []wire.DriftAlert
	obs := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("alert-watcher").SetUsername(user).SetPassword(pass))
	if tok := obs.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer obs.Disconnect(100)
	if tok := obs.Subscribe(wire.TopicAlerts, 1, func(_ paho.Client, m paho.Message) {
		var al wire.DriftAlert
		if err := wire.Decode(m.Payload(), &al); err != nil {
			t.Errorf("alert: %v", err)
		}
		mu.Lock()
		alerts = append(alerts, al)
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	now := day0.Add(time.Hour)
	s, err := NewService(Options{Store: store, BrokerURL: b.URL(), Username: user, Password: pass, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if s.Drifting() != nil {
		t.Error("Drifting before Run: want nil")
	}
	// Stored and handed over before Run seeded the state: device b starts drifting.
	bw := seq("b", vib1, "d")
	put(bw...)
	s.DriftStored(bw)

	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitUntil(t, "the seeded state", func() bool { return s.Drifting() != nil })

	// a: drifted again (no change), then two clean windows (recovered), the last redelivered.
	a = seq("a", vib1, "ddcc")
	for _, r := range a[1:] {
		put(r)
		s.DriftStored([]fleet.DriftRecord{r})
	}
	s.DriftStored(a[3:])

	waitUntil(t, "two alerts", func() bool { mu.Lock(); defer mu.Unlock(); return len(alerts) >= 2 })
	waitUntil(t, "two alerts published", func() bool { return s.Stats().Alerts == 2 })
	mu.Lock()
	got := slices.Clone(alerts)
	mu.Unlock()
	slices.SortFunc(got, func(x, y wire.DriftAlert) int { return cmp.Compare(y.Device, x.Device) }) // b first
	if len(got) != 2 || got[0].Device != "b" || got[0].State != wire.AlertDrifting || got[0].Window != 1 ||
		got[1].Device != "a" || got[1].State != wire.AlertRecovered || got[1].Window != 4 {
		t.Errorf("alerts %+v; want b drifting at window 1, a recovered at window 4", got)
	}
	if st := s.Stats(); st.Started != 1 || st.Recovered != 1 || st.DriftSeen != 5 || st.Dropped != 0 {
		t.Errorf("stats %+v; want 1 started and 1 recovered, 5 records seen, none dropped", st)
	}
	state := s.Drifting()
	if len(state) != 2 || state[0].Device != "a" || state[0].Drifting || state[1].Device != "b" || !state[1].Drifting {
		t.Errorf("Drifting() = %+v; want a recovered, b drifting", state)
	}
	if n, err := store.Drift(ctx, fleet.DriftQuery{}); err != nil || len(n) != 5 {
		t.Errorf("store holds %d records (%v), want the 5 put (the service writes none)", len(n), err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServiceElectedPublishesOnce: two replicas see every drift record (scale-out mode), and
// only the one inside Lead publishes; when leadership moves, the other publishes the next
// transition from its own, complete state. Each transition reaches wire.TopicAlerts once.
func TestServiceElectedPublishesOnce(t *testing.T) {
	t.Parallel()
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	bctx, stopBroker := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(bctx) }()
	defer func() { stopBroker(); <-bdone }()
	store, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	user, pass := b.ControllerCredentials()

	var mu sync.Mutex
	var alerts []wire.DriftAlert
	obs := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("alert-watcher").SetUsername(user).SetPassword(pass))
	if tok := obs.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer obs.Disconnect(100)
	if tok := obs.Subscribe(wire.TopicAlerts, 1, func(_ paho.Client, m paho.Message) {
		var al wire.DriftAlert
		if err := wire.Decode(m.Payload(), &al); err != nil {
			t.Errorf("alert: %v", err)
		}
		mu.Lock()
		alerts = append(alerts, al)
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	now := day0.Add(time.Hour)
	var replicas [2]*Service
	for i := range replicas {
		s, err := NewService(Options{Store: store, BrokerURL: b.URL(), Username: user, Password: pass,
			ClientID: DefaultClientID + "-" + string(rune('a'+i)), Elected: true, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		replicas[i] = s
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx) }()
		defer func() {
			stop()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		waitUntil(t, "the seeded state", func() bool { return s.Drifting() != nil && s.Subscribed() })
	}
	lead := func(s *Service) (stop func()) {
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Lead(lctx) }()
		waitUntil(t, "leading", s.publishes)
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	// What ingest hands every replica: the same stored records.
	hand := func(recs ...fleet.DriftRecord) {
		t.Helper()
		if err := store.PutDrift(ctx, recs); err != nil {
			t.Fatal(err)
		}
		for _, s := range replicas {
			s.DriftStored(recs)
		}
	}

	// Device p drifts at window 1 (replica 0 leads), recovers at window 3 (replica 1 leads).
	p := seq("p", vib1, "dcc")
	stop0 := lead(replicas[0])
	hand(p[0])
	waitUntil(t, "the drift alert", func() bool { return replicas[0].Stats().Alerts == 1 })
	stop0()
	stop1 := lead(replicas[1])
	defer stop1()
	hand(p[1:]...)
	waitUntil(t, "the recovery alert", func() bool { return replicas[1].Stats().Alerts == 1 })

	// Both replicas have seen every record and raised both transitions; one published each.
	for i, s := range replicas {
		if st := s.Stats(); st.DriftSeen != 3 || st.Started != 1 || st.Recovered != 1 || st.Alerts != 1 || st.Followed != 1 || st.Dropped != 0 {
			t.Errorf("replica %d stats %+v; want 3 seen, 1 started, 1 recovered, 1 published, 1 followed", i, st)
		}
	}
	// The observer's subscription is QoS 1 from one broker: both alerts arrive, in order of
	// publication; wait for them, then check nothing else came.
	waitUntil(t, "two alerts delivered", func() bool { mu.Lock(); defer mu.Unlock(); return len(alerts) >= 2 })
	mu.Lock()
	got := slices.Clone(alerts)
	mu.Unlock()
	if len(got) != 2 || got[0].Device != "p" || got[0].State != wire.AlertDrifting || got[0].Window != 1 ||
		got[1].Device != "p" || got[1].State != wire.AlertRecovered || got[1].Window != 3 {
		t.Errorf("alerts %+v; want p drifting at window 1, then p recovered at window 3, once each", got)
	}
}
