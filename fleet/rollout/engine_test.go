package rollout

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/wire"
)

var candidate = fleet.Model{Name: "vib", Version: "1.1.0", SHA256: "pkgsha", ModelSHA256: "bb", Target: "vib-1.1.0.opkg",
	Release: 2, Ops: []string{"FULLY_CONNECTED"}, MinAgentVersion: "0.5.0", Published: true}

func openStore(t *testing.T, dir string) fleet.Store {
	t.Helper()
	st, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newTestEngine(t *testing.T, st fleet.Store, f *simFleet) *Engine {
	t.Helper()
	e, err := New(context.Background(), Options{Store: st, Fleet: f, Publisher: f})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func baseSpec() fleet.RolloutSpec {
	return fleet.RolloutSpec{Model: "vib@1.1.0", Canary: 0.1, Waves: []float64{0.5, 1}, Probation: time.Minute, Shadow: 30 * time.Second,
		Gates: fleet.Gates{MaxFailure: 0.02, MaxP99LatencyRatio: 1.5, MinShadowAgreement: 0.95, MaxDriftPSI: 0.2}}
}

// drive runs rounds of engine step, publish and device reports until nothing moves.
func drive(t *testing.T, e *Engine, f *simFleet) {
	t.Helper()
	ctx := context.Background()
	for range 200 {
		if err := e.Step(ctx); err != nil {
			t.Fatal(err)
		}
		e.publish(ctx)
		if !f.deliver() && e.Unsent() == 0 {
			if err := e.Step(ctx); err != nil { // take in the last reports
				t.Fatal(err)
			}
			e.publish(ctx)
			if !f.deliver() {
				return
			}
		}
	}
	t.Fatal("rollout did not settle in 200 rounds")
}

func TestPlan(t *testing.T) {
	tests := []struct {
		n      int
		canary float64
		waves  []float64
		want   []int
	}{
		{200, 0.05, []float64{0.25, 0.5, 1}, []int{10, 40, 50, 100}},
		{200, 0.1, []float64{1}, []int{20, 180}},
		{3, 0.05, []float64{0.25, 0.5, 1}, []int{1, 1, 1}},
		{1, 0.05, []float64{0.25, 0.5, 1}, []int{1}},
		{10, 0.29, []float64{1}, []int{3, 7}},
	}
	for _, tc := range tests {
		var devs []string
		for i := range tc.n {
			devs = append(devs, "d"+string(rune('a'+i%26))+strings.Repeat("x", i/26))
		}
		ws := plan("r1", devs, fleet.RolloutSpec{Canary: tc.canary, Waves: tc.waves})
		var got []int
		seen := map[string]bool{}
		for _, w := range ws {
			got = append(got, len(w.Devices))
			for _, d := range w.Devices {
				if seen[d.ID] {
					t.Errorf("device %s is in two waves", d.ID)
				}
				seen[d.ID] = true
			}
		}
		if !slices.Equal(got, tc.want) || len(seen) != tc.n {
			t.Errorf("plan(%d devices, canary %v, waves %v) sizes = %v, want %v", tc.n, tc.canary, tc.waves, got, tc.want)
		}
	}
}

func TestRollouts(t *testing.T) {
	tests := []struct {
		name string
		n    int
		spec func(*fleet.RolloutSpec)
		// setup scripts the devices once the waves are known.
		setup      func(f *simFleet, r fleet.Rollout)
		wantState  string
		wantWave   int
		wantReason string
	}{
		{name: "clean", n: 50, wantState: fleet.RolloutCompleted, wantWave: 2},
		{name: "canary fails probation", n: 200, setup: func(f *simFleet, r fleet.Rollout) {
			for _, d := range r.Waves[0].Devices[:2] { // 2 of 20 canaries: 10%
				f.device(d.ID).set(failProbation)
			}
		}, wantState: fleet.RolloutHalted, wantWave: 0, wantReason: "failure rate 10% (2 of 20)"},
		{name: "shadow disagreement", n: 200, setup: func(f *simFleet, r fleet.Rollout) {
			for _, d := range r.Waves[0].Devices {
				f.device(d.ID).set(disagree)
			}
		}, wantState: fleet.RolloutHalted, wantWave: 0, wantReason: "failure rate 100%"},
		{name: "latency gate in second wave", n: 50, setup: func(f *simFleet, r fleet.Rollout) {
			f.device(r.Waves[1].Devices[3].ID).set(slowCommit)
		}, wantState: fleet.RolloutHalted, wantWave: 1, wantReason: "failure rate"},
		{name: "drift gate", n: 20, setup: func(f *simFleet, r fleet.Rollout) {
			f.device(r.Waves[0].Devices[0].ID).set(drifting)
		}, wantState: fleet.RolloutHalted, wantWave: 0},
		{name: "threshold tolerates an offline device", n: 40, spec: func(s *fleet.RolloutSpec) {
			s.SuccessThreshold, s.Gates.MaxFailure = 0.9, 0.1
		}, setup: func(f *simFleet, r fleet.Rollout) {
			f.device(r.Waves[1].Devices[0].ID).set(silent)
		}, wantState: fleet.RolloutCompleted, wantWave: 2},
		{name: "threshold tolerates a failure within max-failure", n: 40, spec: func(s *fleet.RolloutSpec) {
			s.SuccessThreshold, s.Gates.MaxFailure = 0.9, 0.1
		}, setup: func(f *simFleet, r fleet.Rollout) {
			f.device(r.Waves[2].Devices[0].ID).set(failProbation)
		}, wantState: fleet.RolloutCompleted, wantWave: 2},
		{name: "offline device blocks a strict threshold", n: 20, spec: func(s *fleet.RolloutSpec) {
			s.Gates.MinShadowAgreement, s.Shadow = 0, 0
		}, setup: func(f *simFleet, r fleet.Rollout) {
			f.device(r.Waves[0].Devices[0].ID).set(silent)
		}, wantState: fleet.RolloutRunning, wantWave: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t, t.TempDir())
			defer st.Close()
			ctx := context.Background()
			if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
				t.Fatal(err)
			}
			f := newSimFleet(tc.n, func(int) behaviour { return good })
			e := newTestEngine(t, st, f)
			spec := baseSpec()
			if tc.spec != nil {
				tc.spec(&spec)
			}
			r, err := e.Create(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(f, r)
			}
			drive(t, e, f)
			r, _ = e.Get(r.ID)
			if r.State != tc.wantState || r.Wave != tc.wantWave || !strings.Contains(r.Reason, tc.wantReason) {
				t.Fatalf("rollout ended %s in wave %d (%q); want %s in wave %d (%q)", r.State, r.Wave, r.Reason, tc.wantState, tc.wantWave, tc.wantReason)
			}
			checkDevices(t, f, r)
		})
	}
}

