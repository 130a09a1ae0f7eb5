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

// driftQueue bounds the drift reports waiting for the uplink when there is no durable queue.
// Overflow policy then: a report that finds the channel full is dropped and counted, so a
// long outage never holds up inference. With a durable queue nothing is dropped: the infer
// loop stores each report itself (see observeDrift).
const driftQueue = 16

// observeDrift feeds one inference to the drift monitor, if there is one, and hands over the
// report of a window it closes. It skips inferences of any other model than the monitor's
// (after a Swap): scoring them against the wrong baseline would report drift that is not.
//
// With a durable queue the report is written to it here, synchronously: a window closes once
// per Window inferences (1,000 by default), so one small atomic file write per window costs
// the infer loop little, and the report is on disk before anything can drop it. runDrift is
// only woken to send it. Should the write fail (a failing card), the report falls back to the
// in-memory hand-off and is sent at most once.
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
	r.Summary.Device = a.opts.DeviceID
	if r.Event != nil {
		r.Event.Device = a.opts.DeviceID
		r.Summary.Event = r.Event
	}
	if q := a.durableDrift(); q != nil {
		err := q.Put(&r.Summary)
		if err == nil {
			select {
			case a.driftKick <- struct{}{}:
			default: // a wake-up is pending; runDrift reads the queue afresh
			}
			return
		}
		a.driftPutErr.Store(&err)
		r.Summary.ID = 0 // not queued: the controller must not ack it
	}
	select {
	case a.driftReports <- r:
	default:
		a.driftDropped.Add(1)
	}
}

// durableDrift returns the drift queue when summaries are kept until acked, else nil.
func (a *Agent) durableDrift() DriftQueue {
	if a.opts.DriftQueue == nil {
		return nil
	}
	if _, ok := a.opts.Uplink.(DriftAckSource); !ok {
		return nil
	}
	return a.opts.DriftQueue
}

// DriftDropped is the number of drift reports lost since start: only possible without a
// durable queue (or when writing to it failed), when the in-memory hand-off was full or the
// publish failed.
func (a *Agent) DriftDropped() uint64 { return a.driftDropped.Load() }

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

// runDrift publishes drift summaries on wire.LeafDrift and their drift events on
// wire.LeafEvents until ctx ends. With a DriftQueue and an Uplink that delivers drift acks,
// every summary (and the event it carries) is already stored when runDrift sees it; it is
// sent when the infer loop signals it, again every DriftResend until the controller acks it,
// and at once after a reconnection, so summaries and events survive outages and restarts
// like results (the controller stores a resent window once; an event may be seen more than
// once on LeafEvents: docs/monitoring.md). Without, delivery is at most once: a summary that
// cannot be published is dropped and counted.
func (a *Agent) runDrift(ctx context.Context) error {
	q := a.durableDrift()
	var acks <-chan wire.DriftAck
	var check <-chan time.Time
	if q != nil {
		acks = a.opts.Uplink.(DriftAckSource).DriftAcks()
		// Checked every second: unacked summaries go again DriftResend after the last try,
		// and at once when the link comes back.
		t := time.NewTicker(min(time.Second, a.opts.DriftResend))
		defer t.Stop()
		check = t.C
	}
	var lastSend time.Time
	var sent uint64 // highest queued ID sent since the last full resend
	wasUp := true
	var errLogged time.Time
	warn := func(msg string, err error) {
		if err != nil && ctx.Err() == nil && time.Since(errLogged) > time.Minute {
			errLogged = time.Now()
			a.log.Warn(msg, "err", err)
		}
	}
	publish := func(s *wire.DriftSummary) error {
		if err := a.publishJSON(ctx, wire.LeafDrift, s); err != nil {
			return err
		}
		if s.Event != nil {
			return a.publishJSON(ctx, wire.LeafEvents, s.Event)
		}
		return nil
	}
	// sendPending sends the queued summaries, all of them or only those not sent yet.
	sendPending := func(all bool) {
		if !a.opts.Uplink.Connected() {
			return
		}
		if all {
			lastSend = time.Now()
		}
		for _, s := range q.Pending() {
			if !all && s.ID <= sent {
				continue
			}
			if err := publish(s); err != nil {
				warn("send drift summary", err)
				return
			}
			sent = max(sent, s.ID)
		}
	}
	if p := a.driftPutErr.Swap(nil); p != nil {
		warn("store drift summary", *p)
	}
	if q != nil {
		sendPending(true) // what an earlier run left unacked
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
		case <-a.driftKick:
			if p := a.driftPutErr.Swap(nil); p != nil {
				warn("store drift summary", *p)
			}
			sendPending(false)
			continue
		case <-check:
			if p := a.driftPutErr.Swap(nil); p != nil {
				warn("store drift summary", *p)
			}
			up := a.opts.Uplink.Connected()
			if up && (!wasUp || time.Since(lastSend) >= a.opts.DriftResend) {
				sendPending(true)
			}
			wasUp = up
			continue
		case r = <-a.driftReports:
		}
		// Not queued (no queue, or storing failed): sent once.
		err := publish(&r.Summary)
		if err != nil && ctx.Err() == nil {
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
