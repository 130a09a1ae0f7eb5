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

// DriftQueue keeps drift summaries until the controller acks them; agent/driftq.Queue
// implements it.
type DriftQueue interface {
	// Put numbers the summary (its ID) and stores it durably.
	Put(s *wire.DriftSummary) error
	// Pending returns the unacked summaries, oldest first.
	Pending() []*wire.DriftSummary
	// Ack deletes the summaries with these IDs.
	Ack(ids []uint64) error
}

// DriftAckSource is an Uplink that delivers the controller's drift acks (mqttlink.Link).
type DriftAckSource interface {
	DriftAcks() <-chan wire.DriftAck
}

// runDrift publishes drift summaries on wire.LeafDrift and drift events on wire.LeafEvents
// until ctx ends. With a DriftQueue and an Uplink that delivers drift acks, every summary is
// stored before it is sent and sent again every DriftResend until the controller acks it,
// and at once after a reconnection, so summaries survive outages and restarts like results (the controller stores a resent
// window once: docs/monitoring.md). Without, delivery is at most once: a summary that cannot
// be published is dropped and counted. Drift events are at most once either way: the
// summary carries the same facts.
func (a *Agent) runDrift(ctx context.Context) error {
	q := a.opts.DriftQueue
	src, ok := a.opts.Uplink.(DriftAckSource)
	if q == nil || !ok {
		q = nil
	}
	var acks <-chan wire.DriftAck
	var check <-chan time.Time
	if q != nil {
		acks = src.DriftAcks()
		// Checked every second: unacked summaries go again DriftResend after the last try,
		// and at once when the link comes back.
		t := time.NewTicker(min(time.Second, a.opts.DriftResend))
		defer t.Stop()
		check = t.C
	}
	var lastSend time.Time
	wasUp := true
	var errLogged time.Time
	warn := func(msg string, err error) {
		if err != nil && ctx.Err() == nil && time.Since(errLogged) > time.Minute {
			errLogged = time.Now()
			a.log.Warn(msg, "err", err)
		}
	}
	sendPending := func() {
		if !a.opts.Uplink.Connected() {
			return
		}
		lastSend = time.Now()
		for _, s := range q.Pending() {
			if err := a.publishJSON(ctx, wire.LeafDrift, s); err != nil {
				warn("resend drift summary", err)
				return
			}
		}
	}
	if q != nil {
		sendPending() // what an earlier run left unacked
	}
	for {
		var r *drift.Report
		select {
		case <-ctx.Done():
			return nil
		case ack := <-acks:
			if err := q.Ack(ack.IDs); err != nil {
				warn("drift queue ack", err)
			}
			continue
		case <-check:
			up := a.opts.Uplink.Connected()
			if up && (!wasUp || time.Since(lastSend) >= a.opts.DriftResend) {
				sendPending()
			}
			wasUp = up
			continue
		case r = <-a.driftReports:
		}
		r.Summary.Device = a.opts.DeviceID
		queued := false
		if q != nil {
			if err := q.Put(&r.Summary); err != nil {
				warn("store drift summary", err) // still sent once below
			} else {
				queued = true
			}
		}
		err := a.publishJSON(ctx, wire.LeafDrift, &r.Summary)
		if err == nil && r.Event != nil {
			r.Event.Device = a.opts.DeviceID
			err = a.publishJSON(ctx, wire.LeafEvents, r.Event)
		}
		if err != nil && !queued && ctx.Err() == nil {
			a.driftDropped.Add(1)
		}
		warn("publish drift summary", err)
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
