package rollout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// step runs one round as Run does, without the ticker.
func step(t *testing.T, e *Engine) {
	t.Helper()
	ctx := context.Background()
	if err := e.Step(ctx); err != nil {
		t.Fatal(err)
	}
	e.reconcilePolicies(ctx)
	e.publish(ctx)
}

func newPolicyEngine(t *testing.T, st fleet.Store, f *simFleet) *Engine {
	t.Helper()
	e, err := New(context.Background(), Options{Store: st, Fleet: f, Publisher: f, Policies: st})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestMerge(t *testing.T) {
	ro := fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.1, KS: 0.3}, Capture: &wire.CapturePolicy{Random: 0.05}}
	dev := fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.5, Window: 200}, Capture: &wire.CapturePolicy{Drift: 1, DriftHoldS: 30}}
	tests := []struct {
		name      string
		base, dev fleet.MonitorSettings
		want      fleet.MonitorSettings
	}{
		{"nothing", fleet.MonitorSettings{}, fleet.MonitorSettings{}, fleet.MonitorSettings{}},
		{"rollout only", ro, fleet.MonitorSettings{}, ro},
		{"device only", fleet.MonitorSettings{}, dev, dev},
		// Drift field by field, the device's non-zero values winning; capture whole.
		{"both", ro, dev, fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.5, KS: 0.3, Window: 200}, Capture: dev.Capture}},
		{"device drift only", ro, fleet.MonitorSettings{Drift: dev.Drift}, fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.5, KS: 0.3, Window: 200}, Capture: ro.Capture}},
	}
	for _, tc := range tests {
		got := tc.base.Merge(tc.dev)
		if !fleet.SameMonitoring(got, tc.want) {
			t.Errorf("%s: Merge = %+v %+v, want %+v %+v", tc.name, got.Drift, got.Capture, tc.want.Drift, tc.want.Capture)
		}
		if got.Drift != nil && (got.Drift == tc.base.Drift || got.Drift == tc.dev.Drift) {
			t.Errorf("%s: Merge shares its drift overrides with an input", tc.name)
		}
	}
}

