package agent

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// The upload loop is a go-back-N sender over the Buffer. It publishes batches of the oldest
// results it has not sent yet, keeps up to Window of them awaiting the controller's
// cumulative ack, and on any doubt (a reconnect, a failed publish, an ack overdue) goes back
// to the last acked seq and sends again: the controller de-duplicates, so resending is always
// safe and never needs bookkeeping per batch.
//
// Publishes wait for their PUBACK one after the other. That costs one round trip per batch,
// not per result: batches are large, so the window of application acks (a controller commit
// each) is what keeps the link busy. Health is published by its own loop; it waits behind at
// most the one results message being written, never behind the backlog.

// ackStallAfter is how many ack timeouts in a row, with publishes going through, make the upload
// loop say that acks have stopped: one lost ack is normal, three in a row mean the controller
// is down or the acks cannot reach this device (a refused subscription, an ACL).
const ackStallAfter = 3

// ackCommitGap is the shortest time between two commits that delete acked results. At a few
// results a second each ack would otherwise cost its own commit, as many as the results'
// own: on an SD card that is most of the agent's writes. A deletion that waits loses nothing
// (after a crash the results it would have deleted are resent, and the controller ignores
// them); the acked results just stay in the file a little longer.
const ackCommitGap = time.Second

// maxRedialGap caps the interval between redials (Redialer) while acks stay away. The first
// comes when the stall is declared, each later one twice as long after the previous, from
// ackStallAfter ack timeouts: against a controller that is down for hours that is a reconnect
// every half hour, which costs the broker little even for a large fleet.
const maxRedialGap = 30 * time.Minute

// epochRenewer is implemented by a Buffer that can open a new sequence space
// (boltbuf.Buffer.RenewEpoch).
type epochRenewer interface {
	RenewEpoch() (uint64, error)
}

// epochSetter is implemented by an Uplink that filters acks by epoch (mqttlink.Link.SetEpoch).
type epochSetter interface {
	SetEpoch(epoch uint64)
}

// pendingAck is an ack waiting for the acker, tagged with the epoch it belongs to.
type pendingAck struct{ epoch, seq uint64 }

// inflight is one published batch awaiting the controller's ack.
type inflight struct {
	last uint64    // highest seq in the batch
	at   time.Time // when its PUBACK came
}

