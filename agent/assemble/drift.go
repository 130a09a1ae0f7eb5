package assemble

import (
	"errors"
	"log/slog"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/drift"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

// manifester is a Predictor that carries its package manifest (*tfpredict.Predictor).
type manifester interface {
	Manifest() *bundle.Manifest
}

// followDrift is the agent's DriftMonitor on a device whose model can be updated: it holds an
// agent/drift monitor for the model the Swap has active and builds a new one from the new
// model's manifest when an update (or rollback) changes it, so drift is always scored
// against the baseline of the model that ran the window. A model without a baseline is not
// monitored. The infer loop is its only caller (Model, then Observe), so it needs no lock.
type followDrift struct {
	swap   *agent.Swap
	window int64
	log    *slog.Logger
	// overrides returns the controller's drift settings (Desired.Drift, nil for none); the
	// monitor is rebuilt when they change.
	overrides func() *wire.DriftOverrides
	applied   *wire.DriftOverrides

	ref wire.ModelRef  // the model mon was built for (or found without a baseline)
	mon *drift.Monitor // nil when ref has no baseline or its baseline is unusable
	why error          // why mon is nil
}

// newFollowDrift returns the drift monitor for swap's active model, watching windows of
// window inferences. It logs nothing until Run (logState): New may still fail.
func newFollowDrift(swap *agent.Swap, window int64, overrides func() *wire.DriftOverrides, log *slog.Logger) *followDrift {
	f := &followDrift{swap: swap, window: window, log: log, overrides: overrides}
	if overrides != nil {
		f.applied = overrides()
	}
	f.follow(swap.Active())
	return f
}

// follow builds the monitor for p. The old monitor's open window is dropped: its inferences
// were scored against the old model's baseline and a summary of part of a window would not
// compare with the others.
func (f *followDrift) follow(p agent.Predictor) {
	f.ref, f.mon, f.why = p.Model(), nil, nil
	m, ok := p.(manifester)
	if !ok || m.Manifest() == nil || m.Manifest().Baseline == nil {
		f.why = errors.New("the model has no baseline")
		return
	}
	cfg := drift.Config{Window: f.window}
	if o := f.applied; o != nil {
		if err := o.Validate(); err != nil {
			f.log.Warn("controller drift overrides ignored", "err", err)
		} else {
			cfg.Thresholds = bundle.DriftThresholds{PSI: o.PSI, KS: o.KS, JS: o.JS, CUSUMK: o.CUSUMK, CUSUMH: o.CUSUMH, MinSamples: o.MinSamples}
			if o.Window > 0 {
				cfg.Window = o.Window
			}
		}
	}
	f.mon, f.why = drift.New(m.Manifest(), f.ref, cfg)
}

// logState logs what is monitored: the model, window and thresholds, or why nothing is.
func (f *followDrift) logState() {
	if f.mon == nil {
		f.log.Info("drift not monitored", "model", f.ref.String(), "reason", f.why)
		return
	}
	f.log.Info("drift monitor", "model", f.ref.String(), "window", f.mon.Window(), "thresholds", f.mon.Thresholds(), "controller_overrides", f.applied != nil)
}

// Model implements agent.DriftMonitor: the active model, after following it if it changed.
// The agent skips a window run by any other model (the one just swapped out).
func (f *followDrift) Model() wire.ModelRef {
	p := f.swap.Active()
	changed := p.Model() != f.ref
	if f.overrides != nil {
		// A pointer compare per inference; values only when a new Desired state arrived.
		if o := f.overrides(); o != f.applied {
			changed = changed || !sameOverrides(o, f.applied)
			f.applied = o
		}
	}
	if changed {
		f.follow(p)
		f.logState()
	}
	return f.ref
}

// Observe implements agent.DriftMonitor.
func (f *followDrift) Observe(t time.Time, input, output []float32) *drift.Report {
	if f.mon == nil {
		return nil
	}
	return f.mon.Observe(t, input, output)
}

func sameOverrides(a, b *wire.DriftOverrides) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