// checkDevices holds the invariants of any rollout: devices of later waves never heard of a
// halted rollout; every device of a halted wave ends on the previous model, told so unless
// it rolled back by itself; a completed rollout leaves every answering device on the
// candidate except those that failed.
func checkDevices(t *testing.T, f *simFleet, r fleet.Rollout) {
	t.Helper()
	for wi, w := range r.Waves {
		for _, d := range w.Devices {
			dev := f.device(d.ID)
			last, told := f.lastSent(d.ID)
			switch {
			case wi > r.Wave:
				if told {
					t.Errorf("%s of wave %s was told %+v before its wave", d.ID, w.Name, last)
				}
			case w.State == fleet.WaveHalted:
				if dev.model != oldModel && dev.behaviour() != silent {
					t.Errorf("%s of halted wave %s runs %v, want %v back", d.ID, w.Name, dev.model, oldModel)
				}
				if d.Outcome != fleet.OutcomeFailed && !(last.Rollback && last.Model.Version == oldModel.Version) {
					t.Errorf("%s (outcome %q) of halted wave %s was not told to roll back: %+v", d.ID, d.Outcome, w.Name, last)
				}
				if dev.behaviour() == disagree || dev.behaviour() == slowCommit || dev.behaviour() == drifting {
					if !last.Rollback || d.Outcome != fleet.OutcomeFailed || !strings.Contains(d.Reason, "gate:") {
						t.Errorf("%s crossed a gate: outcome %q reason %q last desired %+v", d.ID, d.Outcome, d.Reason, last)
					}
				}
			case w.State == fleet.WavePassed && dev.behaviour() == good:
				if d.Outcome != fleet.OutcomeSucceeded || dev.model.Version != candidate.Version {
					t.Errorf("%s of passed wave %s: outcome %q, runs %v", d.ID, w.Name, d.Outcome, dev.model)
				}
				if last.Model == nil || last.Model.Target != candidate.Target || last.ProbationS != 60 || last.MaxLatencyRatio != 1.5 {
					t.Errorf("%s was told %+v", d.ID, last)
				}
			}
		}
	}
}

