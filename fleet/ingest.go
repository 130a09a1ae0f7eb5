package fleet

// The ingest loop lives in this package rather than fleet/ingest because it is the Controller:
// it is the single writer of the registry and counters that Devices() reads, and a separate
// package would need either an import cycle or the Controller moved out of the domain package.
// The MQTT client only feeds it inbound messages and publishes its acks.

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// maxPendingAcks bounds the ack publish tokens watched for errors; beyond it the oldest are
// forgotten (an ack is idempotent and the device resends whatever stays unacked).
const maxPendingAcks = 4096

// maxQuietEntries bounds the malformed-log rate limiter's per-device map.
const maxQuietEntries = 10000

// maxWrittenEntries bounds ingestLoop.written (one small entry per device).
const maxWrittenEntries = 1 << 20

// drainTimeout is the default Options.DrainTimeout: it bounds the final store writes after
// shutdown was requested.
const drainTimeout = 10 * time.Second

// drainResults (half of DrainTimeout) is how long after shutdown was requested the queued
// result and capture batches are still stored. None of them is acked yet, so their devices send them again to
// the next controller; storing them is a saving, not a duty. After it, a backlog (a controller
// stopped while behind) only has its registry messages applied, which would be lost, so that
// the registry is written well within drainTimeout and a stop under backlog loses nothing and
// exits cleanly.
func (c *Controller) drainResults() time.Duration { return c.opts.DrainTimeout / 2 }

// ingestLoop is the state owned by runIngest's goroutine alone.
type ingestLoop struct {
	client    paho.Client
	dirty     map[string]bool // devices whose record must be written
	urgent    bool            // a dirty change should not wait for DeviceFlush
	lastFlush time.Time
	pending   []pendingAck
	quiet     map[string]quietLog // malformed-message log rate limiting, by device
	// health holds the history points not yet written, at most one per device and
	// HealthStep (the latest health received in it); written with the registry.
	health map[healthKey]HealthPoint
	// written is each device's last written point (step and snapshot time), so an older
	// snapshot arriving later never replaces a newer one of the same step.
	written map[string]HealthPoint
}

type healthKey struct {
	device string
	start  time.Time
}

type pendingAck struct {
	device string
	tok    paho.Token
}

type quietLog struct {
	last       time.Time
	suppressed int
}

// queue is the bounded hand-off from paho's callback to the ingest loop, in messages and in
// payload bytes; see Options.QueueSize for the overflow policy. offer is called by paho's one
// reading goroutine only (SetOrderMatters), take by the ingest loop only.
type queue struct {
	ch       chan inbound
	bytes    atomic.Int64 // payload bytes of the messages in ch
	maxBytes int64
}

func newQueue(n int, maxBytes int64) *queue {
	return &queue{ch: make(chan inbound, n), maxBytes: maxBytes}
}

// offer enqueues m without blocking and reports whether it did.
func (q *queue) offer(m inbound) bool {
	n := int64(len(m.payload))
	count, bytes := cap(q.ch), q.maxBytes
	if _, leaf, _ := wire.ParseDeviceTopic(m.topic); leaf == wire.LeafResults || leaf == wire.LeafResultsZ || leaf == wire.LeafCapture {
		count, bytes = max(1, count*3/4), bytes*3/4
	}
	if len(q.ch) >= count || q.bytes.Load()+n > bytes {
		return false
	}
	q.bytes.Add(n)
	select {
	case q.ch <- m:
		return true
	default:
		q.bytes.Add(-n)
		return false
	}
}

// tryTake dequeues a message if one is waiting.
func (q *queue) tryTake() (inbound, bool) {
	select {
	case m := <-q.ch:
		q.took(m)
		return m, true
	default:
		return inbound{}, false
	}
}

func (q *queue) took(m inbound) { q.bytes.Add(-int64(len(m.payload))) }

// decoded is one inbound message decoded, outside the controller's lock.
type decoded struct {
	m       inbound
	device  string
	state   *wire.State
	health  *wire.Health
	batch   *Batch
	drift   *wire.DriftSummary
	capture *CaptureBatch // capture.go
	size    int64         // JSON bytes decoded, for the group bound
	err     error         // the message is malformed
}

