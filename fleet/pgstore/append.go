package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// AppendResults implements fleet.Store; see the package comment for how it stays correct with
// several writers.
//
// One call costs a fixed number of round trips however many batches it carries: lock the
// devices, read their sequence spaces, probe which of the batches' seqs are already decided,
// read the output buckets the new results fall in, then write everything in one pipelined
// batch. Batches are applied in order in memory. Only the rare cases read the database in
// between, after writing what is pending: a device at its quota (eviction), a DroppedThrough
// that moves the watermark (counting what is present in the range), and a watermark with
// stored seqs above it that this call did not see (advancing over them).
func (s *Store) AppendResults(ctx context.Context, batches []fleet.Batch) ([]fleet.Appended, error) {
	if err := fleet.ValidateBatches(batches); err != nil {
		return nil, err
	}
	if len(batches) == 0 {
		return []fleet.Appended{}, nil
	}
	var out []fleet.Appended
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		a := &appender{s: s, tx: tx}
		var err error
		out, err = a.run(ctx, batches) // a retried attempt starts over with a new appender
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("append results: %w", err)
	}
	return out, nil
}

// spaceID names a sequence space.
type spaceID struct {
	device string
	epoch  uint64
}

// seqID names one seq of a space.
type seqID struct {
	spaceID
	seq uint64
}

// space is a sequence space's row as this call sees it.
type space struct {
	st     fleet.ResultStats
	known  bool   // the row exists (in the database or from an earlier batch of this call)
	maxSeq uint64 // at least the highest seq stored or rejected in it
	dirty  bool
}

// pendingResult and pendingRejected are rows this call will insert.
type pendingResult struct {
	spaceID
	at time.Time
	r  wire.Result
}

type pendingRejected struct {
	spaceID
	j wire.Rejected
}

// appender is one attempt of one AppendResults call.
type appender struct {
	s        *Store
	tx       pgx.Tx
	held     map[string]*heldDevice
	spaces   map[spaceID]*space
	present  map[seqID]bool // seqs known stored or rejected (probed, or added by this call)
	results  []pendingResult
	rejected []pendingRejected
	newByDev map[string][]wire.Result // newly stored results, for the output buckets
}

func (a *appender) run(ctx context.Context, batches []fleet.Batch) ([]fleet.Appended, error) {
	var devices []string
	for _, b := range batches {
		devices = append(devices, b.Device)
	}
	slices.Sort(devices)
	devices = slices.Compact(devices)
	var err error
	if a.held, err = lockDevices(ctx, a.tx, devices); err != nil {
		return nil, err
	}
	// The spaces the batches name, and each device's current one (to tell a restart).
	var ids []spaceID
	for _, b := range batches {
		ids = append(ids, spaceID{b.Device, b.Epoch})
	}
	for _, d := range devices {
		ids = append(ids, spaceID{d, a.held[d].epoch})
	}
	if a.spaces, err = loadSpaces(ctx, a.tx, ids); err != nil {
		return nil, err
	}
	if err := a.probe(ctx, batches); err != nil {
		return nil, err
	}
	a.newByDev = map[string][]wire.Result{}
	out := make([]fleet.Appended, 0, len(batches))
	for _, b := range batches {
		ap, err := a.apply(ctx, b)
		if err != nil {
			return nil, err
		}
		out = append(out, ap)
	}
	if err := a.flush(ctx, true); err != nil {
		return nil, err
	}
	return out, nil
}

