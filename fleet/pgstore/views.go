package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// queueBuckets counts the call's newly stored results into their output buckets: it reads the
// buckets they fall in and queues their new values on batch. It runs in AppendResults'
// transaction, which holds the devices' locks, so no other writer changes these buckets until
// it commits (PruneSummaries deletes only whole buckets).
func (a *appender) queueBuckets(ctx context.Context, batch *pgx.Batch) error {
	if len(a.newByDev) == 0 {
		return nil
	}
	buckets := map[fleet.BucketKey]*fleet.OutputBucket{}
	var order []fleet.BucketKey
	for dev, rs := range a.newByDev {
		for i := range rs {
			k := fleet.BucketKey{Device: dev, Model: rs[i].Model, Start: fleet.SummaryStart(rs[i].Time)}
			if buckets[k] == nil {
				buckets[k] = &fleet.OutputBucket{Device: dev, Model: k.Model, Start: k.Start}
				order = append(order, k)
			}
		}
	}
	devs := make([]string, len(order))
	models := make([]string, len(order))
	starts := make([]time.Time, len(order))
	for i, k := range order {
		devs[i], models[i], starts[i] = k.Device, k.Model, k.Start
	}
	rows, err := a.tx.Query(ctx, `SELECT b.device, b.model, b.start, b.count, b.events, b.score_sum, b.score_min, b.score_max, b.labels, b.score_hist
		FROM output_buckets b JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(d, m, st)
			ON b.device = k.d AND b.model = k.m AND b.start = k.st`, devs, models, starts)
	if err != nil {
		return fmt.Errorf("read output buckets: %w", err)
	}
	ob, err := scanBuckets(rows)
	if err != nil {
		return fmt.Errorf("read output buckets: %w", err)
	}
	for i := range ob {
		b := ob[i]
		buckets[b.Key()] = &b
	}
	for dev, rs := range a.newByDev {
		for i := range rs {
			buckets[fleet.BucketKey{Device: dev, Model: rs[i].Model, Start: fleet.SummaryStart(rs[i].Time)}].Add(&rs[i])
		}
	}
	for _, k := range order {
		b := buckets[k]
		var labels any
		if len(b.Labels) > 0 {
			v, err := json.Marshal(b.Labels)
			if err != nil {
				return err
			}
			labels = string(v)
		}
		hist := make([]int64, len(b.ScoreHist))
		for i, n := range b.ScoreHist {
			hist[i] = int64(n)
		}
		batch.Queue(`INSERT INTO output_buckets (device, model, start, count, events, score_sum, score_min, score_max, labels, score_hist)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::json, $10)
			ON CONFLICT (device, model, start) DO UPDATE SET count = excluded.count, events = excluded.events,
				score_sum = excluded.score_sum, score_min = excluded.score_min, score_max = excluded.score_max,
				labels = excluded.labels, score_hist = excluded.score_hist`,
			b.Device, b.Model, b.Start, int64(b.Count), int64(b.Events), b.ScoreSum, b.ScoreMin, b.ScoreMax, labels, hist)
	}
	return nil
}

