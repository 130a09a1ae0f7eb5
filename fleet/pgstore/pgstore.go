// Package pgstore implements fleet.Store over PostgreSQL (pgx), for the scale-out mode: several
// controller replicas share one database, each storing the result batches its broker's shared
// subscription hands it.
//
// The schema is versioned: migrations/NNNN_name.sql, embedded, applied in order by Open in one
// transaction under an advisory lock and recorded in schema_migrations; Open refuses a database
// newer than the code. migrations/0001_init.sql documents the encodings (seqs as seq - 2^63 so
// SQL orders the whole uint64 range, uint64 counters bit for bit in bigint, exact times as Unix
// nanoseconds, records as verbatim json).
//
// Semantics are boltstore's, checked by the same contract (fleet/storetest): per (device,
// epoch) sequence spaces with a contiguous ack watermark, duplicates by watermark or stored
// seq, DroppedThrough bounded by fleet.PlausibleDrop, rejected seqs filling the watermark, a
// per-device quota evicting the oldest acknowledged results (other epochs first), and output
// summaries maintained inside AppendResults' transaction once per newly stored result.
//
// Concurrency: AppendResults runs at READ COMMITTED and first locks the result_devices row of
// every device it touches (inserted if missing), in device order, with SELECT ... FOR UPDATE.
// Every later statement of the transaction reads that device's rows after the previous
// holder committed, so two replicas writing one device serialise per device and never both
// store a seq or both count it into a summary. A deadlock or serialization failure (another
// writer with a different lock order, e.g. PruneResults) is retried with the whole call.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// DefaultDeviceQuota is the default Options.DeviceQuota (boltstore's).
const DefaultDeviceQuota = 1_000_000

// evictChunk is how many results are evicted at once when a device reaches its quota.
const evictChunk = 1024

// maxAttempts bounds the retries of a transaction that failed on a serialization failure or
// a deadlock.
const maxAttempts = 20

// Options configure Open.
type Options struct {
	// DeviceQuota is the most results and rejections one device keeps (see boltstore's
	// package comment). Default DefaultDeviceQuota.
	DeviceQuota uint64
	// MaxConns bounds the connection pool; 0 takes pgxpool's default (max(4, CPUs)).
	MaxConns int32
}

// Store is a fleet.Store backed by PostgreSQL.
type Store struct {
	pool    *pgxpool.Pool
	quota   uint64
	version int
}

var (
	_ fleet.Store     = (*Store)(nil)
	_ fleet.ViewStore = (*Store)(nil)
)

// Open connects to the database at url (postgres://...), migrates it to the code's schema
// version and returns the store. It fails with one line when the server does not answer or the
// schema is newer than the code (ErrSchemaTooNew).
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if opts.DeviceQuota == 0 {
		opts.DeviceQuota = DefaultDeviceQuota
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message can quote the URL; say only what is wrong.
		return nil, fmt.Errorf("postgres store: bad connection url: %w", errors.Unwrap(err))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store %s:%d/%s: %s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, oneLine(err))
	}
	ms, err := Migrations()
	if err != nil {
		pool.Close()
		return nil, err
	}
	v, err := migrate(pctx, pool, ms)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	return &Store{pool: pool, quota: opts.DeviceQuota, version: v}, nil
}

// oneLine flattens pgx's multi-line connection errors (one line per address tried).
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// SchemaVersion is the database's schema version after Open migrated it.
func (s *Store) SchemaVersion() int { return s.version }

// Close closes the pool, waiting for connections in use to be released.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// seqKey maps a uint64 seq onto bigint preserving order; seqOf is its inverse.
func seqKey(seq uint64) int64 { return int64(seq ^ (1 << 63)) }
func seqOf(k int64) uint64    { return uint64(k) ^ (1 << 63) }

// nanos is t in Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// retryable reports whether err is a transient conflict worth running the transaction again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// inTx runs fn in a transaction, again on a serialization failure or deadlock.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || !retryable(err) || attempt == maxAttempts {
			return err
		}
		// Back off a little, jittered, so the conflicting writers do not collide again.
		d := time.Duration(rand.Int64N(int64(attempt)*int64(5*time.Millisecond))) + time.Millisecond
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// PutDevices implements fleet.Store.
func (s *Store) PutDevices(ctx context.Context, devices []fleet.Device) error {
	for _, d := range devices {
		if err := wire.ValidDeviceID(d.ID); err != nil {
			return fmt.Errorf("put device: %w", err)
		}
	}
	if len(devices) == 0 {
		return nil
	}
	ids := make([]string, len(devices))
	recs := make([]string, len(devices))
	for i, d := range devices {
		v, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode device %s: %w", d.ID, err)
		}
		ids[i], recs[i] = d.ID, string(v)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// The last record of an id wins, as with one Put after another. Rows go in id order
		// so concurrent writers of overlapping sets lock them in one order.
		_, err := tx.Exec(ctx, `INSERT INTO devices (id, record)
			SELECT DISTINCT ON (id) id, record::json FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(id, record, n)
			ORDER BY id, n DESC
			ON CONFLICT (id) DO UPDATE SET record = excluded.record`, ids, recs)
		return err
	})
	if err != nil {
		return fmt.Errorf("put devices: %w", err)
	}
	return nil
}