func TestDevicePolicyLifecycle(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st := openStore(t, dir)
	if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}
	f := newSimFleet(20, func(int) behaviour { return good })
	e := newPolicyEngine(t, st, f)
	clock := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	e.opts.Now = func() time.Time { return clock }

	// 1. No rollout at all: the settings go out in a desired state that orders no model.
	mine := fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.5, Window: 200}, Capture: &wire.CapturePolicy{Random: 0.2}}
	st0, err := e.SetPolicy(ctx, "dev-000", mine)
	if err != nil {
		t.Fatal(err)
	}
	if st0.Generation != 1 || st0.Pending != "" || !fleet.SameMonitoring(st0.Effective, mine) || st0.Published {
		t.Fatalf("status after SetPolicy = %+v", st0)
	}
	step(t, e)
	d, ok := f.lastSent("dev-000")
	if !ok || d.Generation != 1 || d.Model != nil || d.Rollback || !fleet.SameMonitoring(fleet.MonitorSettings{Drift: d.Drift, Capture: d.Capture}, mine) {
		t.Fatalf("published %+v (sent %v)", d, ok)
	}
	if !e.Policy("dev-000").Published {
		t.Error("status does not say published after the round")
	}
	if _, ok := f.lastSent("dev-001"); ok {
		t.Error("a device without settings got a desired state")
	}
	if _, err := e.SetPolicy(ctx, "dev-001", fleet.MonitorSettings{Drift: &wire.DriftOverrides{KS: 7}}); err == nil || !IsBadPolicy(err) {
		t.Errorf("SetPolicy(out of range) = %v, want a bad-policy error", err)
	}

	// 2. A rollout with its own values: merged, the device's winning.
	spec := baseSpec()
	spec.Drift = &wire.DriftOverrides{PSI: 0.1, KS: 0.3}
	spec.Capture = &wire.CapturePolicy{Random: 0.05}
	r, err := e.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	merged := fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.5, KS: 0.3, Window: 200}, Capture: mine.Capture}
	rolloutOnly := fleet.MonitorSettings{Drift: spec.Drift, Capture: spec.Capture}
	canary := r.Waves[0].Devices[0].ID
	step(t, e)
	// A change for a device the rollout is updating waits: a new generation would supersede
	// its update.
	before, _ := f.lastSent(canary)
	stc, err := e.SetPolicy(ctx, canary, mine)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stc.Pending, r.ID) || stc.Generation != before.Generation {
		t.Fatalf("status of a device in the canary = %+v", stc)
	}
	step(t, e)
	if d, _ := f.lastSent(canary); d.Generation != before.Generation {
		t.Fatalf("a settings change superseded the canary's update: generation %d after %d", d.Generation, before.Generation)
	}
	for range 200 {
		step(t, e)
		if !f.deliver() && e.Unsent() == 0 {
			step(t, e)
			if !f.deliver() {
				break
			}
		}
	}
	r, _ = e.Get(r.ID)
	if r.State != fleet.RolloutCompleted {
		t.Fatalf("rollout ended %s (%s)", r.State, r.Reason)
	}
	for _, w := range r.Waves {
		for _, rd := range w.Devices {
			if m := f.device(rd.ID).model; rd.Outcome != fleet.OutcomeSucceeded || m.Version != candidate.Version {
				t.Errorf("%s: outcome %q, runs %v", rd.ID, rd.Outcome, m)
			}
		}
	}
	// Once its update ended, the canary got the settings in a desired state of their own.
	d, _ = f.lastSent(canary)
	if d.Generation != before.Generation+1 || d.Model != nil || !fleet.SameMonitoring(fleet.MonitorSettings{Drift: d.Drift, Capture: d.Capture}, merged) {
		t.Fatalf("canary's last desired state %+v, drift %+v", d, d.Drift)
	}
	if s := e.Policy(canary); s.Pending != "" || !fleet.SameMonitoring(s.Base, rolloutOnly) {
		t.Errorf("canary status after the rollout %+v", s)
	}
	// Every device the rollout told carries the merged or the rollout's values.
	for _, w := range r.Waves {
		for _, rd := range w.Devices {
			d, _ := f.lastSent(rd.ID)
			want := rolloutOnly
			if rd.ID == "dev-000" || rd.ID == canary {
				want = merged
			}
			if !fleet.SameMonitoring(fleet.MonitorSettings{Drift: d.Drift, Capture: d.Capture}, want) {
				t.Errorf("%s: drift %+v capture %+v, want %+v %+v", rd.ID, d.Drift, d.Capture, want.Drift, want.Capture)
			}
		}
	}

	// 3. Clearing returns the device to the rollout's values.
	gen := e.Desired("dev-000").Generation
	if _, err := e.SetPolicy(ctx, "dev-000", fleet.MonitorSettings{}); err != nil {
		t.Fatal(err)
	}
	step(t, e)
	d, _ = f.lastSent("dev-000")
	if d.Generation != gen+1 || d.Model != nil || !fleet.SameMonitoring(fleet.MonitorSettings{Drift: d.Drift, Capture: d.Capture}, rolloutOnly) {
		t.Fatalf("after clearing: %+v drift %+v", d, d.Drift)
	}
	if ps := e.Policies(); len(ps) != 1 || ps[0].Device != canary {
		t.Errorf("Policies() = %+v, want only %s", ps, canary)
	}

	// 4. A restart keeps settings and bases and decides nothing new.
	st.Close()
	st = openStore(t, dir)
	defer st.Close()
	f.mu.Lock()
	f.sent = map[string][]wire.Desired{}
	f.mu.Unlock()
	e2 := newPolicyEngine(t, st, f)
	ds := e2.reconcileLocked([]string{"dev-000", canary, "dev-005"}, clock, nil)
	if len(ds) != 0 {
		t.Errorf("restarted engine decided %+v", ds)
	}
	if s := e2.Policy(canary); s.Settings == nil || !fleet.SameMonitoring(s.Effective, merged) || !fleet.SameMonitoring(s.Base, rolloutOnly) {
		t.Errorf("restarted status %+v", s)
	}
}

// A device that reports an update in progress (here a rollback it was ordered, outside any
// rollout the engine still follows) gets new settings only once that update is final.
func TestDevicePolicyWaitsForReportedUpdate(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	defer st.Close()
	f := newSimFleet(2, func(int) behaviour { return good })
	dev := f.device("dev-001")
	dev.apply(wire.UpdateStatus{Generation: 0, Phase: wire.PhaseProbation})
	e := newPolicyEngine(t, st, f)
	s, err := e.SetPolicy(ctx, "dev-001", fleet.MonitorSettings{Drift: &wire.DriftOverrides{JS: 0.2}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Generation != 0 || !strings.Contains(s.Pending, "probation") {
		t.Fatalf("status while the device is in probation: %+v", s)
	}
	step(t, e)
	if d, ok := f.lastSent("dev-001"); ok {
		t.Fatalf("published %+v while the device's update was in progress", d)
	}
	dev.apply(wire.UpdateStatus{Generation: 0, Phase: wire.PhaseRolledBack})
	step(t, e)
	if d, ok := f.lastSent("dev-001"); !ok || d.Generation != 1 || d.Drift == nil || d.Drift.JS != 0.2 {
		t.Fatalf("after the update ended: %+v (sent %v)", d, ok)
	}
	if s := e.Policy("dev-001"); s.Pending != "" || !s.Published {
		t.Errorf("status %+v", s)
	}
}