// runUpload sends buffered results oldest first and deletes them as the controller acks. Once
// ctx ends it drains: it goes on until the pipeline has committed its last result and the
// controller has acked everything, the link drops, or DrainTimeout passes.
func (a *Agent) runUpload(ctx context.Context, committed <-chan struct{}, pipelineDone <-chan struct{}) error {
	const poll = 250 * time.Millisecond // link state has no notification; look this often
	var (
		acked        = a.opts.Buffer.Stats().AckedSeq
		sent         = acked // highest seq published since the last go-back
		win          []inflight
		failures     int       // consecutive failed publishes
		retryAt      time.Time // after a failed publish, wait until then
		partialSince time.Time // when a batch smaller than BatchMax first waited
		connected    bool
		errLogged    time.Time
		stalls       int       // ack timeouts in a row without an ack
		stallLogged  time.Time // last "acks stopped" warning
		redialAt     time.Time // while stalled: the next redial is due then
		redialGap    time.Duration
		beyondLogged time.Time // last "ack beyond last seq" warning
		quarantined  = a.opts.Buffer.Stats().Quarantined
		rej          rejections
		stop         = ctx.Done()
		drainBy      time.Time // set once ctx has ended
		pubCtx       = ctx     // publishes outlive ctx while draining
	)
	lim := newLimiter(a.opts.MaxUploadRate, a.opts.BatchMax)
	enc := &wire.Gzipper{}
	wake := time.NewTimer(poll)
	defer wake.Stop()
	goBack := func() { win, sent = win[:0], acked }
	acks := a.opts.Uplink.Acks()

	// Deleting acked results is a commit with its fsyncs; it runs beside the sending, on the
	// acker goroutine, so the link stays busy meanwhile. toDelete holds at most one pending
	// seq: a newer ack replaces it, since acks are cumulative. The acker is waited for before
	// runUpload returns, so a clean stop leaves the buffer up to date. ackerMu is held by the
	// acker around each Ack and by an epoch renewal, so an ack of the old epoch can never
	// delete results renumbered into the new one.
	toDelete := make(chan pendingAck, 1)
	ackerDone, ackerStop := make(chan struct{}), make(chan struct{})
	var ackerMu sync.Mutex
	go func() {
		defer close(ackerDone)
		var last time.Time // the last deletion's commit
		gap := time.NewTimer(time.Hour)
		gap.Stop()
		defer gap.Stop()
		for p := range toDelete {
			// At most one deletion commit per ackCommitGap: each is a bbolt commit with its
			// fsyncs, and acks coalesce, so waiting costs nothing but how soon acked results
			// leave the file.
			if wait := ackCommitGap - time.Since(last); wait > 0 {
				gap.Reset(wait)
				select {
				case <-gap.C:
				case <-ackerStop:
				}
				select { // a newer ack may have come meanwhile
				case q, ok := <-toDelete:
					if ok {
						p = q
					}
				default:
				}
			}
			last = time.Now()
			ackerMu.Lock()
			var err error
			if a.opts.Buffer.Stats().Epoch == p.epoch {
				err = a.opts.Buffer.Ack(p.seq)
			}
			ackerMu.Unlock()
			if err != nil {
				a.setLastErr(fmt.Errorf("ack %d: %w", p.seq, err))
				a.log.Warn("delete acked results", "seq", p.seq, "err", err)
			}
		}
	}()
	// renew opens a new epoch after the controller acked seq beyond the last assigned one.
	renew := func(seq, last uint64) {
		r, ok := a.opts.Buffer.(epochRenewer)
		if !ok {
			a.setLastErr(fmt.Errorf("controller acked seq %d beyond the last assigned %d", seq, last))
			if time.Since(beyondLogged) > time.Minute {
				beyondLogged = time.Now()
				a.log.Warn("controller acked a seq beyond the last assigned; this buffer cannot open a new epoch", "seq", seq, "last_seq", last)
			}
			return
		}
		select { // a pending ack belongs to the old epoch
		case <-toDelete:
		default:
		}
		ackerMu.Lock()
		epoch, err := r.RenewEpoch()
		ackerMu.Unlock()
		if err != nil {
			a.setLastErr(err)
			if time.Since(beyondLogged) > time.Minute {
				beyondLogged = time.Now()
				a.log.Error("open a new epoch", "err", err)
			}
			return
		}
		if s, ok := a.opts.Uplink.(epochSetter); ok {
			s.SetEpoch(epoch)
		}
		st := a.opts.Buffer.Stats()
		acked = st.AckedSeq
		goBack()
		rej = rejections{} // seqs of the old epoch name other results now
		a.setLastErr(fmt.Errorf("controller acked seq %d beyond the last assigned %d: the buffer went back to an older state; resending its %d results in new epoch %d", seq, last, st.Len, epoch))
		a.log.Warn("controller acked a seq this buffer never assigned (restored or rolled-back storage); opened a new epoch so nothing is lost",
			"seq", seq, "last_seq", last, "epoch", epoch, "resending", st.Len)
	}
	defer func() {
		close(ackerStop)
		close(toDelete)
		<-ackerDone
	}()

	for {
		now := time.Now()
		if !drainBy.IsZero() {
			st := a.opts.Buffer.Stats()
			drained := pipelineDone == nil && (st.Len == 0 || acked >= st.LastSeq)
			if drained || !a.opts.Uplink.Connected() || now.After(drainBy) {
				return nil
			}
		}
		up := a.opts.Uplink.Connected()
		if up && !connected {
			goBack() // acks for the old connection may never come
		}
		connected = up
		if len(win) > 0 && now.Sub(win[0].at) > a.opts.AckTimeout {
			a.log.Debug("ack overdue; resending", "from_seq", acked+1, "in_flight", len(win))
			if stalls++; stalls >= ackStallAfter {
				// Publishes go through (each window entry had its PUBACK) but nothing comes
				// back: say so instead of resending in silence.
				err := fmt.Errorf("no ack from the controller for %v while publishes succeed: is the controller running, and may this device read %s?",
					(time.Duration(stalls) * a.opts.AckTimeout).Round(time.Second), wire.ControllerTopic(a.opts.DeviceID, wire.LeafAck))
				a.setLastErr(err)
				if time.Since(stallLogged) > 5*time.Minute {
					stallLogged = time.Now()
					a.log.Warn("acks stopped; resending", "err", err, "from_seq", acked+1)
				}
				if rd, ok := a.opts.Uplink.(Redialer); ok && drainBy.IsZero() && !now.Before(redialAt) && rd.Redial(err.Error()) {
					a.redials.Add(1)
					redialGap = min(max(2*redialGap, ackStallAfter*a.opts.AckTimeout), maxRedialGap)
					redialAt = now.Add(redialGap)
					a.log.Warn("acks stopped; made a new connection to the broker", "redials", a.redials.Load(), "next_after", redialGap)
				}
			}
			goBack()
		}
		if q := a.opts.Buffer.Stats().Quarantined; q != quarantined {
			a.log.Warn("damaged records found in the buffer; moved to its quarantine and announced as dropped", "quarantined", q-quarantined, "total", q)
			a.setLastErr(fmt.Errorf("%d damaged buffer records quarantined", q-quarantined))
			quarantined = q
		}
		next := now.Add(poll)
		for range a.opts.Window { // at most one window of publishes per wake-up
			if !connected || now.Before(retryAt) || len(win) >= a.opts.Window {
				break
			}
			st := a.opts.Buffer.Stats()
			if st.LastSeq <= sent {
				partialSince = time.Time{}
				break
			}
			unsent := min(st.LastSeq-sent, uint64(a.opts.BatchMax))
			if unsent < uint64(a.opts.BatchMax) && drainBy.IsZero() {
				// Time bound of a batch: wait a little for a fuller one, then send what there is.
				if partialSince.IsZero() {
					partialSince = now
				}
				if due := partialSince.Add(a.opts.BatchDelay); now.Before(due) {
					next = earliest(next, due)
					break
				}
			}
			n, wait := lim.take(now, int(unsent))
			if n == 0 {
				next = earliest(next, now.Add(wait))
				break
			}
			last, used, err := a.sendBatch(pubCtx, enc, sent, n, st)
			lim.refund(n - used)
			if err != nil {
				if pubCtx.Err() != nil {
					return nil
				}
				goBack()
				failures++
				retryAt = time.Now().Add(min(250*time.Millisecond<<min(failures-1, 5), 5*time.Second))
				next = earliest(next, retryAt)
				a.setLastErr(err)
				if time.Since(errLogged) > 30*time.Second {
					errLogged = time.Now()
					a.log.Warn("upload", "err", err)
				}
				break
			}
			failures = 0
			if used == 0 {
				break
			}
			now = time.Now()
			sent, partialSince = last, time.Time{}
			win = append(win, inflight{last: last, at: now})
		}
		if len(win) > 0 {
			next = earliest(next, win[0].at.Add(a.opts.AckTimeout))
		}
		wake.Reset(max(time.Until(next), time.Millisecond))
		select {
		case <-stop:
			stop = nil
			drainBy = time.Now().Add(a.opts.DrainTimeout)
			var cancel context.CancelFunc
			pubCtx, cancel = context.WithDeadline(context.WithoutCancel(ctx), drainBy)
			defer cancel()
		case <-pipelineDone:
			pipelineDone = nil
		case ack := <-acks:
			st := a.opts.Buffer.Stats()
			if ack.Epoch != st.Epoch {
				continue // sent before this buffer opened its current epoch
			}
			if stalls >= ackStallAfter {
				a.log.Info("acks flowing again")
			}
			stalls, redialAt, redialGap = 0, time.Time{}, 0
			seq := ack.Seq
			if seq > st.LastSeq {
				renew(seq, st.LastSeq)
				continue
			}
			a.noteRejected(rej.fresh(ack))
			if seq <= acked {
				continue
			}
			p := pendingAck{epoch: st.Epoch, seq: seq}
			select {
			case toDelete <- p:
			default:
				select { // replace the pending seq; only this loop sends, so there is room after
				case <-toDelete:
				default:
				}
				toDelete <- p
			}
			acked, sent = seq, max(sent, seq)
			i := 0
			for i < len(win) && win[i].last <= seq {
				i++
			}
			win = append(win[:0], win[i:]...)
		case <-committed:
		case <-wake.C:
		}
	}
}

