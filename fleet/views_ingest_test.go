package fleet_test

import (
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

// startOnStore runs a controller on an open store the test keeps reading (the bbolt file
// cannot be opened twice).
func startOnStore(t *testing.T, b *broker.Broker, store fleet.Store, with ...func(*fleet.Options)) *runningController {
	t.Helper()
	user, pass := b.ControllerCredentials()
	opts := fleet.Options{Store: store, BrokerURL: b.URL(), Username: user, Password: pass,
		RetryInterval: 100 * time.Millisecond, DeviceFlush: 20 * time.Millisecond}
	for _, f := range with {
		f(&opts)
	}
	c, err := fleet.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { stop() })
	waitFor(t, "controller to connect", c.Connected)
	return &runningController{Controller: c, stop: stop}
}

func openStore(t *testing.T) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestIngestViews: results are stored with their received time and summarised; health
// becomes history at one point per device and minute, the newest snapshot of the minute; a
// stale snapshot never replaces a newer one as the device's latest.
func TestIngestViews(t *testing.T) {
	b := startBroker(t)
	store := openStore(t)
	c := startOnStore(t, b, store)
	d := newDevice(t, b, "dev-v")
	ctx := context.Background()

	before := time.Now()
	d.results(0, 1, 2, 3)
	waitFor(t, "ack 3", func() bool { return d.lastAck() == 3 })
	rs, err := store.QueryResults(ctx, fleet.ResultQuery{Device: "dev-v"})
	if err != nil || len(rs) != 3 || rs[0].Result.Seq != 3 {
		t.Fatalf("QueryResults = %+v, %v", rs, err)
	}
	if rs[0].Received.Before(before.Add(-time.Second)) || rs[0].Received.After(time.Now()) {
		t.Errorf("received %v, want between %v and now", rs[0].Received, before)
	}
	sums, err := store.OutputSummaries(ctx, "dev-v", time.Time{}, time.Time{})
	var n uint64
	for _, s := range sums {
		n += s.Count
	}
	if err != nil || n != 3 {
		t.Errorf("summaries count %d results (%v), want 3", n, err)
	}
	d.results(0, 2, 3) // redelivery: summaries must not move
	waitFor(t, "re-ack", func() bool { return d.ackCount() >= 2 })
	sums, _ = store.OutputSummaries(ctx, "dev-v", time.Time{}, time.Time{})
	n = 0
	for _, s := range sums {
		n += s.Count
	}
	if n != 3 {
		t.Errorf("after redelivery summaries count %d, want 3", n)
	}

	// Health: three snapshots in one minute and one in the next.
	m0 := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	for i, off := range []time.Duration{5 * time.Second, 40 * time.Second, 20 * time.Second, 70 * time.Second} {
		d.publish(wire.LeafHealth, &wire.Health{V: 1, Device: "dev-v", Time: m0.Add(off), Inferences: uint64(i + 1), AgentVersion: "1.2.3"}, false)
	}
	waitFor(t, "two health points", func() bool {
		ps, _ := store.HealthHistory(ctx, "dev-v", time.Time{}, time.Time{})
		return len(ps) == 2 && ps[1].Health.Inferences == 4
	})
	ps, _ := store.HealthHistory(ctx, "dev-v", time.Time{}, time.Time{})
	if !ps[0].Start.Equal(m0) || ps[0].Health.Inferences != 2 || !ps[1].Start.Equal(m0.Add(time.Minute)) {
		t.Errorf("health history = %+v; want the 40 s snapshot (2) at %v and the next minute's", ps, m0)
	}
	// The latest stays the newest snapshot: the 70 s one, although 20 s arrived after 40 s.
	waitFor(t, "latest health", func() bool {
		s, ok := status(c, "dev-v")
		return ok && s.Health != nil && s.Health.Inferences == 4
	})
	// A stale, not retained snapshot (as from a resumed session's backlog) after a newer one.
	d.publish(wire.LeafHealth, &wire.Health{V: 1, Device: "dev-v", Time: m0.Add(-time.Hour), Inferences: 99}, false)
	d.results(0, 4) // something after it, to know it was taken
	waitFor(t, "ack 4", func() bool { return d.lastAck() == 4 })
	if s, _ := status(c, "dev-v"); s.Health == nil || s.Health.Inferences != 4 {
		t.Errorf("latest health = %+v after a stale snapshot, want the newer one kept (4 inferences)", s.Health)
	}
	// The registry and the stale snapshot's history point (at its own minute) are written
	// within DeviceFlush.
	waitFor(t, "stale snapshot in history", func() bool {
		ps, _ := store.HealthHistory(ctx, "dev-v", time.Time{}, m0)
		return len(ps) == 1 && ps[0].Health.Inferences == 99
	})
	devs, err := store.Devices(ctx)
	if err != nil || len(devs) != 1 || devs[0].Health == nil || devs[0].Health.Inferences != 4 || devs[0].Health.AgentVersion != "1.2.3" {
		t.Errorf("stored registry = %+v, %v; want the newest health kept", devs, err)
	}
}