// runIngest takes messages from the queue and decodes them into groups of up to MaxBatch
// messages or GroupBytes of JSON, stores each group's results in one transaction, then
// publishes acks. When ctx ends it waits for the MQTT client to stop (stopped), stores whatever
// is still queued and writes the registry.
func (c *Controller) runIngest(ctx context.Context, client paho.Client, q *queue, stopped <-chan struct{}) error {
	l := &ingestLoop{client: client, dirty: map[string]bool{}, quiet: map[string]quietLog{}, lastFlush: time.Now(), health: map[healthKey]HealthPoint{}, written: map[string]HealthPoint{}}
	tick := time.NewTicker(c.opts.DeviceFlush)
	defer tick.Stop()
	group := make([]decoded, 0, c.opts.MaxBatch)
	// Store calls run under sctx, which outlives ctx by drainTimeout: a shutdown must not
	// cancel a transaction in flight (a store that honours contexts, such as PostgreSQL, would
	// fail it and the controller would exit with an error instead of finishing it), yet a
	// store that hangs cannot hold the shutdown forever.
	sctx, cancelStore := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStore()
	var stopAt atomic.Int64 // unix ns when ctx ended
	stopTimer := context.AfterFunc(ctx, func() {
		stopAt.Store(time.Now().UnixNano())
		time.AfterFunc(c.opts.DrainTimeout, cancelStore)
	})
	defer stopTimer()
	for {
		select {
		case m := <-q.ch:
			q.took(m)
			group = c.decodeGroup(q, m, group[:0])
			if err := c.handle(sctx, l, group); err != nil {
				if ctx.Err() != nil && sctx.Err() != nil {
					return c.cutByDrainLimit(ctx, l, err)
				}
				return err
			}
		case <-tick.C:
			c.sweepAcks(l)
			if err := c.flushDevices(sctx, l, false); err != nil {
				return err
			}
		case <-ctx.Done():
			<-stopped
			fctx := sctx
			stop := time.Unix(0, stopAt.Load())
			if stopAt.Load() == 0 { // AfterFunc runs in its own goroutine; it may not have yet
				stop = time.Now()
			}
			var left int
			// Bounded: the client has stopped, so nothing refills the queue.
			for range cap(q.ch) + 1 {
				m, ok := q.tryTake()
				if !ok {
					break
				}
				group = c.decodeGroup(q, m, group[:0])
				if time.Since(stop) >= c.drainResults() {
					left += leaveResults(group)
				}
				if err := c.handle(fctx, l, group); err != nil {
					if sctx.Err() != nil {
						return c.cutByDrainLimit(ctx, l, err)
					}
					return err
				}
			}
			if left > 0 {
				c.log.Info("stopped with a backlog: queued result batches left unstored and unacked; their devices send them again",
					"batches", left)
			}
			return c.flushDevices(fctx, l, true)
		}
	}
}

// cutByDrainLimit ends a shutdown whose store transaction the drain limit cancelled (err):
// a group larger than the limit allows, on a slow store. Nothing of it was acked, so its
// devices send it again and nothing is lost; what remains is the registry, written with a
// fresh, short deadline. Only a failure to write it is an error.
func (c *Controller) cutByDrainLimit(ctx context.Context, l *ingestLoop, err error) error {
	c.log.Warn("shutdown: the drain limit cut a store transaction; its results were not acked and their devices send them again",
		"limit", c.opts.DrainTimeout, "err", err)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.drainResults())
	defer cancel()
	return c.flushDevices(fctx, l, true)
}

// leaveResults takes the result and capture batches out of group (see drainResults) and
// returns how many it took.
func leaveResults(group []decoded) int {
	n := 0
	for i := range group {
		if group[i].batch != nil || group[i].capture != nil {
			group[i].batch, group[i].capture = nil, nil
			n++
		}
	}
	return n
}

// decodeGroup decodes first and then whatever else is queued, until the group holds MaxBatch
// messages or GroupBytes of decoded JSON. It takes no lock: Devices(), Stats() and Connected()
// never wait for decoding.
func (c *Controller) decodeGroup(q *queue, first inbound, group []decoded) []decoded {
	var size int64
	m := first
	for {
		d := decodeInbound(m)
		group = append(group, d)
		size += d.size
		if len(group) >= c.opts.MaxBatch || size >= c.opts.GroupBytes {
			return group
		}
		var ok bool
		if m, ok = q.tryTake(); !ok {
			return group
		}
	}
}

