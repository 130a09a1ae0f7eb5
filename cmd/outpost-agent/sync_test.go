package main_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// fleetBroker runs the controller's embedded broker on a free loopback port for the test.
func fleetBroker(t testing.TB) *broker.Broker {
	t.Helper()
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return b
}

// fleetController runs the real controller on a boltstore in dir until stop is called.
func fleetController(t testing.TB, b *broker.Broker, dir string) (c *fleet.Controller, stop func()) {
	t.Helper()
	store, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	user, pass := b.ControllerCredentials()
	c, err = fleet.New(fleet.Options{Store: store, BrokerURL: b.URL(), Username: user, Password: pass, RetryInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("controller Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("controller did not stop within 15s")
			}
		})
	}
	t.Cleanup(stop)
	pollUntil(t, "controller connected", 10*time.Second, c.Connected)
	return c, stop
}

func pollUntil(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func deviceStatus(c *fleet.Controller, id string) fleet.DeviceStatus {
	for _, d := range c.Devices() {
		if d.ID == id {
			return d
		}
	}
	return fleet.DeviceStatus{}
}

// TestWipedDataDirStartsNewEpoch kills the real agent binary mid-run, wipes its data directory
// and starts it again: its sequence restarts at 1 under a new epoch, and the real controller
// stores and acks the new results instead of discarding them as duplicates of the old ones.
// The old epoch's results stay in the store.
func TestWipedDataDirStartsNewEpoch(t *testing.T) {
	b := fleetBroker(t)
	storeDir := t.TempDir()
	ctl, stopCtl := fleetController(t, b, storeDir)
	dataDir := filepath.Join(t.TempDir(), "data")
	args := []string{"--broker", b.URL(), "--id", "wipe-1", "--model", sampleModel, "--allow-unsigned",
		"--sensor", "sim:vibration?seed=5", "--data-dir", dataDir, "--health-interval", "100ms"}

	_, wait := startAgent(t, args...)
	pollUntil(t, "first results stored", 20*time.Second, func() bool { return deviceStatus(ctl, "wipe-1").Acked >= 5 })
	wait(syscall.SIGKILL)
	before := deviceStatus(ctl, "wipe-1").Acked
	buf, err := boltbuf.Open(filepath.Join(dataDir, assemble.BufferFile), boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	oldEpoch := buf.Epoch()
	if err := buf.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}

	stderr, wait := startAgent(t, args...)
	// The device table follows the current epoch: its counters restart with the new one. The
	// health report says what the agent itself saw acked.
	pollUntil(t, "results of the new epoch acked", 20*time.Second, func() bool {
		s := deviceStatus(ctl, "wipe-1")
		return s.Health != nil && s.Health.AckedSeq >= 5 && s.Health.AckedSeq <= s.Health.LastSeq && s.Acked >= 5 && s.Acked < before+1000
	})
	if code := wait(os.Interrupt); code != 0 {
		t.Fatalf("agent exit code %d; stderr:\n%s", code, stderr)
	}
	stopCtl()

	store, err := boltstore.Open(storeDir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	st, err := store.ResultStats(ctx, "wipe-1")
	if err != nil || st.Epoch == oldEpoch || st.Epoch == 0 || st.Contiguous < 5 || st.Duplicates > st.Stored {
		t.Fatalf("current epoch stats = %+v, %v; want a new epoch (old %d) with ≥ 5 results", st, err, oldEpoch)
	}
	for _, tt := range []struct {
		name  string
		epoch uint64
		least uint64
	}{{"old", oldEpoch, before}, {"new", st.Epoch, st.Contiguous}} {
		rs, err := store.EpochResults(ctx, "wipe-1", tt.epoch, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rs {
			if r.Seq != uint64(i+1) {
				t.Fatalf("%s epoch: result %d has seq %d, want %d (each seq once, from 1)", tt.name, i, r.Seq, i+1)
			}
		}
		if uint64(len(rs)) < tt.least {
			t.Fatalf("%s epoch holds %d results, want ≥ %d", tt.name, len(rs), tt.least)
		}
		t.Logf("%s epoch %d: %d results", tt.name, tt.epoch, len(rs))
	}
}

// TestBacklogDrain fills a buffer with a backlog, then runs the agent against the embedded
// broker and the real controller and times until the controller holds every result. The
// default backlog is small enough for every run; OUTPOST_DRAIN_N=1000000 is the issue's
// benchmark (≤ 60 s). Health must keep flowing while the backlog drains.
func TestBacklogDrain(t *testing.T) {
	n := 20_000
	if s := os.Getenv("OUTPOST_DRAIN_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			t.Fatalf("OUTPOST_DRAIN_N=%q: want a positive count", s)
		}
		n = v
	}
	dataDir := t.TempDir()
	fill := time.Now()
	buf, err := boltbuf.Open(filepath.Join(dataDir, assemble.BufferFile), boltbuf.Options{MaxResults: 2 * n, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const chunk = 10_000
	for done := 0; done < n; done += chunk {
		rs := make([]wire.Result, min(chunk, n-done))
		for i := range rs {
			k := done + i
			rs[i] = wire.Result{Time: t0.Add(time.Duration(k) * 20 * time.Millisecond), Model: "vibration-anomaly-f32@1.0.0",
				Score: float64(k%1000) / 1000, Label: "normal", Outputs: []float32{float32(k%1000) / 1000}, LatencyUs: 180}
		}
		if err := buf.Append(rs); err != nil {
			t.Fatal(err)
		}
	}
	if err := buf.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %d results in %v", n, time.Since(fill).Round(time.Millisecond))

	b := fleetBroker(t)
	ctl, _ := fleetController(t, b, t.TempDir())

	var mu sync.Mutex
	var healthAt []time.Time
	w := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("watch").SetOrderMatters(false))
	if tok := w.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer w.Disconnect(0)
	if tok := w.Subscribe(wire.DeviceTopic("drain-1", wire.LeafHealth), 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		healthAt = append(healthAt, time.Now())
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	const healthEvery = 500 * time.Millisecond
	dev, err := assemble.New(assemble.Config{
		DeviceID: "drain-1", Broker: b.URL(), ModelPath: sampleModel, AllowUnsigned: true, Sensors: []string{"sim:vibration?seed=3"},
		DataDir: dataDir, HealthInterval: healthEvery, MaxBuffered: 2 * n,
		Buffer: boltbuf.Options{MaxBytes: 1 << 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- dev.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("device Run: %v", err)
		}
	}()
	limit := max(60*time.Second, time.Duration(n)*100*time.Microsecond) // -race and small n get slack
	pollUntil(t, "backlog stored by the controller", limit, func() bool { return deviceStatus(ctl, "drain-1").Acked >= uint64(n) })
	took := time.Since(start)
	s := deviceStatus(ctl, "drain-1")
	t.Logf("drained %d results in %v (%.0f results/s); controller stored %d, duplicates %d",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), s.ResultsReceived, s.Duplicates)
	if s.ResultsReceived < uint64(n) || s.Dropped != 0 {
		t.Fatalf("controller status %+v, want ≥ %d results stored and none dropped", s, n)
	}
	mu.Lock()
	hs := append([]time.Time(nil), healthAt...)
	mu.Unlock()
	// Health is published every healthEvery from the first connection; the drain must not
	// hold it back. Allow a generous factor for a loaded test machine.
	var gap time.Duration
	prev := start
	for _, at := range hs {
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	gap = max(gap, time.Since(prev))
	t.Logf("%d health reports during the drain, longest gap %v", len(hs), gap.Round(time.Millisecond))
	if took > 4*healthEvery && gap > 6*healthEvery {
		t.Fatalf("health reports stalled for %v while the backlog drained (interval %v)", gap, healthEvery)
	}
}