// rejections remembers the last rejectionsKept rejected seqs, so that a result rejected in two
// acks (it was sent twice before the first ack came) is counted once. Acks may arrive out of
// order, so "at or below the acked seq" cannot tell a repeat from a late first report.
type rejections struct {
	seen map[uint64]bool
	ring [rejectionsKept]uint64
	next int
}

const rejectionsKept = 4096

// fresh returns the rejections of ack not seen before, and remembers them.
func (r *rejections) fresh(ack wire.Ack) []wire.Rejected {
	var out []wire.Rejected
	for _, x := range ack.Rejected {
		if x.Seq == 0 || x.Seq > ack.Seq || r.seen[x.Seq] {
			continue // not covered by this ack, or counted already
		}
		if r.seen == nil {
			r.seen = make(map[uint64]bool, rejectionsKept)
		}
		if old := r.ring[r.next]; old != 0 {
			delete(r.seen, old)
		}
		r.ring[r.next], r.next = x.Seq, (r.next+1)%rejectionsKept
		r.seen[x.Seq] = true
		out = append(out, x)
	}
	return out
}

// noteRejected logs and counts the results the controller refused. They are covered by the
// ack like stored ones, so they are deleted with it; the warning is rate-limited, the count is
// not.
func (a *Agent) noteRejected(rs []wire.Rejected) {
	if len(rs) == 0 {
		return
	}
	a.rejected.Add(uint64(len(rs)))
	a.setLastErr(fmt.Errorf("controller rejected result %d: %s", rs[0].Seq, rs[0].Reason))
	a.mu.Lock()
	due := time.Since(a.rejectLogged) > time.Minute
	if due {
		a.rejectLogged = time.Now()
	}
	a.mu.Unlock()
	if !due {
		return
	}
	for i, r := range rs {
		if i == 10 {
			a.log.Warn("controller rejected results", "more", len(rs)-i)
			break
		}
		a.log.Warn("controller rejected result", "seq", r.Seq, "reason", r.Reason)
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// sendBatch publishes up to n of the results after seq after, within BatchBytes, and returns
// the last seq sent and how many results went (0, nil if there was nothing to send).
func (a *Agent) sendBatch(ctx context.Context, enc *wire.Gzipper, after uint64, n int, st BufferStats) (last uint64, used int, err error) {
	if rb, ok := a.opts.Buffer.(rawBuffer); ok {
		return a.sendRaw(ctx, enc, rb, after, n, st)
	}
	rs, err := a.opts.Buffer.After(after, n)
	if err != nil {
		return 0, 0, fmt.Errorf("read buffer: %w", err)
	}
	if len(rs) == 0 {
		return 0, 0, nil
	}
	msg := &wire.ResultBatch{Device: a.opts.DeviceID, Results: rs, DroppedThrough: st.DroppedThrough, Epoch: st.Epoch}
	payload, err := wire.Encode(msg)
	// Size bound: shrink in proportion until the batch fits; each step at least halves the
	// excess, and one result always goes.
	for i := 0; err == nil && len(payload) > a.opts.BatchBytes && len(msg.Results) > 1 && i < 8; i++ {
		keep := max(1, min(len(msg.Results)-1, len(msg.Results)*a.opts.BatchBytes/len(payload)*9/10))
		msg.Results = msg.Results[:keep]
		payload, err = wire.Encode(msg)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("encode batch: %w", err)
	}
	rs = msg.Results
	if err := a.publishBatch(ctx, enc, payload, len(rs), rs[0].Seq); err != nil {
		return 0, 0, err
	}
	return rs[len(rs)-1].Seq, len(rs), nil
}

// rawBuffer is implemented by a Buffer that can hand out results already encoded
// (boltbuf.Buffer): the upload path then neither decodes nor re-encodes them, which is most
// of its CPU time on a small board.
type rawBuffer interface {
	AfterRaw(after uint64, n, maxBytes int) (raws [][]byte, seqs []uint64, err error)
}

// sendRaw is sendBatch over a rawBuffer: it writes the wire.ResultBatch JSON around the
// stored results itself.
func (a *Agent) sendRaw(ctx context.Context, enc *wire.Gzipper, rb rawBuffer, after uint64, n int, st BufferStats) (uint64, int, error) {
	env, err := wire.Encode(&wire.ResultBatch{Device: a.opts.DeviceID, Results: []wire.Result{}, DroppedThrough: st.DroppedThrough, Epoch: st.Epoch})
	if err != nil {
		return 0, 0, fmt.Errorf("encode batch: %w", err)
	}
	// The envelope holds "results":[] once (the device id cannot contain quotes); the stored
	// results go between its brackets.
	mark := []byte(`"results":[]`)
	i := bytes.Index(env, mark)
	if i < 0 {
		return 0, 0, fmt.Errorf("encode batch: no results array in %q", env)
	}
	head, tail := env[:i+len(mark)-1], env[i+len(mark)-1:]
	raws, seqs, err := rb.AfterRaw(after, n, a.opts.BatchBytes-len(env))
	if err != nil {
		return 0, 0, fmt.Errorf("read buffer: %w", err)
	}
	if len(raws) == 0 {
		return 0, 0, nil
	}
	size := len(env)
	for _, r := range raws {
		size += len(r) + 1
	}
	payload := make([]byte, 0, size)
	payload = append(payload, head...)
	for i, r := range raws {
		if i > 0 {
			payload = append(payload, ',')
		}
		payload = append(payload, r...)
	}
	payload = append(payload, tail...)
	if err := a.publishBatch(ctx, enc, payload, len(raws), seqs[0]); err != nil {
		return 0, 0, err
	}
	return seqs[len(seqs)-1], len(raws), nil
}

// publishBatch compresses payload if it is large enough and publishes it.
func (a *Agent) publishBatch(ctx context.Context, enc *wire.Gzipper, payload []byte, n int, first uint64) error {
	leaf := wire.LeafResults
	if a.opts.CompressMin >= 0 && len(payload) >= a.opts.CompressMin {
		var err error
		if payload, err = enc.Compress(payload); err != nil {
			return fmt.Errorf("compress batch: %w", err)
		}
		leaf = wire.LeafResultsZ
	}
	pctx, cancel := context.WithTimeout(ctx, a.opts.PublishTimeout)
	defer cancel()
	if err := a.opts.Uplink.Publish(pctx, leaf, payload, false); err != nil {
		return fmt.Errorf("publish %d results from seq %d: %w", n, first, err)
	}
	return nil
}

// limiter is a token bucket over results: rate per second, holding at most one second's
// worth (and at least one result, at most one batch), so a backlog goes out steadily.
type limiter struct {
	rate, burst, tokens float64
	last                time.Time
}

// newLimiter returns nil, which never limits, for rate 0.
func newLimiter(rate float64, batchMax int) *limiter {
	if rate <= 0 {
		return nil
	}
	burst := min(max(rate, 1), float64(batchMax))
	return &limiter{rate: rate, burst: burst, tokens: burst}
}

// take grants up to want results now, all or nothing up to the burst; when it grants none it
// says how long until it would.
func (l *limiter) take(now time.Time, want int) (int, time.Duration) {
	if l == nil {
		return want, 0
	}
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+l.rate*now.Sub(l.last).Seconds())
	}
	l.last = now
	need := min(float64(want), l.burst)
	if l.tokens >= need {
		l.tokens -= need
		return int(need), 0
	}
	return 0, time.Duration((need - l.tokens) / l.rate * float64(time.Second))
}

// refund returns n granted but unused results.
func (l *limiter) refund(n int) {
	if l != nil && n > 0 {
		l.tokens = min(l.burst, l.tokens+float64(n))
	}
}