// decodeInbound decodes m; any error means m is malformed.
func decodeInbound(m inbound) decoded {
	d := decoded{m: m}
	device, leaf, ok := wire.ParseDeviceTopic(m.topic)
	if !ok {
		d.err = fmt.Errorf("topic %q is not %s/d/{device}/{leaf}", m.topic, wire.Root)
		return d
	}
	d.device = device
	switch leaf {
	case wire.LeafState, wire.LeafHealth:
		if len(m.payload) == 0 {
			return d // a retained message being cleared
		}
		d.size = int64(len(m.payload))
		if len(m.payload) > wire.MaxStatusBytes {
			d.err = fmt.Errorf("%s payload of %d bytes: more than %d", leaf, len(m.payload), wire.MaxStatusBytes)
			return d
		}
		if leaf == wire.LeafState {
			d.state, d.err = decodeState(device, m.payload)
		} else {
			d.health, d.err = decodeHealth(device, m.payload)
		}
	case wire.LeafResults, wire.LeafResultsZ:
		d.batch, d.size, d.err = decodeResults(device, m.payload, leaf == wire.LeafResultsZ)
		if d.batch != nil {
			d.batch.Received = m.at
		}
	case wire.LeafCapture:
		d.capture, d.size, d.err = decodeCapture(device, m.payload, m.at)
	case wire.LeafDrift:
		d.size = int64(len(m.payload))
		if len(m.payload) > MaxDriftBytes {
			d.err = fmt.Errorf("drift payload of %d bytes: more than %d", len(m.payload), MaxDriftBytes)
			return d
		}
		d.drift, d.err = wire.DecodeDriftSummary(m.payload)
		if d.err == nil && d.drift.Device != device {
			d.drift, d.err = nil, fmt.Errorf("drift summary for device %q on topic of %q", d.drift.Device, device)
		}
	default:
		// Not subscribed to; events and fetch are other services'.
	}
	return d
}

func decodeState(device string, payload []byte) (*wire.State, error) {
	var s wire.State
	if err := wire.Decode(payload, &s); err != nil {
		return nil, err
	}
	if s.Device != device {
		return nil, fmt.Errorf("state for device %q on topic of %q", s.Device, device)
	}
	if s.State != wire.StateOnline && s.State != wire.StateOffline {
		return nil, fmt.Errorf("state %q: want %q or %q", s.State, wire.StateOnline, wire.StateOffline)
	}
	return &s, nil
}

func decodeHealth(device string, payload []byte) (*wire.Health, error) {
	var h wire.Health
	if err := wire.Decode(payload, &h); err != nil {
		return nil, err
	}
	if h.Device != device {
		return nil, fmt.Errorf("health for device %q on topic of %q", h.Device, device)
	}
	return &h, nil
}

// MaxDriftBytes bounds a drift summary payload: MaxDriftFeatures features of MaxDriftBins
// bins and quantiles each fit with room to spare.
const MaxDriftBytes = 1 << 20

// maxClockAhead is how far in the future a device-claimed State time may lie before the
// controller uses the time it saw the message instead.
const maxClockAhead = time.Minute