// AddDevice implements fleet.Store.
func (s *Store) AddDevice(ctx context.Context, id string) (bool, error) {
	if err := wire.ValidDeviceID(id); err != nil {
		return false, fmt.Errorf("add device: %w", err)
	}
	v, err := json.Marshal(fleet.Device{ID: id})
	if err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO devices (id, record) VALUES ($1, $2::json) ON CONFLICT (id) DO NOTHING`, id, string(v))
	if err != nil {
		return false, fmt.Errorf("add device %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Devices implements fleet.Store.
func (s *Store) Devices(ctx context.Context) ([]fleet.Device, error) {
	out, err := queryJSON[fleet.Device](ctx, s.pool, "SELECT record FROM devices ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return out, nil
}

// querier is what reads need from a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// queryJSON decodes the single json column of every row.
func queryJSON[T any](ctx context.Context, q querier, sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	var out []T
	var raw []byte
	_, err = pgx.ForEachRow(rows, []any{&raw}, func() error {
		var x T
		if err := json.Unmarshal(raw, &x); err != nil {
			return fmt.Errorf("decode record: %w", err)
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// ResultStats implements fleet.Store.
func (s *Store) ResultStats(ctx context.Context, device string) (fleet.ResultStats, error) {
	var epoch int64
	err := s.pool.QueryRow(ctx, "SELECT epoch FROM result_devices WHERE device = $1", device).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return fleet.ResultStats{}, nil
	}
	if err != nil {
		return fleet.ResultStats{}, fmt.Errorf("result stats %s: %w", device, err)
	}
	st, _, err := loadSpace(ctx, s.pool, device, uint64(epoch), false)
	if err != nil {
		return st, fmt.Errorf("result stats %s: %w", device, err)
	}
	return st, nil
}

// loadSpace reads the counters of (device, epoch) and whether the space exists.
func loadSpace(ctx context.Context, q querier, device string, epoch uint64, forUpdate bool) (fleet.ResultStats, bool, error) {
	st := fleet.ResultStats{Epoch: epoch}
	var stored, dups, dropped, contiguous, rejected, adv int64
	sql := `SELECT stored, duplicates, dropped, contiguous, rejected, advanced_ns FROM spaces WHERE device = $1 AND epoch = $2`
	if forUpdate {
		sql += " FOR UPDATE"
	}
	err := q.QueryRow(ctx, sql, device, int64(epoch)).Scan(&stored, &dups, &dropped, &contiguous, &rejected, &adv)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	st.Stored, st.Duplicates, st.Dropped = uint64(stored), uint64(dups), uint64(dropped)
	st.Contiguous, st.Rejected, st.Advanced = seqOf(contiguous), uint64(rejected), fromNanos(adv)
	return st, true, nil
}

// Results implements fleet.Store.
func (s *Store) Results(ctx context.Context, device string, after uint64, limit int) ([]wire.Result, error) {
	return s.results(ctx, device, nil, after, limit)
}

// EpochResults implements fleet.Store.
func (s *Store) EpochResults(ctx context.Context, device string, epoch, after uint64, limit int) ([]wire.Result, error) {
	return s.results(ctx, device, &epoch, after, limit)
}

func (s *Store) results(ctx context.Context, device string, epoch *uint64, after uint64, limit int) ([]wire.Result, error) {
	out := []wire.Result{}
	if limit <= 0 || after == ^uint64(0) {
		return out, nil
	}
	var err error
	if epoch == nil {
		out, err = queryJSON[wire.Result](ctx, s.pool, `SELECT body FROM results
			WHERE device = $1 AND epoch = coalesce((SELECT epoch FROM result_devices WHERE device = $1), 0) AND seq > $2
			ORDER BY seq LIMIT $3`, device, seqKey(after), limit)
	} else {
		out, err = queryJSON[wire.Result](ctx, s.pool, `SELECT body FROM results
			WHERE device = $1 AND epoch = $2 AND seq > $3 ORDER BY seq LIMIT $4`, device, int64(*epoch), seqKey(after), limit)
	}
	if err != nil {
		return nil, fmt.Errorf("read results %s: %w", device, err)
	}
	return out, nil
}