// scanBuckets reads rows of (device, model, start, count, events, score_sum, score_min,
// score_max, labels, score_hist).
func scanBuckets(rows pgx.Rows) ([]fleet.OutputBucket, error) {
	var out []fleet.OutputBucket
	var b fleet.OutputBucket
	var count, events int64
	var labels []byte
	var hist []int64
	dest := []any{&b.Device, &b.Model, &b.Start, &count, &events, &b.ScoreSum, &b.ScoreMin, &b.ScoreMax, &labels, &hist}
	_, err := pgx.ForEachRow(rows, dest, func() error {
		x := b
		x.Start = x.Start.UTC()
		x.Count, x.Events = uint64(count), uint64(events)
		x.Labels = nil
		if len(labels) > 0 && string(labels) != "null" {
			if err := json.Unmarshal(labels, &x.Labels); err != nil {
				return fmt.Errorf("decode labels: %w", err)
			}
		}
		x.ScoreHist = make([]uint64, len(hist))
		for i, n := range hist {
			x.ScoreHist[i] = uint64(n)
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// limitOf applies the query limit rules of fleet.ResultQuery.
func limitOf(n int) int {
	if n <= 0 {
		return fleet.DefaultResultLimit
	}
	return min(n, fleet.MaxResultLimit)
}

// openRange turns [since, until) into nanosecond bounds, zero meaning open.
func openRange(since, until time.Time) (int64, int64) {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if !since.IsZero() {
		lo = since.UnixNano()
	}
	if !until.IsZero() {
		hi = until.UnixNano()
	}
	return lo, hi
}

// tsBound is a timestamptz query bound: nil (open) for the zero time.
func tsBound(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// storedResultCols are the columns scanStored reads.
const storedResultCols = `r.device, r.epoch, r.received_ns, r.body, f.record`

func scanStored(rows pgx.Rows) ([]fleet.StoredResult, error) {
	out := []fleet.StoredResult{}
	var dev string
	var epoch, recv int64
	var body, fb []byte
	_, err := pgx.ForEachRow(rows, []any{&dev, &epoch, &recv, &body, &fb}, func() error {
		sr := fleet.StoredResult{Device: dev, Epoch: uint64(epoch), Received: time.Unix(0, recv)}
		if err := json.Unmarshal(body, &sr.Result); err != nil {
			return fmt.Errorf("decode result %s: %w", dev, err)
		}
		if len(fb) > 0 {
			sr.Feedback = &fleet.Feedback{}
			if err := json.Unmarshal(fb, sr.Feedback); err != nil {
				return fmt.Errorf("decode feedback %s: %w", dev, err)
			}
		}
		out = append(out, sr)
		return nil
	})
	return out, err
}

// QueryResults implements fleet.ViewStore.
func (s *Store) QueryResults(ctx context.Context, q fleet.ResultQuery) ([]fleet.StoredResult, error) {
	lo, hi := openRange(q.Since, q.Until)
	rows, err := s.pool.Query(ctx, `SELECT `+storedResultCols+`
		FROM results r LEFT JOIN feedback f ON f.device = r.device AND f.epoch = r.epoch AND f.seq = r.seq
		WHERE r.device = $1 AND r.time_ns >= $2 AND r.time_ns < $3 AND (r.event OR NOT $4)
		ORDER BY r.time_ns DESC, r.epoch DESC, r.seq DESC LIMIT $5`, q.Device, lo, hi, q.EventsOnly, limitOf(q.Limit))
	if err != nil {
		return nil, fmt.Errorf("query results %s: %w", q.Device, err)
	}
	out, err := scanStored(rows)
	if err != nil {
		return nil, fmt.Errorf("query results %s: %w", q.Device, err)
	}
	return out, nil
}

// PruneResults implements fleet.ViewStore. Watermarks stay; each device's quota count drops by
// what went.
func (s *Store) PruneResults(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `WITH gone AS (
				DELETE FROM results WHERE received_ns < $1 RETURNING device),
			per AS (SELECT device, count(*) AS n FROM gone GROUP BY device),
			upd AS (UPDATE result_devices d SET kept = greatest(d.kept - per.n, 0) FROM per WHERE d.device = per.device)
			SELECT coalesce(sum(n), 0) FROM per`, before.UnixNano()).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("prune results: %w", err)
	}
	return int(n), nil
}

// OutputSummaries implements fleet.ViewStore.
func (s *Store) OutputSummaries(ctx context.Context, device string, since, until time.Time) ([]fleet.OutputBucket, error) {
	lo, hi := tsBound(since), tsBound(until)
	rows, err := s.pool.Query(ctx, `SELECT device, model, start, count, events, score_sum, score_min, score_max, labels, score_hist
		FROM output_buckets WHERE ($1 = '' OR device = $1) AND ($2::timestamptz IS NULL OR start >= $2) AND ($3::timestamptz IS NULL OR start < $3)
		ORDER BY device, model, start`, device, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("output summaries: %w", err)
	}
	out, err := scanBuckets(rows)
	if err != nil {
		return nil, fmt.Errorf("output summaries: %w", err)
	}
	return out, nil
}

// PruneSummaries implements fleet.ViewStore.
func (s *Store) PruneSummaries(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM output_buckets WHERE start < $1", before)
	if err != nil {
		return 0, fmt.Errorf("prune summaries: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PutHealth implements fleet.ViewStore.
func (s *Store) PutHealth(ctx context.Context, points []fleet.HealthPoint) error {
	if len(points) == 0 {
		return nil
	}
	devs := make([]string, len(points))
	starts := make([]time.Time, len(points))
	recs := make([]string, len(points))
	for i, p := range points {
		if err := wire.ValidDeviceID(p.Device); err != nil {
			return fmt.Errorf("put health: %w", err)
		}
		v, err := json.Marshal(p.Health)
		if err != nil {
			return fmt.Errorf("encode health of %s: %w", p.Device, err)
		}
		devs[i], starts[i], recs[i] = p.Device, p.Start, string(v)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO health (device, start, record)
			SELECT DISTINCT ON (d, st) d, st, rec::json FROM unnest($1::text[], $2::timestamptz[], $3::text[]) WITH ORDINALITY AS u(d, st, rec, n)
			ORDER BY d, st, n DESC
			ON CONFLICT (device, start) DO UPDATE SET record = excluded.record`, devs, starts, recs)
		return err
	})
	if err != nil {
		return fmt.Errorf("put health: %w", err)
	}
	return nil
}

// HealthHistory implements fleet.ViewStore.
func (s *Store) HealthHistory(ctx context.Context, device string, since, until time.Time) ([]fleet.HealthPoint, error) {
	lo, hi := tsBound(since), tsBound(until)
	rows, err := s.pool.Query(ctx, `SELECT start, record FROM health WHERE device = $1 AND ($2::timestamptz IS NULL OR start >= $2) AND ($3::timestamptz IS NULL OR start < $3) ORDER BY start`,
		device, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("health history %s: %w", device, err)
	}
	out := []fleet.HealthPoint{}
	var start time.Time
	var rec []byte
	if _, err := pgx.ForEachRow(rows, []any{&start, &rec}, func() error {
		p := fleet.HealthPoint{Device: device, Start: start.UTC()}
		if err := json.Unmarshal(rec, &p.Health); err != nil {
			return fmt.Errorf("decode health: %w", err)
		}
		out = append(out, p)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("health history %s: %w", device, err)
	}
	return out, nil
}

// PruneHealth implements fleet.ViewStore.
func (s *Store) PruneHealth(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM health WHERE start < $1", before)
	if err != nil {
		return 0, fmt.Errorf("prune health: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PutDrift implements fleet.ViewStore.
func (s *Store) PutDrift(ctx context.Context, records []fleet.DriftRecord) error {
	if len(records) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, r := range records {
		sm := r.Summary
		if err := wire.ValidDeviceID(sm.Device); err != nil {
			return fmt.Errorf("put drift: %w", err)
		}
		v, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode drift of %s: %w", sm.Device, err)
		}
		batch.Queue(`INSERT INTO drift (device, model_name, model_version, win, start_ns, end_ns, received_ns, record)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8::json)
			ON CONFLICT (device, model_name, model_version, win, start_ns) DO UPDATE SET
				end_ns = excluded.end_ns, received_ns = excluded.received_ns, record = excluded.record`,
			sm.Device, sm.Model.Name, sm.Model.Version, int64(sm.Window), sm.Start.UnixNano(), sm.End.UnixNano(),
			r.Received.UnixNano(), string(v))
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error { return tx.SendBatch(ctx, batch).Close() })
	if err != nil {
		return fmt.Errorf("put drift: %w", err)
	}
	return nil
}

// Drift implements fleet.ViewStore.
func (s *Store) Drift(ctx context.Context, q fleet.DriftQuery) ([]fleet.DriftRecord, error) {
	since := int64(math.MinInt64)
	if !q.Since.IsZero() {
		since = q.Since.UnixNano()
	}
	out, err := queryJSON[fleet.DriftRecord](ctx, s.pool, `SELECT record FROM drift
		WHERE ($1 = '' OR device = $1) AND ($2 = '' OR model_name = $2 OR model_name || '@' || model_version = $2) AND end_ns >= $3
		ORDER BY end_ns DESC, device, model_name, model_version, win, start_ns LIMIT $4`, q.Device, q.Model, since, limitOf(q.Limit))
	if err != nil {
		return nil, fmt.Errorf("drift: %w", err)
	}
	if out == nil {
		out = []fleet.DriftRecord{}
	}
	return out, nil
}

// PruneDrift implements fleet.ViewStore.
func (s *Store) PruneDrift(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM drift WHERE received_ns < $1", before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("prune drift: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PutFeedback implements fleet.ViewStore. An epoch of 0 is resolved to the device's current
// epoch and recorded as such.
func (s *Store) PutFeedback(ctx context.Context, labels []fleet.Feedback) error {
	for _, f := range labels {
		if err := wire.ValidDeviceID(f.Device); err != nil {
			return fmt.Errorf("put feedback: %w", err)
		}
		if f.Seq == 0 {
			return fmt.Errorf("put feedback for %s: seq 0 is not a valid sequence number", f.Device)
		}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for _, f := range labels {
			if f.Epoch == 0 {
				var e int64
				err := tx.QueryRow(ctx, "SELECT epoch FROM result_devices WHERE device = $1", f.Device).Scan(&e)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return err
				}
				f.Epoch = uint64(e)
			}
			if f.At.IsZero() {
				f.At = time.Now().UTC()
			}
			v, err := json.Marshal(f)
			if err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `INSERT INTO feedback (device, epoch, seq, record)
				SELECT device, epoch, seq, $4::json FROM results WHERE device = $1 AND epoch = $2 AND seq = $3
				ON CONFLICT (device, epoch, seq) DO UPDATE SET record = excluded.record`,
				f.Device, int64(f.Epoch), seqKey(f.Seq), string(v))
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("result %s epoch %d seq %d: %w", f.Device, f.Epoch, f.Seq, fleet.ErrNotFound)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put feedback: %w", err)
	}
	return nil
}

// FeedbackResults implements fleet.ViewStore.
func (s *Store) FeedbackResults(ctx context.Context, device string, since time.Time, limit int) ([]fleet.StoredResult, error) {
	lo := int64(math.MinInt64)
	if !since.IsZero() {
		lo = since.UnixNano()
	}
	rows, err := s.pool.Query(ctx, `SELECT `+storedResultCols+`
		FROM feedback f JOIN results r ON f.device = r.device AND f.epoch = r.epoch AND f.seq = r.seq
		WHERE ($1 = '' OR f.device = $1) AND r.time_ns >= $2
		ORDER BY r.time_ns DESC, r.device, r.epoch DESC, r.seq DESC LIMIT $3`, device, lo, limitOf(limit))
	if err != nil {
		return nil, fmt.Errorf("feedback results: %w", err)
	}
	out, err := scanStored(rows)
	if err != nil {
		return nil, fmt.Errorf("feedback results: %w", err)
	}
	return out, nil
}
