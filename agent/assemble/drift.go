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

	ref wire.ModelRef  // the model mon was built for (or found without a baseline)
	mon *drift.Monitor // nil when ref has no baseline or its baseline is unusable
	why error          // why mon is nil
}

// newFollowDrift returns the drift monitor for swap's active model, watching windows of
// window inferences. It logs nothing until Run (logState): New may still fail.
func newFollowDrift(swap *agent.Swap, window int64, log *slog.Logger) *followDrift {
	f := &followDrift{swap: swap, window: window, log: log}
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
	f.mon, f.why = drift.New(m.Manifest(), f.ref, drift.Config{Window: f.window})
}

// logState logs what is monitored: the model, window and thresholds, or why nothing is.
func (f *followDrift) logState() {
	if f.mon == nil {
		f.log.Info("drift not monitored", "model", f.ref.String(), "reason", f.why)
		return
	}
	f.log.Info("drift monitor", "model", f.ref.String(), "window", f.window, "thresholds", f.mon.Thresholds())
}

// Model implements agent.DriftMonitor: the active model, after following it if it changed.
// The agent skips a window run by any other model (the one just swapped out).
func (f *followDrift) Model() wire.ModelRef {
	if p := f.swap.Active(); p.Model() != f.ref {
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