// loadSpaces reads the given spaces' rows; a space without a row is returned unknown.
func loadSpaces(ctx context.Context, tx pgx.Tx, ids []spaceID) (map[spaceID]*space, error) {
	devs := make([]string, len(ids))
	epochs := make([]int64, len(ids))
	out := make(map[spaceID]*space, len(ids))
	for i, id := range ids {
		devs[i], epochs[i] = id.device, int64(id.epoch)
		out[id] = &space{st: fleet.ResultStats{Epoch: id.epoch}}
	}
	rows, err := tx.Query(ctx, `SELECT s.device, s.epoch, s.stored, s.duplicates, s.dropped, s.contiguous, s.rejected, s.advanced_ns, s.max_seq
		FROM spaces s JOIN (SELECT DISTINCT d, e FROM unnest($1::text[], $2::bigint[]) AS k(d, e)) k ON s.device = k.d AND s.epoch = k.e`, devs, epochs)
	if err != nil {
		return nil, fmt.Errorf("read watermarks: %w", err)
	}
	var dev string
	var epoch, stored, dups, dropped, contiguous, rejected, adv, maxSeq int64
	if _, err := pgx.ForEachRow(rows, []any{&dev, &epoch, &stored, &dups, &dropped, &contiguous, &rejected, &adv, &maxSeq}, func() error {
		sp := out[spaceID{dev, uint64(epoch)}]
		sp.known = true
		sp.st = fleet.ResultStats{Stored: uint64(stored), Duplicates: uint64(dups), Dropped: uint64(dropped),
			Contiguous: seqOf(contiguous), Rejected: uint64(rejected), Advanced: fromNanos(adv), Epoch: uint64(epoch)}
		sp.maxSeq = seqOf(maxSeq)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read watermarks: %w", err)
	}
	return out, nil
}

// probe finds which of the batches' seqs above their space's watermark are already stored or
// rejected.
func (a *appender) probe(ctx context.Context, batches []fleet.Batch) error {
	a.present = map[seqID]bool{}
	var devs []string
	var epochs, seqs []int64
	add := func(b *fleet.Batch, seq uint64) {
		sp := a.spaces[spaceID{b.Device, b.Epoch}]
		if seq > sp.st.Contiguous && sp.known && seq <= sp.maxSeq {
			devs, epochs, seqs = append(devs, b.Device), append(epochs, int64(b.Epoch)), append(seqs, seqKey(seq))
		}
	}
	for i := range batches {
		b := &batches[i]
		for _, r := range b.Results {
			add(b, r.Seq)
		}
		for _, j := range b.Rejected {
			add(b, j.Seq)
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	rows, err := a.tx.Query(ctx, `WITH k AS (SELECT DISTINCT d, e, s FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(d, e, s))
		SELECT r.device, r.epoch, r.seq FROM results r JOIN k ON r.device = k.d AND r.epoch = k.e AND r.seq = k.s
		UNION ALL
		SELECT j.device, j.epoch, j.seq FROM rejected j JOIN k ON j.device = k.d AND j.epoch = k.e AND j.seq = k.s`, devs, epochs, seqs)
	if err != nil {
		return fmt.Errorf("probe seqs: %w", err)
	}
	var dev string
	var epoch, k int64
	_, err = pgx.ForEachRow(rows, []any{&dev, &epoch, &k}, func() error {
		a.present[seqID{spaceID{dev, uint64(epoch)}, seqOf(k)}] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("probe seqs: %w", err)
	}
	return nil
}

// apply applies one batch in memory (and, in the rare cases, through the database).
func (a *appender) apply(ctx context.Context, b fleet.Batch) (fleet.Appended, error) {
	ap := fleet.Appended{Device: b.Device}
	at := b.Received
	if at.IsZero() {
		at = time.Now()
	}
	h := a.held[b.Device]
	id := spaceID{b.Device, b.Epoch}
	sp := a.spaces[id]
	known := sp.known
	if !known {
		// A sequence space not seen before: the device's first, or a new one after its data
		// directory was wiped. It becomes current; the old spaces and their results stay.
		cur := a.spaces[spaceID{b.Device, h.epoch}]
		ap.Restarted = cur != nil && cur.known && h.epoch != b.Epoch
		h.epoch = b.Epoch
	}
	st := &sp.st
	contiguous0 := st.Contiguous
	decided := func(seq uint64) bool { return seq <= st.Contiguous || a.present[seqID{id, seq}] }
	room := func() (bool, error) {
		if h.kept < a.s.quota {
			return true, nil
		}
		// Eviction reads the watermarks and rows from the database: write what is pending.
		if err := a.flush(ctx, false); err != nil {
			return false, err
		}
		n, err := evict(ctx, a.tx, b.Device, b.Epoch, st.Contiguous, evictChunk)
		h.kept -= min(n, h.kept)
		return h.kept < a.s.quota, err
	}
	for _, r := range b.Results {
		if decided(r.Seq) {
			ap.Duplicates++
			continue
		}
		if ok, err := room(); err != nil {
			return ap, err
		} else if !ok {
			ap.OverQuota++
			continue
		}
		a.present[seqID{id, r.Seq}] = true
		a.results = append(a.results, pendingResult{id, at, r})
		a.newByDev[b.Device] = append(a.newByDev[b.Device], r)
		sp.maxSeq = max(sp.maxSeq, r.Seq)
		h.kept++
		ap.Stored++
	}
	for _, j := range b.Rejected {
		if decided(j.Seq) {
			continue
		}
		if ok, err := room(); err != nil {
			return ap, err
		} else if !ok {
			ap.OverQuota++
			continue
		}
		a.present[seqID{id, j.Seq}] = true
		a.rejected = append(a.rejected, pendingRejected{id, j})
		sp.maxSeq = max(sp.maxSeq, j.Seq)
		h.kept++
		ap.Rejected++
	}

	var first uint64
	if len(b.Results) > 0 {
		first = b.Results[0].Seq
	}
	if len(b.Rejected) > 0 && (first == 0 || b.Rejected[0].Seq < first) {
		first = b.Rejected[0].Seq
	}
	if dt := fleet.PlausibleDrop(*st, known, b.DroppedThrough, first, at); dt > st.Contiguous {
		// Seqs in (Contiguous, dt] that are absent were dropped by the device; count the
		// present ones through the index rather than probing every seq.
		if err := a.flush(ctx, false); err != nil {
			return ap, err
		}
		var n int64
		if err := a.tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM results WHERE device = $1 AND epoch = $2 AND seq > $3 AND seq <= $4)
			+ (SELECT count(*) FROM rejected WHERE device = $1 AND epoch = $2 AND seq > $3 AND seq <= $4)`,
			b.Device, int64(b.Epoch), seqKey(st.Contiguous), seqKey(dt)).Scan(&n); err != nil {
			return ap, fmt.Errorf("count range %s: %w", b.Device, err)
		}
		ap.Dropped = dt - st.Contiguous - uint64(n)
		st.Dropped += ap.Dropped
		st.Contiguous = dt
	} else if b.DroppedThrough > st.Contiguous {
		ap.DropRefused = true
	}
	for st.Contiguous != ^uint64(0) && decided(st.Contiguous+1) {
		st.Contiguous++
	}
	if st.Contiguous < sp.maxSeq {
		// Seqs above a gap were stored before; this call may not have seen them all.
		if err := a.flush(ctx, false); err != nil {
			return ap, err
		}
		var err error
		if st.Contiguous, err = advance(ctx, a.tx, b.Device, b.Epoch, st.Contiguous); err != nil {
			return ap, err
		}
	}
	if st.Contiguous != contiguous0 || !known {
		// A new space counts from when it was first seen, so a watermark that never moves
		// does not leave DroppedThrough unbounded.
		st.Advanced = at
	}
	st.Stored += uint64(ap.Stored)
	st.Duplicates += uint64(ap.Duplicates)
	st.Rejected += uint64(ap.Rejected)
	st.Epoch = b.Epoch
	sp.known, sp.dirty = true, true
	ap.Totals = *st
	return ap, nil
}

// flush writes the pending rows and the changed watermarks in one pipelined batch; final also
// writes the output buckets and the devices' epochs and quota counts.
func (a *appender) flush(ctx context.Context, final bool) error {
	batch := &pgx.Batch{}
	if len(a.results) > 0 {
		n := len(a.results)
		devs, epochs, seqs, times, recv := make([]string, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		events, bodies := make([]bool, n), make([]string, n)
		for i, p := range a.results {
			v, err := json.Marshal(p.r)
			if err != nil {
				return fmt.Errorf("encode result %s/%d: %w", p.device, p.r.Seq, err)
			}
			devs[i], epochs[i], seqs[i], times[i], recv[i] = p.device, int64(p.epoch), seqKey(p.r.Seq), p.r.Time.UnixNano(), p.at.UnixNano()
			events[i], bodies[i] = p.r.Event, string(v)
		}
		batch.Queue(`INSERT INTO results (device, epoch, seq, time_ns, received_ns, event, body)
			SELECT u.d, u.e, u.s, u.t, u.rc, u.ev, u.body::json
			FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::boolean[], $7::text[]) AS u(d, e, s, t, rc, ev, body)`,
			devs, epochs, seqs, times, recv, events, bodies)
		a.results = a.results[:0]
	}
	if len(a.rejected) > 0 {
		n := len(a.rejected)
		devs, epochs, seqs, reasons := make([]string, n), make([]int64, n), make([]int64, n), make([]string, n)
		for i, p := range a.rejected {
			devs[i], epochs[i], seqs[i], reasons[i] = p.device, int64(p.epoch), seqKey(p.j.Seq), p.j.Reason
		}
		batch.Queue(`INSERT INTO rejected (device, epoch, seq, reason)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[])`, devs, epochs, seqs, reasons)
		a.rejected = a.rejected[:0]
	}
	var devs []string
	var epochs, stored, dups, dropped, contiguous, rejected, adv, maxSeq []int64
	for id, sp := range a.spaces {
		if !sp.dirty {
			continue
		}
		st := sp.st
		devs, epochs = append(devs, id.device), append(epochs, int64(id.epoch))
		stored, dups, dropped = append(stored, int64(st.Stored)), append(dups, int64(st.Duplicates)), append(dropped, int64(st.Dropped))
		contiguous, rejected = append(contiguous, seqKey(st.Contiguous)), append(rejected, int64(st.Rejected))
		adv, maxSeq = append(adv, nanos(st.Advanced)), append(maxSeq, seqKey(sp.maxSeq))
		sp.dirty = false
	}
	if len(devs) > 0 {
		batch.Queue(`INSERT INTO spaces (device, epoch, stored, duplicates, dropped, contiguous, rejected, advanced_ns, max_seq)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
			ON CONFLICT (device, epoch) DO UPDATE SET stored = excluded.stored, duplicates = excluded.duplicates,
				dropped = excluded.dropped, contiguous = excluded.contiguous, rejected = excluded.rejected,
				advanced_ns = excluded.advanced_ns, max_seq = excluded.max_seq`,
			devs, epochs, stored, dups, dropped, contiguous, rejected, adv, maxSeq)
	}
	if final {
		if err := a.queueBuckets(ctx, batch); err != nil {
			return err
		}
		var ds []string
		var es, ks []int64
		for d, h := range a.held {
			ds, es, ks = append(ds, d), append(es, int64(h.epoch)), append(ks, int64(h.kept))
		}
		batch.Queue(`UPDATE result_devices r SET epoch = u.e, kept = u.k
			FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(d, e, k) WHERE r.device = u.d`, ds, es, ks)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := a.tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// heldDevice is a locked result_devices row, updated in memory and written back at the end.
type heldDevice struct {
	epoch uint64 // current epoch
	kept  uint64 // results and rejections kept, all epochs
}

// lockDevices inserts the missing result_devices rows and locks all of them, in device order
// (devices is sorted), so that concurrent calls over overlapping devices queue rather than
// deadlock.
func lockDevices(ctx context.Context, tx pgx.Tx, devices []string) (map[string]*heldDevice, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO result_devices (device)
		SELECT d FROM unnest($1::text[]) AS u(d) ORDER BY d ON CONFLICT (device) DO NOTHING`, devices); err != nil {
		return nil, fmt.Errorf("register result devices: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT device, epoch, kept FROM result_devices
		WHERE device = ANY($1::text[]) ORDER BY device FOR UPDATE`, devices)
	if err != nil {
		return nil, fmt.Errorf("lock result devices: %w", err)
	}
	held := make(map[string]*heldDevice, len(devices))
	var dev string
	var epoch, kept int64
	if _, err := pgx.ForEachRow(rows, []any{&dev, &epoch, &kept}, func() error {
		held[dev] = &heldDevice{epoch: uint64(epoch), kept: uint64(kept)}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("lock result devices: %w", err)
	}
	if len(held) != len(devices) {
		return nil, fmt.Errorf("lock result devices: locked %d of %d", len(held), len(devices))
	}
	return held, nil
}

// advance moves the watermark over the stored or rejected seqs that follow it, reading them in
// seq order until the first gap, in chunks that start small (a gap usually sits right above the
// watermark, with a backlog beyond it) and grow.
func advance(ctx context.Context, tx pgx.Tx, device string, epoch, contiguous uint64) (uint64, error) {
	chunk := 16
	for ; contiguous != ^uint64(0); chunk = min(2*chunk, 4096) {
		rows, err := tx.Query(ctx, `SELECT seq FROM (
				(SELECT seq FROM results WHERE device = $1 AND epoch = $2 AND seq > $3 ORDER BY seq LIMIT $4)
				UNION ALL
				(SELECT seq FROM rejected WHERE device = $1 AND epoch = $2 AND seq > $3 ORDER BY seq LIMIT $4)
			) AS s ORDER BY seq LIMIT $4`, device, int64(epoch), seqKey(contiguous), chunk)
		if err != nil {
			return 0, fmt.Errorf("advance watermark %s: %w", device, err)
		}
		var k int64
		n, gap := 0, false
		if _, err := pgx.ForEachRow(rows, []any{&k}, func() error {
			n++
			if !gap && seqOf(k) == contiguous+1 {
				contiguous++
			} else {
				gap = true
			}
			return nil
		}); err != nil {
			return 0, fmt.Errorf("advance watermark %s: %w", device, err)
		}
		if gap || n < chunk {
			return contiguous, nil
		}
	}
	return contiguous, nil
}

// evict deletes up to n of device's oldest results that a watermark covers, from the epochs
// other than the current one (epoch, whose watermark is contiguous) first, and returns how
// many went.
func evict(ctx context.Context, tx pgx.Tx, device string, epoch, contiguous uint64, n int) (uint64, error) {
	tag, err := tx.Exec(ctx, `WITH victims AS (
			SELECT r.epoch, r.seq FROM results r LEFT JOIN spaces s ON s.device = r.device AND s.epoch = r.epoch
			WHERE r.device = $1 AND r.seq <= CASE WHEN r.epoch = $2 THEN $3 ELSE coalesce(s.contiguous, $4) END
			ORDER BY r.epoch = $2, r.epoch, r.seq LIMIT $5)
		DELETE FROM results r USING victims v WHERE r.device = $1 AND r.epoch = v.epoch AND r.seq = v.seq`,
		device, int64(epoch), seqKey(contiguous), seqKey(0), n)
	if err != nil {
		return 0, fmt.Errorf("evict %s: %w", device, err)
	}
	return uint64(tag.RowsAffected()), nil
}