func driftSummary(device string, window uint64) *wire.DriftSummary {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return &wire.DriftSummary{V: 1, Device: device, Model: wire.ModelRef{Name: "vib", Version: "1.0.0"}, Window: window,
		Start: now.Add(-time.Minute), End: now, Inferences: 600,
		Features: []wire.DriftFeature{{Name: "ax", Role: wire.DriftInput, Count: 600, Mean: 0.1, Std: 1, Min: -3, Max: 3,
			QuantileP: []float64{0.5}, Quantiles: []float64{0.1}, Counts: []int64{100, 400, 100}, Scored: true, PSI: 0.3, Drifted: []string{wire.ScorePSI}}}}
}

// TestIngestDrift: drift summaries are validated and stored once however often delivered;
// a queued summary (with an ID) is acked on c/{id}/drift-ack only once stored, one without
// is not acked; OnDrift is handed each stored record after its commit; malformed ones are
// counted and stored nowhere.
func TestIngestDrift(t *testing.T) {
	b := startBroker(t)
	store := openStore(t)
	ctx := context.Background()
	var mu sync.Mutex
	var handed []fleet.DriftRecord
	var unstored []uint64 // windows handed over before they could be read back
	c := startOnStore(t, b, store, func(o *fleet.Options) {
		o.OnDrift = func(recs []fleet.DriftRecord) {
			// Runs on the ingest loop after PutDrift: the records must be readable.
			got, err := store.Drift(ctx, fleet.DriftQuery{Device: "dev-d"})
			mu.Lock()
			defer mu.Unlock()
			for _, r := range recs {
				if err != nil || !slices.ContainsFunc(got, func(g fleet.DriftRecord) bool { return g.Summary.Window == r.Summary.Window }) {
					unstored = append(unstored, r.Summary.Window)
				}
			}
			handed = append(handed, recs...)
		}
	})
	d := newDevice(t, b, "dev-d")
	var acked [][]uint64
	tok := d.c.Subscribe(wire.ControllerTopic("dev-d", wire.LeafDriftAck), 1, func(_ paho.Client, m paho.Message) {
		var a wire.DriftAck
		if err := wire.Decode(m.Payload(), &a); err != nil {
			t.Errorf("drift ack: %v", err)
		}
		mu.Lock()
		acked = append(acked, a.IDs)
		mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	s := driftSummary("dev-d", 1)
	s.ID = 11
	d.publish(wire.LeafDrift, s, false)
	d.publish(wire.LeafDrift, s, false) // redelivered: stored once, acked again
	// A second later than window 1, so that Drift's order (newest End first) decides which
	// comes first: made in the same millisecond, the two tied, and the order between them is
	// not specified.
	s2 := driftSummary("dev-d", 2)
	s2.Start, s2.End = s2.Start.Add(time.Second), s2.End.Add(time.Second)
	d.publish(wire.LeafDrift, s2, false)
	bad := []struct {
		name    string
		payload []byte
	}{
		{"not json", []byte("{")},
		{"other device", mustEncode(t, driftSummary("dev-x", 3))},
		{"invalid", mustEncode(t, func() *wire.DriftSummary { x := driftSummary("dev-d", 3); x.Features[0].Role = "bogus"; return x }())},
	}
	for _, tc := range bad {
		d.publishRaw(wire.LeafDrift, tc.payload, false)
	}
	waitFor(t, "6 messages handled", func() bool { st := c.Stats(); return st.Malformed+st.Drift == 6 })
	if st := c.Stats(); st.Malformed != 3 || st.Drift != 3 {
		t.Errorf("stats malformed %d drift %d, want 3 and 3", st.Malformed, st.Drift)
	}
	rs, err := store.Drift(ctx, fleet.DriftQuery{})
	if err != nil || len(rs) != 2 || rs[1].Summary.Window != 1 || rs[1].Summary.Features[0].PSI != 0.3 || rs[1].Received.IsZero() {
		t.Errorf("stored drift = %+v, %v; want windows 1 and 2 once each", rs, err)
	}
	// OnDrift runs just after the counters move.
	waitFor(t, "three records handed over", func() bool { mu.Lock(); defer mu.Unlock(); return len(handed) >= 3 })
	// Each delivery is acked, but two deliveries handled in one group share one ack.
	waitFor(t, "a drift ack", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 1 })
	mu.Lock()
	defer mu.Unlock()
	for _, a := range acked {
		if !slices.Equal(a, []uint64{11}) {
			t.Errorf("drift acks %v, want [11] once or twice (the summary without an ID is not acked)", acked)
		}
	}
	if len(acked) > 2 {
		t.Errorf("%d drift acks for two deliveries", len(acked))
	}
	var windows []uint64
	for _, r := range handed {
		windows = append(windows, r.Summary.Window)
	}
	if !slices.Equal(windows, []uint64{1, 1, 2}) || len(unstored) > 0 {
		t.Errorf("OnDrift was handed windows %v (%v not yet readable), want 1, 1, 2 each after its commit", windows, unstored)
	}
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	p, err := wire.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
