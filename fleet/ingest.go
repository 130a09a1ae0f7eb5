package fleet

// The ingest loop lives in this package rather than fleet/ingest because it is the Controller:
// it is the single writer of the registry and counters that Devices() reads, and a separate
// package would need either an import cycle or the Controller moved out of the domain package.
// The MQTT client only feeds it inbound messages and publishes its acks.

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// maxPendingAcks bounds the ack publish tokens watched for errors; beyond it the oldest are
// forgotten (an ack is idempotent and the device resends whatever stays unacked).
const maxPendingAcks = 4096

// maxQuietEntries bounds the malformed-log rate limiter's per-device map.
const maxQuietEntries = 10000

// drainTimeout bounds the final store writes after shutdown was requested.
const drainTimeout = 10 * time.Second

// ingestLoop is the state owned by runIngest's goroutine alone.
type ingestLoop struct {
	client    paho.Client
	dirty     map[string]bool // devices whose record must be written
	urgent    bool            // a dirty change should not wait for DeviceFlush
	lastFlush time.Time
	pending   []pendingAck
	quiet     map[string]quietLog // malformed-message log rate limiting, by device
}

type pendingAck struct {
	device string
	tok    paho.Token
}

type quietLog struct {
	last       time.Time
	suppressed int
}

// runIngest takes messages from queue in groups of up to MaxBatch, stores each group's results
// in one transaction, then publishes acks. When ctx ends it waits for the MQTT client to stop
// (stopped), stores whatever is still queued and writes the registry.
func (c *Controller) runIngest(ctx context.Context, client paho.Client, queue <-chan inbound, stopped <-chan struct{}) error {
	l := &ingestLoop{client: client, dirty: map[string]bool{}, quiet: map[string]quietLog{}, lastFlush: time.Now()}
	tick := time.NewTicker(c.opts.DeviceFlush)
	defer tick.Stop()
	msgs := make([]inbound, 0, c.opts.MaxBatch)
	for {
		select {
		case m := <-queue:
			msgs = drain(queue, append(msgs[:0], m), c.opts.MaxBatch)
			if err := c.handle(ctx, l, msgs); err != nil {
				return err
			}
		case <-tick.C:
			c.sweepAcks(l)
			if err := c.flushDevices(ctx, l, false); err != nil {
				return err
			}
		case <-ctx.Done():
			<-stopped
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
			defer cancel()
			// Bounded: the client has stopped, so nothing refills the queue.
			for range cap(queue)/max(1, c.opts.MaxBatch) + 2 {
				msgs = drain(queue, msgs[:0], c.opts.MaxBatch)
				if len(msgs) == 0 {
					break
				}
				if err := c.handle(fctx, l, msgs); err != nil {
					return err
				}
			}
			return c.flushDevices(fctx, l, true)
		}
	}
}

// drain appends queued messages to msgs without blocking, up to max in all.
func drain(queue <-chan inbound, msgs []inbound, max int) []inbound {
	for len(msgs) < max {
		select {
		case m := <-queue:
			msgs = append(msgs, m)
		default:
			return msgs
		}
	}
	return msgs
}

// handle applies one group of messages: registry updates in memory, results in one store
// transaction, then one ack per device that sent results.
func (c *Controller) handle(ctx context.Context, l *ingestLoop, msgs []inbound) error {
	var batches []Batch
	c.mu.Lock()
	for _, m := range msgs {
		c.stats.Messages++
		if b, err := c.applyLocked(l, m); err != nil {
			c.malformedLocked(l, m, err)
		} else if b != nil {
			batches = append(batches, *b)
		}
	}
	c.mu.Unlock()

	if len(batches) > 0 {
		appended, err := c.store.AppendResults(ctx, batches)
		if err != nil {
			return fmt.Errorf("store results: %w", err)
		}
		// Only now, after the commit, may the devices hear about it.
		c.mu.Lock()
		c.stats.Commits++
		// One ack per sequence space, (device, epoch), in order of first appearance.
		type space struct {
			device string
			epoch  uint64
		}
		var order []space
		acks := map[space]uint64{}
		for _, a := range appended {
			c.stats.Batches++
			c.stats.Stored += uint64(a.Stored)
			c.stats.Duplicates += uint64(a.Duplicates)
			c.stats.Dropped += a.Dropped
			if a.Restarted {
				c.log.Info("device started a new sequence space (data directory reset?); keeping the old one",
					"device", a.Device, "epoch", a.Totals.Epoch)
			}
			// The table shows the current epoch; a late batch of an older one changes nothing there.
			if d := c.devices[a.Device]; d != nil && (a.Restarted || d.results.Epoch == a.Totals.Epoch || d.results == (ResultStats{})) {
				d.results = a.Totals
			}
			sp := space{a.Device, a.Totals.Epoch}
			if _, ok := acks[sp]; !ok {
				order = append(order, sp)
			}
			acks[sp] = a.Totals.Contiguous
		}
		c.mu.Unlock()
		for _, sp := range order {
			if seq := acks[sp]; seq > 0 {
				c.publishAck(l, sp.device, sp.epoch, seq)
			}
		}
	}
	c.sweepAcks(l)
	return c.flushDevices(ctx, l, false)
}