// handle applies one decoded group: registry updates in memory, results in one store
// transaction, then one ack per sequence space that sent results.
func (c *Controller) handle(ctx context.Context, l *ingestLoop, group []decoded) error {
	var batches []Batch
	var drift []DriftRecord
	var resent []resentAck
	c.mu.Lock()
	for _, d := range group {
		c.stats.Messages++
		if d.err != nil {
			c.malformedLocked(l, d.m, d.err)
			continue
		}
		c.applyLocked(l, d)
		if d.batch != nil {
			if ack, ok := c.resentLocked(d.batch); ok {
				resent = append(resent, resentAck{d.device, ack})
				continue
			}
			batches = append(batches, *d.batch)
		}
		if d.drift != nil {
			drift = append(drift, DriftRecord{Received: d.m.at.UTC(), Summary: *d.drift})
		}
	}
	c.mu.Unlock()
	// What was already committed is acked again at once, ahead of this group's commit.
	for _, r := range resent {
		c.publishAck(l, r.device, r.ack)
	}

	if len(drift) > 0 {
		// Redelivery replaces the record (its identity is the window's), so a summary resent
		// because its ack was lost is stored once.
		if err := c.store.PutDrift(ctx, drift); err != nil {
			return fmt.Errorf("store drift: %w", err)
		}
		c.mu.Lock()
		c.stats.Drift += uint64(len(drift))
		c.mu.Unlock()
		c.ackDrift(l, drift)
		if c.opts.OnDrift != nil {
			c.opts.OnDrift(drift)
		}
	}

	if len(batches) > 0 {
		appended, err := c.store.AppendResults(ctx, batches)
		if err != nil {
			return fmt.Errorf("store results: %w", err)
		}
		// Only now, after the commit, may the devices hear about it.
		committed := time.Now()
		c.mu.Lock()
		c.stats.Commits++
		// One ack per sequence space, (device, epoch), in order of first appearance.
		type space struct {
			device string
			epoch  uint64
		}
		var order []space
		acks := map[space]*wire.Ack{}
		for i, a := range appended {
			c.stats.Batches++
			c.stats.Stored += uint64(a.Stored)
			c.stats.Duplicates += uint64(a.Duplicates)
			c.stats.Dropped += a.Dropped
			c.stats.Rejected += uint64(a.Rejected)
			c.stats.OverQuota += uint64(a.OverQuota)
			if a.Restarted {
				c.log.Info("device started a new sequence space (data directory reset?); keeping the old one",
					"device", a.Device, "epoch", a.Totals.Epoch)
			}
			b := batches[i]
			c.observeLocked(&b, a, committed)
			if a.DropRefused {
				c.stats.DropRefused++
				c.quietWarnLocked(l, a.Device, "dropped_through not believed: beyond the batch's own results or what the device could have produced",
					"dropped_through", b.DroppedThrough, "watermark", a.Totals.Contiguous)
			}
			if a.OverQuota > 0 {
				c.quietWarnLocked(l, a.Device, "device over its stored-result quota: results refused, not acked", "refused", a.OverQuota)
			}
			if len(b.Rejected) > 0 {
				c.quietWarnLocked(l, a.Device, "result rejected", "seq", b.Rejected[0].Seq, "reason", b.Rejected[0].Reason, "in_batch", len(b.Rejected))
			}
			// The table shows the current epoch; a late batch of an older one changes nothing there.
			if d := c.devices[a.Device]; d != nil && (a.Restarted || d.results.Epoch == a.Totals.Epoch || d.results == (ResultStats{})) {
				d.results = a.Totals
			}
			sp := space{a.Device, a.Totals.Epoch}
			ack := acks[sp]
			if ack == nil {
				ack = &wire.Ack{}
				acks[sp] = ack
				order = append(order, sp)
			}
			ack.Seq, ack.Epoch = a.Totals.Contiguous, a.Totals.Epoch
			for _, j := range b.Rejected {
				if j.Seq <= ack.Seq {
					ack.Rejected = append(ack.Rejected, j)
				}
			}
		}
		c.mu.Unlock()
		if c.log.Enabled(ctx, slog.LevelDebug) {
			var stored, dups int
			for _, a := range appended {
				stored, dups = stored+a.Stored, dups+a.Duplicates
			}
			c.log.Debug("results stored", "batches", len(batches), "stored", stored, "duplicates", dups)
		}
		for _, sp := range order {
			if ack := acks[sp]; ack.Seq > 0 {
				c.publishAck(l, sp.device, ack)
			}
		}
	}
	if err := c.handleCaptures(ctx, l, group); err != nil {
		return err
	}
	c.sweepAcks(l)
	return c.flushDevices(ctx, l, false)
}

// resentAck is the ack answering a batch resentLocked recognised.
type resentAck struct {
	device string
	ack    *wire.Ack
}