func TestPauseResumeAbort(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	ctx := context.Background()
	if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}
	f := newSimFleet(20, func(int) behaviour { return good })
	e := newTestEngine(t, st, f)
	r, err := e.Create(ctx, baseSpec())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Pause(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Pause(ctx, r.ID); !errors.Is(err, ErrState) {
		t.Errorf("Pause of a paused rollout = %v, want ErrState", err)
	}
	drive(t, e, f)
	r, _ = e.Get(r.ID)
	if r.State != fleet.RolloutPaused || r.Wave != 0 || r.Waves[0].Devices[0].Outcome != fleet.OutcomeSucceeded {
		t.Fatalf("paused rollout moved on: state %s wave %d", r.State, r.Wave)
	}
	if _, err := e.Resume(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	// One round starts wave 1; abort before its devices report.
	if err := e.Step(ctx); err != nil {
		t.Fatal(err)
	}
	e.publish(ctx)
	r, err = e.Abort(ctx, r.ID)
	if err != nil || r.State != fleet.RolloutAborted || r.Wave != 1 {
		t.Fatalf("Abort = %s wave %d, %v", r.State, r.Wave, err)
	}
	drive(t, e, f)
	r, _ = e.Get(r.ID)
	s := Summarize(r)
	if s.WaveStatus[0].Succeeded != 2 || s.WaveStatus[1].RolledBack != len(r.Waves[1].Devices) || s.WaveStatus[2].Waiting != len(r.Waves[2].Devices) {
		t.Errorf("after abort: %+v", s.WaveStatus)
	}
	for _, d := range r.Waves[1].Devices {
		if m := f.device(d.ID).model; m != oldModel {
			t.Errorf("%s runs %v after abort, want %v", d.ID, m, oldModel)
		}
	}
	if _, err := e.Resume(ctx, r.ID); !errors.Is(err, ErrState) {
		t.Errorf("Resume of an aborted rollout = %v, want ErrState", err)
	}
	if _, err := e.Abort(ctx, "r99"); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("Abort(unknown) = %v, want ErrNotFound", err)
	}
}

