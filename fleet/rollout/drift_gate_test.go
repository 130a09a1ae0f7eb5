package rollout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func driftRec(device string, m wire.ModelRef, psi ...float64) fleet.DriftRecord {
	s := wire.DriftSummary{V: 1, Device: device, Model: m, Window: 1}
	for _, p := range psi {
		s.Features = append(s.Features, wire.DriftFeature{Name: "f", Role: wire.DriftInput, Scored: p >= 0, PSI: max(p, 0)})
	}
	return fleet.DriftRecord{Summary: s}
}

func TestWorstPSI(t *testing.T) {
	cand := wire.ModelRef{Name: "vib", Version: "1.1.0"}
	old := wire.ModelRef{Name: "vib", Version: "1.0.0"}
	got := WorstPSI([]fleet.DriftRecord{
		driftRec("a", cand, 0.1, 0.3), driftRec("a", cand, 0.2),
		driftRec("b", old, 0.9),       // another version: not the candidate's figure
		driftRec("c", cand, -1, 0.05), // -1: unscored, counts for nothing
	}, cand)
	if len(got) != 2 || got["a"] != 0.3 || got["c"] != 0.05 {
		t.Fatalf("WorstPSI = %v, want a 0.3, c 0.05", got)
	}
}

func TestDeviceGateControllerPSI(t *testing.T) {
	spec := baseSpec() // MaxDriftPSI 0.2
	for _, c := range []struct {
		phase string
		ctl   float64
		fails bool
	}{
		{wire.PhaseProbation, 0.5, true},
		{wire.PhaseCommitted, 0.21, true},
		{wire.PhaseCommitted, 0.2, false},
		{wire.PhaseDownloading, 0.5, false}, // the candidate is not running yet
		{wire.PhaseShadow, 0.5, false},
	} {
		d := &fleet.RolloutDevice{ID: "a", Phase: c.phase}
		why := deviceGate(spec, d, c.ctl)
		if (why != "") != c.fails || c.fails && !strings.Contains(why, "controller's drift summaries") {
			t.Errorf("phase %s ctl %v: %q", c.phase, c.ctl, why)
		}
	}
	spec.Gates.MaxDriftPSI = 0
	if why := deviceGate(spec, &fleet.RolloutDevice{Phase: wire.PhaseCommitted}, 5); why != "" {
		t.Errorf("gate off: %q", why)
	}
}

// A rollout's drift overrides travel in every Desired state it sends, and a spec with an
// out-of-range override is refused.
func TestRolloutDriftOverrides(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	ctx := context.Background()
	if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}
	f := newSimFleet(10, func(int) behaviour { return good })
	e := newTestEngine(t, st, f)
	bad := baseSpec()
	bad.Drift = &wire.DriftOverrides{KS: 2}
	if _, err := e.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "ks 2") {
		t.Fatalf("Create with ks 2 = %v", err)
	}
	spec := baseSpec()
	spec.Drift = &wire.DriftOverrides{PSI: 0.4, Window: 500}
	r, err := e.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	drive(t, e, f)
	d, ok := f.lastSent(r.Waves[0].Devices[0].ID)
	if !ok || d.Drift == nil || *d.Drift != *spec.Drift {
		t.Fatalf("desired state %+v carries drift %+v, want %+v", d, d.Drift, spec.Drift)
	}
}

// With Options.Drift the gate reads the controller's stored summaries: a canary whose own
// probation PSI is fine but whose stored windows of the candidate drift fails, and the
// rollout halts.
func TestControllerDriftGate(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	ctx := context.Background()
	if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}
	f := newSimFleet(20, func(int) behaviour { return good })
	e, err := New(ctx, Options{Store: st, Fleet: f, Publisher: f, Drift: st})
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.Create(ctx, baseSpec()) // MaxDriftPSI 0.2
	if err != nil {
		t.Fatal(err)
	}
	bad := r.Waves[0].Devices[0].ID
	cand := wire.ModelRef{Name: candidate.Name, Version: candidate.Version}
	rec := driftRec(bad, cand, 0.05, 0.9)
	rec.Summary.Start, rec.Summary.End = time.Now(), time.Now()
	other := driftRec(r.Waves[0].Devices[1].ID, wire.ModelRef{Name: "vib", Version: "1.0.0"}, 5) // the old model: not the gate's business
	other.Summary.Start, other.Summary.End = time.Now(), time.Now()
	if err := st.PutDrift(ctx, []fleet.DriftRecord{rec, other}); err != nil {
		t.Fatal(err)
	}
	drive(t, e, f)
	r, _ = e.Get(r.ID)
	if r.State != fleet.RolloutHalted || r.Wave != 0 {
		t.Fatalf("rollout %s at wave %d, want halted in the canary", r.State, r.Wave)
	}
	for _, d := range r.Waves[0].Devices {
		failed := d.Outcome == fleet.OutcomeFailed || d.Outcome == fleet.OutcomeRolledBack
		if d.ID == bad && (!failed || !strings.Contains(d.Reason, "controller's drift summaries")) {
			t.Errorf("%s: outcome %s reason %q", d.ID, d.Outcome, d.Reason)
		}
		if d.ID == other.Summary.Device && strings.Contains(d.Reason, "drift") {
			t.Errorf("%s failed on the old model's drift: %q", d.ID, d.Reason)
		}
	}
}
