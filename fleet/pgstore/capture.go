package pgstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Captured windows (fleet.CaptureStore), tables captures and capture_marks (migration 0002).
// Semantics are boltstore's: one transaction per call, duplicates by the (device, epoch) mark
// even after retention, items in the order the controller received them.

var _ fleet.CaptureStore = (*Store)(nil)

// pruneChunk bounds the deletions of one retention transaction.
const pruneChunk = 4096

type captureSpace struct {
	device string
	epoch  uint64
}

// AppendCaptures implements fleet.CaptureStore.
func (s *Store) AppendCaptures(ctx context.Context, batches []fleet.CaptureBatch) ([]fleet.CaptureAppended, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var spaces []captureSpace
	for _, b := range batches {
		if err := wire.ValidDeviceID(b.Device); err != nil {
			return nil, fmt.Errorf("append captures: %w", err)
		}
		for _, it := range b.Items {
			if it.Seq == 0 {
				return nil, fmt.Errorf("append captures: device %s: seq 0", b.Device)
			}
		}
		spaces = append(spaces, captureSpace{b.Device, b.Epoch})
	}
	if len(batches) == 0 {
		return nil, nil
	}
	// Lock the marks in one order so two replicas appending overlapping sets cannot deadlock.
	slices.SortFunc(spaces, func(a, b captureSpace) int {
		if c := strings.Compare(a.device, b.device); c != 0 {
			return c
		}
		return cmp.Compare(a.epoch, b.epoch)
	})
	spaces = slices.Compact(spaces)
	var out []fleet.CaptureAppended
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		out = make([]fleet.CaptureAppended, len(batches))
		marks := make(map[captureSpace]uint64, len(spaces))
		for _, sp := range spaces {
			var m int64
			// Insert the row if missing, then lock it; ON CONFLICT DO NOTHING returns no row
			// for an existing one, so read it with FOR UPDATE in that case.
			err := tx.QueryRow(ctx, `INSERT INTO capture_marks (device, epoch, mark) VALUES ($1, $2, $3)
				ON CONFLICT (device, epoch) DO NOTHING RETURNING mark`, sp.device, int64(sp.epoch), seqKey(0)).Scan(&m)
			if errors.Is(err, pgx.ErrNoRows) {
				err = tx.QueryRow(ctx, `SELECT mark FROM capture_marks WHERE device = $1 AND epoch = $2 FOR UPDATE`,
					sp.device, int64(sp.epoch)).Scan(&m)
			}
			if err != nil {
				return fmt.Errorf("lock capture mark %s: %w", sp.device, err)
			}
			marks[sp] = seqOf(m)
		}
		var (
			devs, models, bodies []string
			epochs, seqs, recv   []int64
		)
		for i, b := range batches {
			at := b.Received
			if at.IsZero() {
				at = time.Now()
			}
			at = at.UTC()
			sp := captureSpace{b.Device, b.Epoch}
			mark := marks[sp]
			a := &out[i]
			for _, it := range b.Items {
				if it.Seq <= mark {
					a.Duplicates++
					continue
				}
				v, err := json.Marshal(fleet.CapturedItem{Device: b.Device, Epoch: b.Epoch, Received: at, CaptureItem: it})
				if err != nil {
					return fmt.Errorf("encode capture: %w", err)
				}
				devs, epochs, seqs = append(devs, b.Device), append(epochs, int64(b.Epoch)), append(seqs, seqKey(it.Seq))
				recv, models, bodies = append(recv, at.UnixNano()), append(models, it.Result.Model), append(bodies, string(v))
				mark = it.Seq
				a.Stored++
			}
			a.Through = mark
			marks[sp] = mark
		}
		if len(devs) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO captures (device, epoch, seq, received_ns, model, body)
				SELECT d, e, s, r, m, b::json FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[]) AS u(d, e, s, r, m, b)`,
				devs, epochs, seqs, recv, models, bodies); err != nil {
				return fmt.Errorf("insert captures: %w", err)
			}
		}
		for _, sp := range spaces {
			if _, err := tx.Exec(ctx, `UPDATE capture_marks SET mark = $3 WHERE device = $1 AND epoch = $2`,
				sp.device, int64(sp.epoch), seqKey(marks[sp])); err != nil {
				return fmt.Errorf("update capture mark %s: %w", sp.device, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("append captures: %w", err)
	}
	return out, nil
}

// captureCursor is a page position: the last item's (received, device, epoch, seq), written
// as "received.epoch.seq.device" (the device last: it is the only free-form part).
type captureCursor struct {
	received, epoch, seq int64
	device               string
}

func (c captureCursor) String() string {
	return fmt.Sprintf("%d.%d.%d.%s", c.received, c.epoch, c.seq, c.device)
}

func parseCaptureCursor(s string) (captureCursor, error) {
	var c captureCursor
	parts := strings.SplitN(s, ".", 4)
	if len(parts) != 4 || wire.ValidDeviceID(parts[3]) != nil {
		return c, fmt.Errorf("captures: bad page cursor %q", s)
	}
	var errs [3]error
	c.received, errs[0] = strconv.ParseInt(parts[0], 10, 64)
	c.epoch, errs[1] = strconv.ParseInt(parts[1], 10, 64)
	c.seq, errs[2] = strconv.ParseInt(parts[2], 10, 64)
	if err := errors.Join(errs[:]...); err != nil {
		return c, fmt.Errorf("captures: bad page cursor %q", s)
	}
	c.device = parts[3]
	return c, nil
}

// Captures implements fleet.CaptureStore.
func (s *Store) Captures(ctx context.Context, q fleet.CaptureQuery) (fleet.CapturePage, error) {
	page := fleet.CapturePage{}
	limit := q.Limit
	if limit <= 0 || limit > fleet.MaxCapturePage {
		limit = fleet.MaxCapturePage
	}
	after := captureCursor{received: -1 << 63}
	if q.After != "" {
		c, err := parseCaptureCursor(q.After)
		if err != nil {
			return page, err
		}
		after = c
	}
	since := int64(-1 << 63)
	if !q.Since.IsZero() {
		since = q.Since.UnixNano()
	}
	// A bare NAME matches every version of it, NAME@VERSION only that one.
	bare := q.Model != "" && !strings.Contains(q.Model, "@")
	rows, err := s.pool.Query(ctx, `SELECT received_ns, device, epoch, seq, body FROM captures
		WHERE (received_ns, device, epoch, seq) > ($1, $2, $3, $4) AND received_ns >= $5
			AND ($6 = '' OR device = $6)
			AND ($7 = '' OR model = $7 OR ($8 AND split_part(model, '@', 1) = $7))
		ORDER BY received_ns, device, epoch, seq LIMIT $9`,
		after.received, after.device, after.epoch, after.seq, since, q.Device, q.Model, bare, limit+1)
	if err != nil {
		return page, fmt.Errorf("captures: %w", err)
	}
	var (
		c    captureCursor
		raw  []byte
		more bool
	)
	_, err = pgx.ForEachRow(rows, []any{&c.received, &c.device, &c.epoch, &c.seq, &raw}, func() error {
		if len(page.Items) == limit {
			more = true // the extra row only says there is a next page
			return nil
		}
		var it fleet.CapturedItem
		if err := json.Unmarshal(raw, &it); err != nil {
			return fmt.Errorf("stored capture %s: %w", c.device, err)
		}
		page.Items = append(page.Items, it)
		page.Next = c.String()
		return nil
	})
	if err != nil {
		return fleet.CapturePage{}, fmt.Errorf("captures: %w", err)
	}
	if !more {
		page.Next = ""
	}
	return page, nil
}

// PruneCaptures implements fleet.CaptureStore. It deletes in transactions of at most
// pruneChunk items so a large backlog never holds locks for long.
func (s *Store) PruneCaptures(ctx context.Context, keep int, before time.Time) (int, error) {
	n := 0
	if !before.IsZero() {
		for {
			tag, err := s.pool.Exec(ctx, `DELETE FROM captures WHERE (device, epoch, seq) IN (
				SELECT device, epoch, seq FROM captures WHERE received_ns < $1 ORDER BY received_ns LIMIT $2)`,
				before.UnixNano(), pruneChunk)
			if err != nil {
				return n, fmt.Errorf("prune captures: %w", err)
			}
			n += int(tag.RowsAffected())
			if tag.RowsAffected() < pruneChunk {
				break
			}
		}
	}
	if keep <= 0 {
		return n, nil
	}
	for {
		var total int64
		if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM captures").Scan(&total); err != nil {
			return n, fmt.Errorf("prune captures: %w", err)
		}
		excess := total - int64(keep)
		if excess <= 0 {
			return n, nil
		}
		tag, err := s.pool.Exec(ctx, `DELETE FROM captures WHERE (device, epoch, seq) IN (
			SELECT device, epoch, seq FROM captures ORDER BY received_ns, device, epoch, seq LIMIT $1)`,
			min(excess, pruneChunk))
		if err != nil {
			return n, fmt.Errorf("prune captures: %w", err)
		}
		n += int(tag.RowsAffected())
		if tag.RowsAffected() == 0 {
			return n, nil
		}
	}
}
