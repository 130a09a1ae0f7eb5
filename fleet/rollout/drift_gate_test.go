package rollout

import (
	"strings"
	"testing"

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