// resentLocked recognises a batch whose every seq the store has already decided: all at or
// below the device's watermark in the sequence space the controller last committed for it.
// Such a batch is a resend (its device's ack timeout passed while the batch waited in a
// backlog, or the ack was lost), and the answer is the ack alone: storing it again would find
// only duplicates, yet cost a store transaction's reads. Under overload this is most of what
// devices send (each resends its whole unacked window every ack timeout), so taking it out of
// the store's work keeps a controller that fell behind from falling further. The in-memory
// watermark only ever lags the store's (another replica, or a commit not yet seen), so a
// batch taken for a resend never holds a seq the store has not decided. c.mu must be held.
func (c *Controller) resentLocked(b *Batch) (*wire.Ack, bool) {
	d := c.devices[b.Device]
	if d == nil || d.results.Epoch != b.Epoch || d.results.Contiguous == 0 || b.DroppedThrough > d.results.Contiguous {
		return nil, false
	}
	w := d.results.Contiguous
	for _, r := range b.Results {
		if r.Seq > w {
			return nil, false
		}
	}
	for _, j := range b.Rejected {
		if j.Seq > w {
			return nil, false
		}
	}
	c.stats.Resent++
	c.stats.Duplicates += uint64(len(b.Results))
	d.resent += uint64(len(b.Results))
	return &wire.Ack{Seq: w, Epoch: b.Epoch, Rejected: b.Rejected}, true
}

// applyLocked applies a decoded, well-formed message to the registry. c.mu must be held.
func (c *Controller) applyLocked(l *ingestLoop, d decoded) {
	m := d.m
	switch {
	case d.state != nil:
		s := d.state
		// The last-will carries no time (the broker may deliver it long after it was set up),
		// and a device clock far ahead is not believed: both take the time the message was
		// seen.
		at := s.Time
		if at.IsZero() || at.After(m.at.Add(maxClockAhead)) {
			at = m.at
		}
		// LastSeen takes the device's own time: a retained will without one, replayed when the
		// controller subscribes, says nothing about when the device was last heard from.
		dev := c.touchLocked(l, d.device, m, s.Time)
		if online := s.State == wire.StateOnline; dev.dev.Online != online || dev.dev.StateAt.IsZero() {
			dev.dev.Online = online
			dev.dev.StateAt = at
			l.urgent = true
		}
	case d.health != nil:
		h := d.health
		dev := c.touchLocked(l, d.device, m, h.Time)
		c.healthPointLocked(l, d.device, m, h)
		// A stale snapshot must not replace a newer one, retained or not: after a restart a
		// resumed session's backlog (older, not retained) arrives after the retained latest.
		// A kept snapshot claiming a time far in the future is not newer than anything.
		if old := dev.dev.Health; old != nil && h.Time.Before(old.Time) && !old.Time.After(m.at.Add(maxClockAhead)) {
			return
		}
		if dev.dev.Model != h.Model {
			l.urgent = true
		}
		dev.dev.Health = h
		dev.dev.Model = h.Model
	case d.batch != nil:
		c.touchLocked(l, d.device, m, time.Time{})
	}
}

// healthPointLocked records h for the health history: its point is the HealthStep in which
// the device took it, never later than the controller received it (a snapshot from a backlog
// or a retained one counts when it was made). Within a step the newest snapshot wins.
func (c *Controller) healthPointLocked(l *ingestLoop, device string, m inbound, h *wire.Health) {
	at := h.Time
	if at.IsZero() || at.After(m.at) {
		at = m.at
	}
	k := healthKey{device, at.UTC().Truncate(HealthStep)}
	if old, ok := l.health[k]; ok && old.Health.Time.After(h.Time) {
		return
	}
	if w, ok := l.written[device]; ok && w.Start.Equal(k.start) && w.Health.Time.After(h.Time) {
		return
	}
	l.health[k] = HealthPoint{Device: device, Start: k.start, Health: *h}
}