// applyLocked decodes m and updates the registry; for a result batch it returns the Batch to
// store. Any error means m is malformed. c.mu must be held.
func (c *Controller) applyLocked(l *ingestLoop, m inbound) (*Batch, error) {
	device, leaf, ok := wire.ParseDeviceTopic(m.topic)
	if !ok {
		return nil, fmt.Errorf("topic %q is not %s/d/{device}/{leaf}", m.topic, wire.Root)
	}
	switch leaf {
	case wire.LeafState:
		if len(m.payload) == 0 {
			return nil, nil // a retained message being cleared
		}
		var s wire.State
		if err := wire.Decode(m.payload, &s); err != nil {
			return nil, err
		}
		if s.Device != device {
			return nil, fmt.Errorf("state for device %q on topic of %q", s.Device, device)
		}
		if s.State != wire.StateOnline && s.State != wire.StateOffline {
			return nil, fmt.Errorf("state %q: want %q or %q", s.State, wire.StateOnline, wire.StateOffline)
		}
		d := c.touchLocked(l, device, m, s.Time)
		if online := s.State == wire.StateOnline; d.dev.Online != online {
			d.dev.Online = online
			l.urgent = true
		}
	case wire.LeafHealth:
		if len(m.payload) == 0 {
			return nil, nil
		}
		var h wire.Health
		if err := wire.Decode(m.payload, &h); err != nil {
			return nil, err
		}
		if h.Device != device {
			return nil, fmt.Errorf("health for device %q on topic of %q", h.Device, device)
		}
		d := c.touchLocked(l, device, m, h.Time)
		if d.dev.Health != nil && m.retained && h.Time.Before(d.dev.Health.Time) {
			return nil, nil // a stale retained snapshot must not replace a newer one
		}
		if d.dev.Model != h.Model {
			l.urgent = true
		}
		d.dev.Health = &h
		d.dev.Model = h.Model
	case wire.LeafResults, wire.LeafResultsZ:
		payload := m.payload
		if leaf == wire.LeafResultsZ {
			var err error
			if payload, err = gunzip(payload); err != nil {
				return nil, err
			}
		}
		var b wire.ResultBatch
		if err := wire.Decode(payload, &b); err != nil {
			return nil, err
		}
		if b.Device != device {
			return nil, fmt.Errorf("results for device %q on topic of %q", b.Device, device)
		}
		for i, r := range b.Results {
			if r.Seq == 0 {
				return nil, fmt.Errorf("result %d of batch has seq 0 (seqs start at 1)", i)
			}
		}
		c.touchLocked(l, device, m, time.Time{})
		return &Batch{Device: device, Results: b.Results, DroppedThrough: b.DroppedThrough, Epoch: b.Epoch}, nil
	default:
		// Not subscribed to; later issues add drift, events, fetch.
	}
	return nil, nil
}

// gunzip decompresses a results.z payload, refusing one that would exceed wire.MaxResultsZ.
func gunzip(payload []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("%s payload: %w", wire.LeafResultsZ, err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, wire.MaxResultsZ+1))
	if err != nil {
		return nil, fmt.Errorf("%s payload: %w", wire.LeafResultsZ, err)
	}
	if len(out) > wire.MaxResultsZ {
		return nil, fmt.Errorf("%s payload: decompresses to more than %d bytes", wire.LeafResultsZ, wire.MaxResultsZ)
	}
	return out, nil
}

