package boltstore

// Captured windows (fleet.CaptureStore). Layout:
//
//	captures/{received unix nanos BE}{device}\x00{epoch BE}{seq BE}  JSON fleet.CapturedItem
//	capture_marks/{device}/{epoch as 16 hex}                        highest seq stored, uint64 BE
//
// Keys sort by the time the controller received the item, so a query by time and retention by
// age or count are range scans; the marks de-duplicate by (device, epoch, seq) even after
// retention deleted the original.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

var (
	bucketCaptures     = []byte("captures")
	bucketCaptureMarks = []byte("capture_marks")
)

var _ fleet.CaptureStore = (*Store)(nil)

func captureKey(received time.Time, device string, epoch, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(received.UnixNano()))
	k = append(k, device...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, epoch)
	return binary.BigEndian.AppendUint64(k, seq)
}

func markKey(device string, epoch uint64) []byte { return fmt.Appendf(nil, "%s/%016x", device, epoch) }

// captureBuckets returns the capture buckets, creating them in a write transaction.
func captureBuckets(tx *bolt.Tx) (items, marks *bolt.Bucket, err error) {
	if !tx.Writable() {
		return tx.Bucket(bucketCaptures), tx.Bucket(bucketCaptureMarks), nil
	}
	if items, err = tx.CreateBucketIfNotExists(bucketCaptures); err != nil {
		return nil, nil, err
	}
	marks, err = tx.CreateBucketIfNotExists(bucketCaptureMarks)
	return items, marks, err
}

// AppendCaptures implements fleet.CaptureStore.
func (s *Store) AppendCaptures(ctx context.Context, batches []fleet.CaptureBatch) ([]fleet.CaptureAppended, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]fleet.CaptureAppended, len(batches))
	err := s.db.Update(func(tx *bolt.Tx) error {
		items, marks, err := captureBuckets(tx)
		if err != nil {
			return err
		}
		items.FillPercent = 0.9 // keys grow with time
		for i, b := range batches {
			if err := wire.ValidDeviceID(b.Device); err != nil {
				return fmt.Errorf("append captures: %w", err)
			}
			at := b.Received
			if at.IsZero() {
				at = time.Now()
			}
			at = at.UTC()
			mk := markKey(b.Device, b.Epoch)
			mark := uint64(0)
			if v := marks.Get(mk); len(v) == 8 {
				mark = binary.BigEndian.Uint64(v)
			}
			a := &out[i]
			for _, it := range b.Items {
				if it.Seq == 0 {
					return fmt.Errorf("append captures: device %s: seq 0", b.Device)
				}
				if it.Seq <= mark {
					a.Duplicates++
					continue
				}
				v, err := json.Marshal(fleet.CapturedItem{Device: b.Device, Epoch: b.Epoch, Received: at, CaptureItem: it})
				if err != nil {
					return fmt.Errorf("append captures: encode: %w", err)
				}
				if err := items.Put(captureKey(at, b.Device, b.Epoch, it.Seq), v); err != nil {
					return err
				}
				mark = it.Seq
				a.Stored++
			}
			a.Through = mark
			if err := marks.Put(mk, binary.BigEndian.AppendUint64(nil, mark)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Captures implements fleet.CaptureStore.
func (s *Store) Captures(ctx context.Context, q fleet.CaptureQuery) (fleet.CapturePage, error) {
	var page fleet.CapturePage
	if err := ctx.Err(); err != nil {
		return page, err
	}
	limit := q.Limit
	if limit <= 0 || limit > fleet.MaxCapturePage {
		limit = fleet.MaxCapturePage
	}
	var start []byte
	if q.After != "" {
		k, err := hex.DecodeString(q.After)
		if err != nil || len(k) < 8 {
			return page, fmt.Errorf("captures: bad page cursor %q", q.After)
		}
		start = append(k, 0) // the first key after it
	} else if !q.Since.IsZero() {
		start = binary.BigEndian.AppendUint64(nil, uint64(max(q.Since.UnixNano(), 0)))
	}
	var lastKey []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		items, _, _ := captureBuckets(tx)
		if items == nil {
			return nil
		}
		c := items.Cursor()
		k, v := c.First()
		if start != nil {
			k, v = c.Seek(start)
		}
		for ; k != nil; k, v = c.Next() {
			if len(page.Items) == limit {
				page.Next = hex.EncodeToString(lastKey)
				break
			}
			if q.Device != "" {
				dev, _, _ := bytes.Cut(k[8:], []byte{0})
				if string(dev) != q.Device {
					continue
				}
			}
			var it fleet.CapturedItem
			if err := json.Unmarshal(v, &it); err != nil {
				return fmt.Errorf("captures: stored item %x: %w", k, err)
			}
			if !q.Since.IsZero() && it.Received.Before(q.Since) {
				continue
			}
			if !modelMatches(q.Model, it.Result.Model) {
				continue
			}
			page.Items = append(page.Items, it)
			lastKey = append(lastKey[:0], k...)
		}
		return nil
	})
	return page, err
}

// modelMatches reports whether a result's model (NAME@VERSION) is the one asked for: a bare
// NAME matches every version.
func modelMatches(want, got string) bool {
	if want == "" || want == got {
		return true
	}
	name, _, _ := strings.Cut(got, "@")
	return !strings.Contains(want, "@") && name == want
}

// PruneCaptures implements fleet.CaptureStore.
func (s *Store) PruneCaptures(ctx context.Context, keep int, before time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	limit := uint64(0)
	if !before.IsZero() {
		limit = uint64(max(before.UnixNano(), 0))
	}
	// At most pruneChunk deletions per transaction, like the views' retention, so a large
	// prune (a lowered --retain-captures-count) never holds the write lock for long.
	n := 0
	for {
		done := false
		err := s.db.Update(func(tx *bolt.Tx) error {
			items, _, err := captureBuckets(tx)
			if err != nil {
				return err
			}
			total := items.Stats().KeyN
			c := items.Cursor()
			deleted := 0
			for k, _ := c.First(); ; k, _ = c.First() {
				if k == nil || deleted == pruneChunk {
					done = k == nil
					break
				}
				old := len(k) >= 8 && binary.BigEndian.Uint64(k) < limit
				if !old && (keep <= 0 || total-deleted <= keep) {
					done = true
					break
				}
				if err := c.Delete(); err != nil {
					return err
				}
				deleted++
			}
			n += deleted
			return nil
		})
		if err != nil || done {
			return n, err
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
	}
}
