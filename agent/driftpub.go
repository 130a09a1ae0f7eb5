package agent

import (
	"context"
	"time"

	"github.com/outpost-ml/outpost/agent/drift"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// DriftMonitor watches the model's inputs and outputs against its training baseline;
// agent/drift.Monitor implements it. The infer loop calls Observe after every successful
// inference with the raw (not normalised) samples of the window and the model's outputs; it
// must not block or allocate except when it returns a report.
type DriftMonitor interface {
	// Model is the model whose baseline the monitor scores against.
	Model() wire.ModelRef
	Observe(t time.Time, input, output []float32) *drift.Report
}

// driftQueue bounds the drift reports waiting for the uplink. Overflow policy: a report that
// finds the queue full is dropped and counted, so a long outage never holds up inference.
const driftQueue = 16

// observeDrift feeds one inference to the drift monitor, if there is one, and queues the
// report of a window it closes. It skips inferences of any other model than the monitor's
// (after a Swap): scoring them against the wrong baseline would report drift that is not.
func (a *Agent) observeDrift(t time.Time, raw, out []float32) {
	m := a.opts.Drift
	if m == nil {
		return
	}
	if _, model := a.windowModel(); model != m.Model() {
		return
	}
	r := m.Observe(t, raw, out)
	if r == nil {
		return
	}
	if a.opts.Capture != nil {
		a.opts.Capture.Drift(t, r.Event != nil)
	}
	select {
	case a.driftReports <- r:
	default:
		a.driftDropped.Add(1)
	}
}

// runDrift publishes drift summaries on wire.LeafDrift and drift events on wire.LeafEvents
// until ctx ends. Delivery is at most once: a summary that cannot be published (no
// connection, no PUBACK within PublishTimeout) is dropped and counted, never retried, since
// the next window's summary supersedes it.
func (a *Agent) runDrift(ctx context.Context) error {
	var errLogged time.Time
	for {
		var r *drift.Report
		select {
		case <-ctx.Done():
			return nil
		case r = <-a.driftReports:
		}
		r.Summary.Device = a.opts.DeviceID
		err := a.publishJSON(ctx, wire.LeafDrift, &r.Summary)
		if err == nil && r.Event != nil {
			r.Event.Device = a.opts.DeviceID
			err = a.publishJSON(ctx, wire.LeafEvents, r.Event)
		}
		if err != nil && ctx.Err() == nil {
			a.driftDropped.Add(1)
			if time.Since(errLogged) > time.Minute {
				errLogged = time.Now()
				a.log.Warn("publish drift summary", "err", err)
			}
		}
	}
}

// publishJSON encodes msg and publishes it, not retained, waiting at most PublishTimeout.
func (a *Agent) publishJSON(ctx context.Context, leaf string, msg any) error {
	payload, err := wire.Encode(msg)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, a.opts.PublishTimeout)
	defer cancel()
	return a.opts.Uplink.Publish(pctx, leaf, payload, false)
}