// touchLocked returns device's state, registering it if new, and advances LastSeen. A retained
// message may be old, so it counts as seen at its own timestamp (never later than its arrival).
func (c *Controller) touchLocked(l *ingestLoop, device string, m inbound, sent time.Time) *deviceState {
	d := c.devices[device]
	if d == nil {
		d = &deviceState{dev: Device{ID: device, FirstSeen: m.at}}
		c.devices[device] = d
		l.urgent = true
	} else if d.dev.FirstSeen.IsZero() {
		d.dev.FirstSeen = m.at // registered by Register, now heard from
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

// malformedLocked counts a rejected message and logs it (see quietWarnLocked). c.mu must be
// held.
func (c *Controller) malformedLocked(l *ingestLoop, m inbound, err error) {
	c.stats.Malformed++
	device, _, ok := wire.ParseDeviceTopic(m.topic)
	if !ok {
		device = "?"
	}
	if d := c.devices[device]; d != nil {
		d.malformed++
	}
	c.quietWarnLocked(l, device, "malformed device message dropped", "topic", m.topic, "err", err)
}

// quietWarnLocked logs a warning about device at most once per DefaultMalformedQuiet, with the
// number of warnings suppressed meanwhile. c.mu must be held.
func (c *Controller) quietWarnLocked(l *ingestLoop, device, msg string, args ...any) {
	now := time.Now()
	q := l.quiet[device]
	if !q.last.IsZero() && now.Sub(q.last) < DefaultMalformedQuiet {
		q.suppressed++
		l.quiet[device] = q
		return
	}
	if len(l.quiet) >= maxQuietEntries {
		clear(l.quiet)
	}
	c.log.Warn(msg, append([]any{"device", device}, append(args, "suppressed", q.suppressed)...)...)
	l.quiet[device] = quietLog{last: now}
}

// publishAck hands the ack to the MQTT client without waiting for the broker's PUBACK: that
// PUBACK is read by paho's goroutine, and nothing here needs it. Failures surface in sweepAcks.
func (c *Controller) publishAck(l *ingestLoop, device string, ack *wire.Ack) {
	payload, err := wire.Encode(ack)
	if err != nil {
		panic(fmt.Sprintf("encode ack: %v", err)) // ints and strings always encode
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

// ackDrift tells each device which of its queued summaries (those with an ID) are now stored,
// after the commit: the agent's queue deletes them only then.
func (c *Controller) ackDrift(l *ingestLoop, recs []DriftRecord) {
	var order []string
	ids := map[string][]uint64{}
	for i := range recs {
		s := &recs[i].Summary
		if s.ID == 0 {
			continue // an agent without a queue sends no ID and expects no ack
		}
		if _, ok := ids[s.Device]; !ok {
			order = append(order, s.Device)
		}
		if !slices.Contains(ids[s.Device], s.ID) { // a summary delivered twice in one group
			ids[s.Device] = append(ids[s.Device], s.ID)
		}
	}
	for _, dev := range order {
		for all := ids[dev]; len(all) > 0; {
			n := min(len(all), wire.MaxDriftAckIDs)
			payload, err := wire.Encode(&wire.DriftAck{IDs: all[:n]})
			if err != nil {
				panic(fmt.Sprintf("encode drift ack: %v", err)) // integers always encode
			}
			all = all[n:]
			tok := l.client.Publish(wire.ControllerTopic(dev, wire.LeafDriftAck), 1, false, payload)
			if len(l.pending) >= maxPendingAcks {
				l.pending = l.pending[1:]
			}
			l.pending = append(l.pending, pendingAck{device: dev, tok: tok})
		}
	}
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
	if len(l.dirty) == 0 && len(l.health) == 0 {
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
	if len(l.health) > 0 {
		points := make([]HealthPoint, 0, len(l.health))
		for _, p := range l.health {
			points = append(points, p)
		}
		// A point already stored for the same step is replaced only by a newer snapshot
		// written later in the same step, which is what the map holds.
		if err := c.store.PutHealth(ctx, points); err != nil {
			return fmt.Errorf("store health history: %w", err)
		}
		if len(l.written) >= maxWrittenEntries {
			clear(l.written)
		}
		for _, p := range points {
			if w, ok := l.written[p.Device]; !ok || !p.Start.Before(w.Start) {
				l.written[p.Device] = HealthPoint{Device: p.Device, Start: p.Start, Health: wire.Health{Time: p.Health.Time}}
			}
		}
		clear(l.health)
	}
	clear(l.dirty)
	l.urgent = false
	l.lastFlush = now
	return nil
}

// observeLocked records one committed batch in the figures /metrics reads: receive-to-commit
// latency and the newest stored result time. c.mu must be held.
func (c *Controller) observeLocked(b *Batch, a Appended, committed time.Time) {
	if !b.Received.IsZero() {
		lat := committed.Sub(b.Received).Seconds()
		i := len(IngestLatencyBuckets)
		for j, edge := range IngestLatencyBuckets {
			if lat <= edge {
				i = j
				break
			}
		}
		c.stats.IngestLatency[i]++
		c.stats.IngestLatencySum += max(lat, 0)
	}
	if a.Stored == 0 {
		return
	}
	for _, r := range b.Results {
		if r.Time.After(c.stats.NewestResult) && !r.Time.After(committed.Add(maxClockAhead)) {
			c.stats.NewestResult = r.Time
		}
	}
}