func TestCreateSelection(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	ctx := context.Background()
	if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}
	unpub := candidate
	unpub.Version, unpub.Published = "2.0.0", false
	if err := st.PutModel(ctx, unpub, []byte("pkg2")); err != nil {
		t.Fatal(err)
	}
	f := newSimFleet(10, func(int) behaviour { return good })
	f.devices[1].agent = "0.4.0"         // too old for the model
	f.devices[2].model = candidate.Ref() // already there
	f.devices[3].agent = "dev"           // a development build is not excluded
	for i, d := range f.devices {
		site := "north"
		if i >= 6 {
			site = "south"
		}
		if err := st.SetDeviceTags(ctx, d.id, map[string]string{"site": site}); err != nil {
			t.Fatal(err)
		}
	}
	e := newTestEngine(t, st, f)
	spec := baseSpec()
	spec.Select = []string{"site=north", "model=vib"}
	r, err := e.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range r.Waves {
		for _, d := range w.Devices {
			got = append(got, d.ID)
		}
	}
	if len(got) != 4 || len(r.Skipped) != 2 {
		t.Fatalf("selected %v, skipped %+v; want 4 selected (dev-000, dev-003, dev-004, dev-005) and 2 skipped", got, r.Skipped)
	}
	// The same devices cannot join a second rollout while this one runs.
	spec.Select = []string{"id=dev-000"}
	if _, err := e.Create(ctx, spec); !errors.Is(err, ErrNoDevices) {
		t.Errorf("Create over a busy device = %v, want ErrNoDevices", err)
	}
	bad := []struct {
		mod  func(*fleet.RolloutSpec)
		want string
	}{
		{func(s *fleet.RolloutSpec) { s.Model = "vib" }, "NAME@VERSION"},
		{func(s *fleet.RolloutSpec) { s.Model = "vib@9.9.9" }, "not found"},
		{func(s *fleet.RolloutSpec) { s.Model = "vib@2.0.0" }, "not published"},
		{func(s *fleet.RolloutSpec) { s.Select = []string{"site"} }, "KEY=VALUE"},
		{func(s *fleet.RolloutSpec) { s.Waves = []float64{0.5, 0.9} }, "must be 100%"},
		{func(s *fleet.RolloutSpec) { s.Waves = []float64{0.05, 1} }, "must grow"},
		{func(s *fleet.RolloutSpec) { s.Canary = 1.5 }, "fraction"},
		{func(s *fleet.RolloutSpec) { s.Gates.MaxP99LatencyRatio = -1 }, "latency ratio"},
		{func(s *fleet.RolloutSpec) { s.Shadow = 0 }, "needs a shadow period"},
		{func(s *fleet.RolloutSpec) { s.Select = []string{"site=nowhere"} }, "no devices selected"},
	}
	for _, b := range bad {
		s := baseSpec()
		b.mod(&s)
		if _, err := e.Create(ctx, s); err == nil || !strings.Contains(err.Error(), b.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Create(%+v) = %v; want a one-line error containing %q", s, err, b.want)
		}
	}
}

// TestRestart stops the engine mid-rollout, reopens the store in a new engine and checks
// that it republishes every desired state and carries the rollout to the end.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st := openStore(t, dir)
	if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}
	f := newSimFleet(30, func(int) behaviour { return good })
	e := newTestEngine(t, st, f)
	r, err := e.Create(ctx, baseSpec())
	if err != nil {
		t.Fatal(err)
	}
	// Run until the second wave has been told, then "crash" with reports still queued.
	for e.List()[0].Wave < 1 {
		if err := e.Step(ctx); err != nil {
			t.Fatal(err)
		}
		e.publish(ctx)
		f.deliver()
	}
	told := e.Desired(r.Waves[1].Devices[0].ID)
	st.Close()

	st = openStore(t, dir)
	defer st.Close()
	f.mu.Lock()
	f.sent = map[string][]wire.Desired{}
	f.mu.Unlock()
	e2 := newTestEngine(t, st, f)
	if got := e2.Unsent(); got != len(r.Waves[0].Devices)+len(r.Waves[1].Devices) {
		t.Errorf("restarted engine has %d desired states to republish, want %d", got, len(r.Waves[0].Devices)+len(r.Waves[1].Devices))
	}
	if got := e2.Desired(r.Waves[1].Devices[0].ID); got.Generation != told.Generation || got.Model.Target != candidate.Target {
		t.Errorf("restarted engine's desired state %+v, want generation %d", got, told.Generation)
	}
	drive(t, e2, f)
	r, _ = e2.Get(r.ID)
	if r.State != fleet.RolloutCompleted {
		t.Fatalf("after restart the rollout ended %s (%s)", r.State, r.Reason)
	}
	checkDevices(t, f, r)
}

