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
func (s *Store) AppendResults(ctx context.Context, batches []fleet.Batch) ([]fleet.Appended, error) {
	for _, b := range batches {
		if err := wire.ValidDeviceID(b.Device); err != nil {
			return nil, fmt.Errorf("append results: %w", err)
		}
		for _, r := range b.Results {
			if r.Seq == 0 {
				return nil, fmt.Errorf("append results for %s: seq 0 is not a valid sequence number", b.Device)
			}
		}
		for _, j := range b.Rejected {
			if j.Seq == 0 {
				return nil, fmt.Errorf("append results for %s: rejected seq 0 is not a valid sequence number", b.Device)
			}
		}
	}
	out := make([]fleet.Appended, 0, len(batches))
	if len(batches) == 0 {
		return out, nil
	}
	var devices []string
	for _, b := range batches {
		devices = append(devices, b.Device)
	}
	slices.Sort(devices)
	devices = slices.Compact(devices)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		out = out[:0] // a retried attempt starts over
		held, err := lockDevices(ctx, tx, devices)
		if err != nil {
			return err
		}
		for _, b := range batches {
			a, err := s.appendBatch(ctx, tx, held[b.Device], b)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		for _, d := range devices {
			h := held[d]
			if _, err := tx.Exec(ctx, "UPDATE result_devices SET epoch = $2, kept = $3 WHERE device = $1", d, int64(h.epoch), int64(h.kept)); err != nil {
				return fmt.Errorf("update device %s: %w", d, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("append results: %w", err)
	}
	return out, nil
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

func (s *Store) appendBatch(ctx context.Context, tx pgx.Tx, h *heldDevice, b fleet.Batch) (fleet.Appended, error) {
	a := fleet.Appended{Device: b.Device}
	at := b.Received
	if at.IsZero() {
		at = time.Now()
	}
	st, known, err := loadSpace(ctx, tx, b.Device, b.Epoch, false)
	if err != nil {
		return a, fmt.Errorf("watermark %s: %w", b.Device, err)
	}
	if !known {
		// A sequence space not seen before: the device's first, or a new one after its data
		// directory was wiped. It becomes current; the old spaces and their results stay.
		var old bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM spaces WHERE device = $1 AND epoch = $2)",
			b.Device, int64(h.epoch)).Scan(&old); err != nil {
			return a, fmt.Errorf("space %s: %w", b.Device, err)
		}
		a.Restarted = old && h.epoch != b.Epoch
		h.epoch = b.Epoch
	}
	st.Epoch = b.Epoch
	contiguous0 := st.Contiguous

	// present: seqs of this batch already stored or rejected (the rest of decided is the
	// watermark); then what this batch adds.
	var probe []int64
	for _, r := range b.Results {
		if r.Seq > st.Contiguous {
			probe = append(probe, seqKey(r.Seq))
		}
	}
	for _, j := range b.Rejected {
		if j.Seq > st.Contiguous {
			probe = append(probe, seqKey(j.Seq))
		}
	}
	present := map[uint64]bool{}
	if len(probe) > 0 {
		rows, err := tx.Query(ctx, `SELECT seq FROM results WHERE device = $1 AND epoch = $2 AND seq = ANY($3::bigint[])
			UNION ALL SELECT seq FROM rejected WHERE device = $1 AND epoch = $2 AND seq = ANY($3::bigint[])`,
			b.Device, int64(b.Epoch), probe)
		if err != nil {
			return a, fmt.Errorf("probe seqs %s: %w", b.Device, err)
		}
		var k int64
		if _, err := pgx.ForEachRow(rows, []any{&k}, func() error { present[seqOf(k)] = true; return nil }); err != nil {
			return a, fmt.Errorf("probe seqs %s: %w", b.Device, err)
		}
	}
	decided := func(seq uint64) bool { return seq <= st.Contiguous || present[seq] }
	room := func() (bool, error) {
		if h.kept < s.quota {
			return true, nil
		}
		n, err := evict(ctx, tx, b.Device, b.Epoch, st.Contiguous, evictChunk)
		h.kept -= min(n, h.kept)
		return h.kept < s.quota, err
	}

	var newResults []wire.Result
	for _, r := range b.Results {
		if decided(r.Seq) {
			a.Duplicates++
			continue
		}
		if ok, err := room(); err != nil {
			return a, err
		} else if !ok {
			a.OverQuota++
			continue
		}
		present[r.Seq] = true
		newResults = append(newResults, r)
		h.kept++
		a.Stored++
	}
	var newRejected []wire.Rejected
	for _, j := range b.Rejected {
		if decided(j.Seq) {
			continue
		}
		if ok, err := room(); err != nil {
			return a, err
		} else if !ok {
			a.OverQuota++
			continue
		}
		present[j.Seq] = true
		newRejected = append(newRejected, j)
		h.kept++
		a.Rejected++
	}
	if err := insertResults(ctx, tx, b.Device, b.Epoch, at, newResults); err != nil {
		return a, err
	}
	if err := insertRejected(ctx, tx, b.Device, b.Epoch, newRejected); err != nil {
		return a, err
	}
	if err := addToBuckets(ctx, tx, b.Device, newResults); err != nil {
		return a, err
	}

	var first uint64
	if len(b.Results) > 0 {
		first = b.Results[0].Seq
	}
	if len(b.Rejected) > 0 && (first == 0 || b.Rejected[0].Seq < first) {
		first = b.Rejected[0].Seq
	}
	if dt := fleet.PlausibleDrop(st, known, b.DroppedThrough, first, at); dt > st.Contiguous {
		// Seqs in (Contiguous, dt] that are absent were dropped by the device; count the
		// present ones through the index rather than probing every seq.
		var n int64
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM results WHERE device = $1 AND epoch = $2 AND seq > $3 AND seq <= $4)
			+ (SELECT count(*) FROM rejected WHERE device = $1 AND epoch = $2 AND seq > $3 AND seq <= $4)`,
			b.Device, int64(b.Epoch), seqKey(st.Contiguous), seqKey(dt)).Scan(&n); err != nil {
			return a, fmt.Errorf("count range %s: %w", b.Device, err)
		}
		a.Dropped = dt - st.Contiguous - uint64(n)
		st.Dropped += a.Dropped
		st.Contiguous = dt
	} else if b.DroppedThrough > st.Contiguous {
		a.DropRefused = true
	}
	if st.Contiguous, err = advance(ctx, tx, b.Device, b.Epoch, st.Contiguous); err != nil {
		return a, err
	}
	if st.Contiguous != contiguous0 || !known {
		// A new space counts from when it was first seen, so a watermark that never moves
		// does not leave DroppedThrough unbounded.
		st.Advanced = at
	}
	st.Stored += uint64(a.Stored)
	st.Duplicates += uint64(a.Duplicates)
	st.Rejected += uint64(a.Rejected)
	if _, err := tx.Exec(ctx, `INSERT INTO spaces (device, epoch, stored, duplicates, dropped, contiguous, rejected, advanced_ns)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (device, epoch) DO UPDATE SET stored = excluded.stored, duplicates = excluded.duplicates,
			dropped = excluded.dropped, contiguous = excluded.contiguous, rejected = excluded.rejected,
			advanced_ns = excluded.advanced_ns`,
		b.Device, int64(b.Epoch), int64(st.Stored), int64(st.Duplicates), int64(st.Dropped), seqKey(st.Contiguous),
		int64(st.Rejected), nanos(st.Advanced)); err != nil {
		return a, fmt.Errorf("put watermark %s: %w", b.Device, err)
	}
	a.Totals = st
	return a, nil
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

// insertResults stores newly accepted results.
func insertResults(ctx context.Context, tx pgx.Tx, device string, epoch uint64, at time.Time, rs []wire.Result) error {
	if len(rs) == 0 {
		return nil
	}
	seqs := make([]int64, len(rs))
	times := make([]int64, len(rs))
	events := make([]bool, len(rs))
	bodies := make([]string, len(rs))
	for i, r := range rs {
		v, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode result %s/%d: %w", device, r.Seq, err)
		}
		seqs[i], times[i], events[i], bodies[i] = seqKey(r.Seq), r.Time.UnixNano(), r.Event, string(v)
	}
	_, err := tx.Exec(ctx, `INSERT INTO results (device, epoch, seq, time_ns, received_ns, event, body)
		SELECT $1, $2, u.seq, u.t, $3, u.ev, u.body::json
		FROM unnest($4::bigint[], $5::bigint[], $6::boolean[], $7::text[]) AS u(seq, t, ev, body)`,
		device, int64(epoch), at.UnixNano(), seqs, times, events, bodies)
	if err != nil {
		return fmt.Errorf("put results %s: %w", device, err)
	}
	return nil
}

func insertRejected(ctx context.Context, tx pgx.Tx, device string, epoch uint64, js []wire.Rejected) error {
	if len(js) == 0 {
		return nil
	}
	seqs := make([]int64, len(js))
	reasons := make([]string, len(js))
	for i, j := range js {
		seqs[i], reasons[i] = seqKey(j.Seq), j.Reason
	}
	_, err := tx.Exec(ctx, `INSERT INTO rejected (device, epoch, seq, reason)
		SELECT $1, $2, u.seq, u.reason FROM unnest($3::bigint[], $4::text[]) AS u(seq, reason)`,
		device, int64(epoch), seqs, reasons)
	if err != nil {
		return fmt.Errorf("put rejections %s: %w", device, err)
	}
	return nil
}

// evict deletes up to n of device's oldest results that a watermark covers, from the epochs
// other than the current one (epoch, whose watermark is contiguous and not yet written) first,
// and returns how many went.
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