// touchLocked returns device's state, registering it if new, and advances LastSeen. A retained
// message may be old, so it counts as seen at its own timestamp (never later than its arrival).
func (c *Controller) touchLocked(l *ingestLoop, device string, m inbound, sent time.Time) *deviceState {
	d := c.devices[device]
	if d == nil {
		d = &deviceState{dev: Device{ID: device, FirstSeen: m.at}}
		c.devices[device] = d
		l.urgent = true
	}
	seen := m.at
	if m.retained {
		seen = sent
		if seen.After(m.at) {
			seen = m.at
		}
	}
	if seen.After(d.dev.LastSeen) {
		d.dev.LastSeen = seen
	}
	l.dirty[device] = true
	return d
}

// malformedLocked counts a rejected message and logs it, at most once per device per
// DefaultMalformedQuiet with the number suppressed meanwhile. c.mu must be held.
func (c *Controller) malformedLocked(l *ingestLoop, m inbound, err error) {
	c.stats.Malformed++
	device, _, ok := wire.ParseDeviceTopic(m.topic)
	if !ok {
		device = "?"
	}
	if d := c.devices[device]; d != nil {
		d.malformed++
	}
	q := l.quiet[device]
	if !q.last.IsZero() && m.at.Sub(q.last) < DefaultMalformedQuiet {
		q.suppressed++
		l.quiet[device] = q
		return
	}
	if len(l.quiet) >= maxQuietEntries {
		clear(l.quiet)
	}
	c.log.Warn("malformed device message dropped", "device", device, "topic", m.topic, "err", err, "suppressed", q.suppressed)
	l.quiet[device] = quietLog{last: m.at}
}

// publishAck hands the ack to the MQTT client without waiting for the broker's PUBACK: that
// PUBACK is read by the goroutine our message callback may be blocking (backpressure), so
// waiting here could deadlock. Failures surface in sweepAcks.
func (c *Controller) publishAck(l *ingestLoop, device string, epoch, seq uint64) {
	payload, err := wire.Encode(&wire.Ack{Seq: seq, Epoch: epoch})
	if err != nil {
		panic(fmt.Sprintf("encode ack: %v", err)) // a struct of two ints always encodes
	}
	tok := l.client.Publish(wire.ControllerTopic(device, wire.LeafAck), 1, false, payload)
	c.mu.Lock()
	c.stats.AcksSent++
	c.mu.Unlock()
	if len(l.pending) >= maxPendingAcks {
		l.pending = l.pending[1:]
	}
	l.pending = append(l.pending, pendingAck{device: device, tok: tok})
}

// sweepAcks counts ack publishes that have failed and forgets completed ones.
func (c *Controller) sweepAcks(l *ingestLoop) {
	kept := l.pending[:0]
	var failed []error
	for _, p := range l.pending {
		select {
		case <-p.tok.Done():
			if err := p.tok.Error(); err != nil {
				failed = append(failed, fmt.Errorf("ack to %s: %w", p.device, err))
			}
		default:
			kept = append(kept, p)
		}
	}
	clear(l.pending[len(kept):])
	l.pending = kept
	if len(failed) > 0 {
		c.mu.Lock()
		c.stats.AckErrors += uint64(len(failed))
		c.mu.Unlock()
		// One line per sweep: while disconnected every ack fails the same way.
		c.log.Warn("ack publish failed; devices will resend", "count", len(failed), "first", failed[0])
	}
}

// flushDevices writes dirty registry records: at once if a change is urgent (new device,
// online/offline, model) or force is set, otherwise at most every DeviceFlush.
func (c *Controller) flushDevices(ctx context.Context, l *ingestLoop, force bool) error {
	if len(l.dirty) == 0 {
		return nil
	}
	now := time.Now()
	if !force && !l.urgent && now.Sub(l.lastFlush) < c.opts.DeviceFlush {
		return nil
	}
	c.mu.Lock()
	devs := make([]Device, 0, len(l.dirty))
	for id := range l.dirty {
		if d := c.devices[id]; d != nil {
			devs = append(devs, d.dev)
		}
	}
	c.mu.Unlock()
	if err := c.store.PutDevices(ctx, devs); err != nil {
		return fmt.Errorf("store registry: %w", err)
	}
	clear(l.dirty)
	l.urgent = false
	l.lastFlush = now
	return nil
}