func TestPublishRetry(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	ctx := context.Background()
	if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}
	f := newSimFleet(10, func(int) behaviour { return good })
	f.failPub = true
	e := newTestEngine(t, st, f)
	if _, err := e.Create(ctx, baseSpec()); err != nil {
		t.Fatal(err)
	}
	e.publish(ctx)
	if e.Unsent() != 1 {
		t.Fatalf("unsent after a failed publish = %d, want 1 (the canary)", e.Unsent())
	}
	f.failPub = false
	drive(t, e, f)
	if r := e.List()[0]; r.State != fleet.RolloutCompleted {
		t.Fatalf("rollout %s after the broker came back", r.State)
	}
}

func TestMQTTPublisherErrors(t *testing.T) {
	if _, err := NewMQTTPublisher(MQTTOptions{BrokerURL: "http://x"}); err == nil {
		t.Error("NewMQTTPublisher with an http URL = nil error")
	}
	// Nothing listens on port 1 of loopback: the publisher never connects and says so.
	p, err := NewMQTTPublisher(MQTTOptions{BrokerURL: "tcp://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	p.Connect()
	defer p.Close()
	ctx := context.Background()
	if err := p.PublishDesired(ctx, "dev-1", wire.Desired{Generation: 1}); !errors.Is(err, errNotConnected) {
		t.Errorf("PublishDesired while disconnected = %v, want errNotConnected", err)
	}
	if err := p.PublishDesired(ctx, "a/b", wire.Desired{}); err == nil {
		t.Error("PublishDesired to an invalid device id = nil error")
	}
}

// TestResendToSilentDevice: a desired state the device never received (a broker lost the
// retained message) is published again once the device has been silent for ResendAfter, and
// not before; the rollout then completes.
func TestResendToSilentDevice(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	defer st.Close()
	if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}
	f := newSimFleet(10, func(int) behaviour { return good })
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	e, err := New(ctx, Options{Store: st, Fleet: f, Publisher: f, ResendAfter: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.Create(ctx, baseSpec())
	if err != nil {
		t.Fatal(err)
	}
	e.publish(ctx)
	lost := r.Waves[0].Devices[0].ID
	f.mu.Lock()
	delete(f.queued, lost) // the message never reached the device
	f.mu.Unlock()
	dev := f.device(lost)
	dev.mu.Lock()
	dev.seen = 0
	dev.mu.Unlock()
	for range 5 {
		if err := e.Step(ctx); err != nil {
			t.Fatal(err)
		}
		e.publish(ctx)
		f.deliver()
	}
	f.mu.Lock()
	sent := len(f.sent[lost])
	f.mu.Unlock()
	if sent != 1 {
		t.Fatalf("desired state published %d times before ResendAfter passed, want once", sent)
	}
	now = now.Add(time.Minute)
	drive(t, e, f)
	f.mu.Lock()
	sends := f.sent[lost]
	f.mu.Unlock()
	if len(sends) < 2 || sends[0].Generation != sends[1].Generation {
		t.Fatalf("silent device was sent %d desired states, want the same one again", len(sends))
	}
	now = now.Add(time.Hour)
	drive(t, e, f)
	if r, _ = e.Get(r.ID); r.State != fleet.RolloutCompleted {
		for _, w := range r.Waves {
			for _, d := range w.Devices {
				t.Logf("%s %s gen %d %s %s", w.Name, d.ID, d.Generation, d.Phase, d.Outcome)
			}
		}
		t.Fatalf("rollout ended %s (%s), want completed once the lost desired state was resent", r.State, r.Reason)
	}
}
