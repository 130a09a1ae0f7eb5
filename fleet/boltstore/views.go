package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// View layout (fleet.ViewStore):
//
//	results/{space}/{seq}        resultTag, received, result time (int64 BE each), JSON wire.Result;
//	                             a value starting with '{' is a result stored before the views
//	                             (no received time)
//	rtime/{device}/{t}{epoch}{seq}   received (8 bytes): index by result time for QueryResults
//	rrecv/{received}{epoch}{seq}{device}  result time (8 bytes): index by received time for PruneResults
//	feedback/{space}/{seq}       JSON fleet.Feedback
//	fbindex/{t}{epoch}{seq}{device}  empty: labelled results by result time
//	outputs/{device}/m{model}/{start}  JSON fleet.OutputBucket
//	health/{device}/{start}      JSON fleet.HealthPoint
//	drift/{device}/{model}\x00{start}{window}  received (8 bytes), JSON fleet.DriftRecord
//	meta/views                   "1" once results stored before the views were indexed
//
// Times in keys are sortable: Unix nanoseconds with the sign bit flipped, big-endian.
//
// Results stored before this layout have no received time. Open indexes them once, taking
// their result time (device clock, never later than the migration) as their received time:
// retention then counts from when they were produced, the best estimate there is, and they
// read back with a zero Received. Their outputs are summarised by the same migration.
var (
	bucketRTime    = []byte("rtime")
	bucketRRecv    = []byte("rrecv")
	bucketFeedback = []byte("feedback")
	bucketFBIndex  = []byte("fbindex")
	bucketOutputs  = []byte("outputs")
	bucketHealth   = []byte("health")
	bucketDrift    = []byte("drift")
	bucketMeta     = []byte("meta")
	viewBuckets    = [][]byte{bucketRTime, bucketRRecv, bucketFeedback, bucketFBIndex, bucketOutputs, bucketHealth, bucketDrift, bucketMeta}
	metaViews      = []byte("views")
)

// resultTag starts a result value written with its received time; JSON never starts with it.
const resultTag = 0x01

// pruneChunk is the most entries one prune transaction deletes, so retention never holds the
// write lock long enough to stall ingest.
const pruneChunk = 4096

func sortTime(t time.Time) uint64 { return uint64(t.UnixNano()) ^ 1<<63 }

func putU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// encodeResult is a result value: tag, received, result time, JSON.
func encodeResult(r *wire.Result, received time.Time) ([]byte, error) {
	j, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	v := make([]byte, 0, 17+len(j))
	v = append(v, resultTag)
	v = putU64(v, uint64(received.UnixNano()))
	v = putU64(v, sortTime(r.Time))
	return append(v, j...), nil
}

// decodeResult reads encodeResult's layout or the older plain JSON (received zero).
func decodeResult(v []byte) (wire.Result, time.Time, error) {
	var r wire.Result
	var recv time.Time
	if len(v) > 0 && v[0] == resultTag {
		if len(v) < 17 {
			return r, recv, fmt.Errorf("corrupt result record: %d bytes", len(v))
		}
		recv = time.Unix(0, int64(binary.BigEndian.Uint64(v[1:]))).UTC()
		v = v[17:]
	}
	err := json.Unmarshal(v, &r)
	return r, recv, err
}

// resultTime is the result time of a stored value, decoding JSON only for old values.
func resultTime(v []byte) (uint64, error) {
	if len(v) >= 17 && v[0] == resultTag {
		return binary.BigEndian.Uint64(v[9:]), nil
	}
	r, _, err := decodeResult(v)
	return sortTime(r.Time), err
}

// parseSpace splits a results bucket key into device and epoch.
func parseSpace(k []byte) (string, uint64, error) {
	dev, ep, ok := strings.Cut(string(k), "/")
	if !ok {
		return dev, 0, nil
	}
	e, err := strconv.ParseUint(ep, 16, 64)
	return dev, e, err
}

func rtimeKey(t uint64, epoch, seq uint64) []byte {
	return putU64(putU64(putU64(make([]byte, 0, 24), t), epoch), seq)
}

func rrecvKey(recv time.Time, epoch, seq uint64, device string) []byte {
	k := putU64(putU64(putU64(make([]byte, 0, 24+len(device)), uint64(recv.UnixNano())), epoch), seq)
	return append(k, device...)
}

func fbKey(t uint64, epoch, seq uint64, device string) []byte {
	return append(rtimeKey(t, epoch, seq), device...)
}

// viewTx is the per-transaction state AppendResults uses to keep the views: output buckets are
// loaded once, updated in memory and written once per call.
type viewTx struct {
	tx      *bolt.Tx
	buckets map[fleet.BucketKey]*fleet.OutputBucket
	rtime   map[string]*bolt.Bucket // per-device time index buckets opened in this transaction
	rrecv   *bolt.Bucket
}

func newViewTx(tx *bolt.Tx) *viewTx {
	rrecv := tx.Bucket(bucketRRecv)
	// Keys grow with the clock: pack pages fuller than the 50% default.
	rrecv.FillPercent = 0.9
	return &viewTx{tx: tx, buckets: map[fleet.BucketKey]*fleet.OutputBucket{}, rtime: map[string]*bolt.Bucket{}, rrecv: rrecv}
}

// stored indexes one newly stored result and counts it into its output bucket.
func (v *viewTx) stored(device string, epoch uint64, r *wire.Result, recv time.Time) error {
	t := sortTime(r.Time)
	db := v.rtime[device]
	if db == nil {
		var err error
		if db, err = v.tx.Bucket(bucketRTime).CreateBucketIfNotExists([]byte(device)); err != nil {
			return err
		}
		db.FillPercent = 0.9 // result times mostly grow too
		v.rtime[device] = db
	}
	if err := db.Put(rtimeKey(t, epoch, r.Seq), putU64(nil, uint64(recv.UnixNano()))); err != nil {
		return err
	}
	if err := v.rrecv.Put(rrecvKey(recv, epoch, r.Seq, device), putU64(nil, t)); err != nil {
		return err
	}
	var err error
	key := fleet.BucketKey{Device: device, Model: r.Model, Start: fleet.SummaryStart(r.Time)}
	b := v.buckets[key]
	if b == nil {
		b, err = loadOutputBucket(v.tx, key)
		if err != nil {
			return err
		}
		v.buckets[key] = b
	}
	b.Add(r)
	return nil
}

func outputsModelBucket(tx *bolt.Tx, device, model string, create bool) (*bolt.Bucket, error) {
	name := []byte("m" + model)
	if !create {
		db := tx.Bucket(bucketOutputs).Bucket([]byte(device))
		if db == nil {
			return nil, nil
		}
		return db.Bucket(name), nil
	}
	db, err := tx.Bucket(bucketOutputs).CreateBucketIfNotExists([]byte(device))
	if err != nil {
		return nil, err
	}
	return db.CreateBucketIfNotExists(name)
}

func loadOutputBucket(tx *bolt.Tx, key fleet.BucketKey) (*fleet.OutputBucket, error) {
	b := &fleet.OutputBucket{Device: key.Device, Model: key.Model, Start: key.Start}
	mb, err := outputsModelBucket(tx, key.Device, key.Model, false)
	if err != nil || mb == nil {
		return b, err
	}
	if v := mb.Get(putU64(nil, sortTime(key.Start))); v != nil {
		if err := json.Unmarshal(v, b); err != nil {
			return nil, fmt.Errorf("decode output bucket %s/%s/%s: %w", key.Device, key.Model, key.Start.Format(time.RFC3339), err)
		}
	}
	return b, nil
}

// flush writes the output buckets touched.
func (v *viewTx) flush() error {
	for key, b := range v.buckets {
		mb, err := outputsModelBucket(v.tx, key.Device, key.Model, true)
		if err != nil {
			return fmt.Errorf("output bucket %s/%s: %w", key.Device, key.Model, err)
		}
		j, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("encode output bucket: %w", err)
		}
		if err := mb.Put(putU64(nil, sortTime(key.Start)), j); err != nil {
			return err
		}
	}
	clear(v.buckets)
	return nil
}

// unindex removes what the views keep about a result being deleted (evicted or pruned): its
// time indexes and its feedback. Its output bucket keeps counting it: summaries outlive results.
func unindex(tx *bolt.Tx, device string, epoch, seq uint64, v []byte) error {
	t, err := resultTime(v)
	if err != nil {
		return fmt.Errorf("result %s/%d/%d: %w", device, epoch, seq, err)
	}
	if db := tx.Bucket(bucketRTime).Bucket([]byte(device)); db != nil {
		k := rtimeKey(t, epoch, seq)
		if rv := db.Get(k); len(rv) == 8 {
			recv := time.Unix(0, int64(binary.BigEndian.Uint64(rv)))
			if err := tx.Bucket(bucketRRecv).Delete(rrecvKey(recv, epoch, seq, device)); err != nil {
				return err
			}
		}
		if err := db.Delete(k); err != nil {
			return err
		}
	}
	if fb := tx.Bucket(bucketFeedback).Bucket(spaceKey(device, epoch)); fb != nil {
		if fb.Get(putU64(nil, seq)) != nil {
			if err := fb.Delete(putU64(nil, seq)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketFBIndex).Delete(fbKey(t, epoch, seq, device)); err != nil {
				return err
			}
		}
	}
	return nil
}

// migrateViews indexes and summarises results stored before the views existed (see the layout
// comment). It runs once, in Open's transaction.
func migrateViews(tx *bolt.Tx, now time.Time) error {
	meta := tx.Bucket(bucketMeta)
	if meta.Get(metaViews) != nil {
		return nil
	}
	v := newViewTx(tx)
	var spaces [][]byte
	err := tx.Bucket(bucketResults).ForEach(func(k, _ []byte) error {
		spaces = append(spaces, bytes.Clone(k))
		return nil
	})
	if err != nil {
		return err
	}
	for _, sp := range spaces {
		device, epoch, err := parseSpace(sp)
		if err != nil {
			return fmt.Errorf("results space %q: %w", sp, err)
		}
		rb := tx.Bucket(bucketResults).Bucket(sp)
		if rb == nil {
			continue
		}
		err = rb.ForEach(func(k, val []byte) error {
			r, recv, err := decodeResult(val)
			if err != nil {
				return fmt.Errorf("decode result %s/%d: %w", sp, binary.BigEndian.Uint64(k), err)
			}
			if recv.IsZero() {
				recv = r.Time
				if recv.After(now) || recv.IsZero() {
					recv = now
				}
			}
			return v.stored(device, epoch, &r, recv)
		})
		if err != nil {
			return err
		}
		if err := v.flush(); err != nil {
			return err
		}
	}
	return meta.Put(metaViews, []byte("1"))
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return fleet.DefaultResultLimit
	case n > fleet.MaxResultLimit:
		return fleet.MaxResultLimit
	}
	return n
}

// QueryResults implements fleet.ViewStore.
func (s *Store) QueryResults(_ context.Context, q fleet.ResultQuery) ([]fleet.StoredResult, error) {
	limit := clampLimit(q.Limit)
	out := []fleet.StoredResult{}
	err := s.db.View(func(tx *bolt.Tx) error {
		db := tx.Bucket(bucketRTime).Bucket([]byte(q.Device))
		if db == nil {
			return nil
		}
		c := db.Cursor()
		var k []byte
		if q.Until.IsZero() {
			k, _ = c.Last()
		} else if k, _ = c.Seek(putU64(nil, sortTime(q.Until))); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		since := uint64(0)
		if !q.Since.IsZero() {
			since = sortTime(q.Since)
		}
		for ; k != nil && len(out) < limit; k, _ = c.Prev() {
			if len(k) != 24 {
				return fmt.Errorf("corrupt result index of %s", q.Device)
			}
			t := binary.BigEndian.Uint64(k)
			if t < since {
				break
			}
			if !q.Until.IsZero() && t >= sortTime(q.Until) {
				continue
			}
			epoch, seq := binary.BigEndian.Uint64(k[8:]), binary.BigEndian.Uint64(k[16:])
			sr, ok, err := storedResult(tx, q.Device, epoch, seq)
			if err != nil {
				return err
			}
			if !ok || (q.EventsOnly && !sr.Result.Event) {
				continue
			}
			out = append(out, sr)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("query results %s: %w", q.Device, err)
	}
	return out, nil
}

// storedResult reads one result with its feedback; ok is false when it is not stored.
func storedResult(tx *bolt.Tx, device string, epoch, seq uint64) (fleet.StoredResult, bool, error) {
	sr := fleet.StoredResult{Device: device, Epoch: epoch}
	sp := spaceKey(device, epoch)
	rb := tx.Bucket(bucketResults).Bucket(sp)
	if rb == nil {
		return sr, false, nil
	}
	v := rb.Get(putU64(nil, seq))
	if v == nil {
		return sr, false, nil
	}
	var err error
	if sr.Result, sr.Received, err = decodeResult(v); err != nil {
		return sr, false, fmt.Errorf("decode result %s/%d: %w", sp, seq, err)
	}
	if fb := tx.Bucket(bucketFeedback).Bucket(sp); fb != nil {
		if fv := fb.Get(putU64(nil, seq)); fv != nil {
			var f fleet.Feedback
			if err := json.Unmarshal(fv, &f); err != nil {
				return sr, false, fmt.Errorf("decode feedback %s/%d: %w", sp, seq, err)
			}
			sr.Feedback = &f
		}
	}
	return sr, true, nil
}

// PruneResults implements fleet.ViewStore. It deletes in chunks of pruneChunk, one
// transaction each, so ingest interleaves with a large prune.
func (s *Store) PruneResults(ctx context.Context, before time.Time) (int, error) {
	total := 0
	cut := uint64(before.UnixNano())
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			n = 0
			kept := map[string]uint64{}
			c := tx.Bucket(bucketRRecv).Cursor()
			var del [][]byte
			for k, _ := c.First(); k != nil && len(del) < pruneChunk; k, _ = c.Next() {
				if len(k) < 24 || binary.BigEndian.Uint64(k) >= cut {
					break
				}
				del = append(del, bytes.Clone(k))
			}
			for _, k := range del {
				epoch, seq, device := binary.BigEndian.Uint64(k[8:]), binary.BigEndian.Uint64(k[16:]), string(k[24:])
				rb := tx.Bucket(bucketResults).Bucket(spaceKey(device, epoch))
				var v []byte
				if rb != nil {
					v = rb.Get(putU64(nil, seq))
				}
				if v == nil {
					// An index entry without its result: drop it.
					if err := tx.Bucket(bucketRRecv).Delete(k); err != nil {
						return err
					}
					continue
				}
				if err := unindex(tx, device, epoch, seq, v); err != nil {
					return err
				}
				if err := rb.Delete(putU64(nil, seq)); err != nil {
					return err
				}
				if _, ok := kept[device]; !ok {
					kept[device] = getUint(tx.Bucket(bucketKept), device)
				}
				if kept[device] > 0 {
					kept[device]--
				}
				n++
			}
			for d, k := range kept {
				if err := tx.Bucket(bucketKept).Put([]byte(d), putU64(nil, k)); err != nil {
					return err
				}
			}
			if len(del) == 0 {
				n = -1
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("prune results: %w", err)
		}
		if n < 0 {
			return total, nil
		}
		total += n
	}
}

// OutputSummaries implements fleet.ViewStore.
func (s *Store) OutputSummaries(_ context.Context, device string, since, until time.Time) ([]fleet.OutputBucket, error) {
	out := []fleet.OutputBucket{}
	err := s.db.View(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOutputs)
		each := func(dev []byte, db *bolt.Bucket) error {
			return db.ForEachBucket(func(m []byte) error {
				c := db.Bucket(m).Cursor()
				var k, v []byte
				if since.IsZero() {
					k, v = c.First()
				} else {
					k, v = c.Seek(putU64(nil, sortTime(since)))
				}
				for ; k != nil; k, v = c.Next() {
					if !until.IsZero() && binary.BigEndian.Uint64(k) >= sortTime(until) {
						break
					}
					var b fleet.OutputBucket
					if err := json.Unmarshal(v, &b); err != nil {
						return fmt.Errorf("decode output bucket %s/%s: %w", dev, m, err)
					}
					out = append(out, b)
				}
				return nil
			})
		}
		if device != "" {
			db := ob.Bucket([]byte(device))
			if db == nil {
				return nil
			}
			return each([]byte(device), db)
		}
		return ob.ForEachBucket(func(dev []byte) error { return each(dev, ob.Bucket(dev)) })
	})
	if err != nil {
		return nil, fmt.Errorf("output summaries: %w", err)
	}
	return out, nil
}

// pruneNested deletes, in every leaf bucket of top (depth 1: top/{a}; depth 2: top/{a}/{b}),
// the keys whose leading sortable time is before cutoff, pruneChunk per transaction.
func (s *Store) pruneNested(ctx context.Context, top []byte, depth int, before time.Time) (int, error) {
	cut := sortTime(before)
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			n = 0
			// Collect the leaf buckets first: no bucket is modified while its parent is walked.
			leaves := []*bolt.Bucket{tx.Bucket(top)}
			for range depth {
				var next []*bolt.Bucket
				for _, b := range leaves {
					var names [][]byte
					if err := b.ForEachBucket(func(k []byte) error { names = append(names, bytes.Clone(k)); return nil }); err != nil {
						return err
					}
					for _, k := range names {
						next = append(next, b.Bucket(k))
					}
				}
				leaves = next
			}
			for _, b := range leaves {
				c := b.Cursor()
				for k, _ := c.First(); k != nil && n < pruneChunk && len(k) >= 8 && binary.BigEndian.Uint64(k) < cut; k, _ = c.First() {
					if err := c.Delete(); err != nil {
						return err
					}
					n++
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("prune %s: %w", top, err)
		}
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}

// PruneSummaries implements fleet.ViewStore.
func (s *Store) PruneSummaries(ctx context.Context, before time.Time) (int, error) {
	return s.pruneNested(ctx, bucketOutputs, 2, before)
}

// PutHealth implements fleet.ViewStore.
func (s *Store) PutHealth(_ context.Context, points []fleet.HealthPoint) error {
	for _, p := range points {
		if err := wire.ValidDeviceID(p.Device); err != nil {
			return fmt.Errorf("put health: %w", err)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, p := range points {
			p.Start = p.Start.UTC()
			db, err := tx.Bucket(bucketHealth).CreateBucketIfNotExists([]byte(p.Device))
			if err != nil {
				return err
			}
			v, err := json.Marshal(p)
			if err != nil {
				return fmt.Errorf("encode health point %s: %w", p.Device, err)
			}
			if err := db.Put(putU64(nil, sortTime(p.Start)), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put health: %w", err)
	}
	return nil
}

// HealthHistory implements fleet.ViewStore.
func (s *Store) HealthHistory(_ context.Context, device string, since, until time.Time) ([]fleet.HealthPoint, error) {
	out := []fleet.HealthPoint{}
	err := s.db.View(func(tx *bolt.Tx) error {
		db := tx.Bucket(bucketHealth).Bucket([]byte(device))
		if db == nil {
			return nil
		}
		c := db.Cursor()
		var k, v []byte
		if since.IsZero() {
			k, v = c.First()
		} else {
			k, v = c.Seek(putU64(nil, sortTime(since)))
		}
		for ; k != nil; k, v = c.Next() {
			if !until.IsZero() && binary.BigEndian.Uint64(k) >= sortTime(until) {
				break
			}
			var p fleet.HealthPoint
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode health point of %s: %w", device, err)
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("health history %s: %w", device, err)
	}
	return out, nil
}

// PruneHealth implements fleet.ViewStore.
func (s *Store) PruneHealth(ctx context.Context, before time.Time) (int, error) {
	return s.pruneNested(ctx, bucketHealth, 1, before)
}

func driftKey(d *wire.DriftSummary) []byte {
	k := append([]byte(d.Model.Name+"@"+d.Model.Version), 0)
	return putU64(putU64(k, sortTime(d.Start)), d.Window)
}

// PutDrift implements fleet.ViewStore.
func (s *Store) PutDrift(_ context.Context, records []fleet.DriftRecord) error {
	for _, r := range records {
		if err := wire.ValidDeviceID(r.Summary.Device); err != nil {
			return fmt.Errorf("put drift: %w", err)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range records {
			db, err := tx.Bucket(bucketDrift).CreateBucketIfNotExists([]byte(r.Summary.Device))
			if err != nil {
				return err
			}
			j, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("encode drift record %s: %w", r.Summary.Device, err)
			}
			if err := db.Put(driftKey(&r.Summary), append(putU64(nil, uint64(r.Received.UnixNano())), j...)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put drift: %w", err)
	}
	return nil
}

// Drift implements fleet.ViewStore.
func (s *Store) Drift(_ context.Context, q fleet.DriftQuery) ([]fleet.DriftRecord, error) {
	out := []fleet.DriftRecord{}
	err := s.db.View(func(tx *bolt.Tx) error {
		top := tx.Bucket(bucketDrift)
		each := func(dev []byte, db *bolt.Bucket) error {
			return db.ForEach(func(k, v []byte) error {
				if len(v) < 8 {
					return fmt.Errorf("corrupt drift record of %s", dev)
				}
				var r fleet.DriftRecord
				if err := json.Unmarshal(v[8:], &r); err != nil {
					return fmt.Errorf("decode drift record of %s: %w", dev, err)
				}
				if q.Model != "" && q.Model != r.Summary.Model.Name && q.Model != r.Summary.Model.Name+"@"+r.Summary.Model.Version {
					return nil
				}
				if !q.Since.IsZero() && r.Summary.End.Before(q.Since) {
					return nil
				}
				out = append(out, r)
				return nil
			})
		}
		if q.Device != "" {
			db := top.Bucket([]byte(q.Device))
			if db == nil {
				return nil
			}
			return each([]byte(q.Device), db)
		}
		return top.ForEachBucket(func(dev []byte) error { return each(dev, top.Bucket(dev)) })
	})
	if err != nil {
		return nil, fmt.Errorf("drift: %w", err)
	}
	slices.SortStableFunc(out, func(a, b fleet.DriftRecord) int {
		return cmp.Or(b.Summary.End.Compare(a.Summary.End), strings.Compare(a.Summary.Device, b.Summary.Device),
			strings.Compare(a.Summary.Model.Name, b.Summary.Model.Name), strings.Compare(a.Summary.Model.Version, b.Summary.Model.Version))
	})
	if l := clampLimit(q.Limit); len(out) > l {
		out = out[:l]
	}
	return out, nil
}

// PruneDrift implements fleet.ViewStore.
func (s *Store) PruneDrift(_ context.Context, before time.Time) (int, error) {
	n := 0
	cut := before.UnixNano()
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		top := tx.Bucket(bucketDrift)
		return top.ForEachBucket(func(dev []byte) error {
			db := top.Bucket(dev)
			var del [][]byte
			err := db.ForEach(func(k, v []byte) error {
				if len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) < cut {
					del = append(del, bytes.Clone(k))
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range del {
				if err := db.Delete(k); err != nil {
					return err
				}
				n++
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("prune drift: %w", err)
	}
	return n, nil
}

// PutFeedback implements fleet.ViewStore.
func (s *Store) PutFeedback(_ context.Context, labels []fleet.Feedback) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, f := range labels {
			if err := wire.ValidDeviceID(f.Device); err != nil {
				return fmt.Errorf("feedback: %w", err)
			}
			if f.Epoch == 0 {
				f.Epoch = currentEpoch(tx, f.Device)
			}
			sp := spaceKey(f.Device, f.Epoch)
			var v []byte
			if rb := tx.Bucket(bucketResults).Bucket(sp); rb != nil {
				v = rb.Get(putU64(nil, f.Seq))
			}
			if v == nil {
				return fmt.Errorf("feedback for device %s epoch %d seq %d: result %w", f.Device, f.Epoch, f.Seq, fleet.ErrNotFound)
			}
			t, err := resultTime(v)
			if err != nil {
				return fmt.Errorf("result %s/%d: %w", sp, f.Seq, err)
			}
			if f.At.IsZero() {
				f.At = time.Now().UTC()
			}
			fb, err := tx.Bucket(bucketFeedback).CreateBucketIfNotExists(sp)
			if err != nil {
				return err
			}
			j, err := json.Marshal(f)
			if err != nil {
				return err
			}
			if err := fb.Put(putU64(nil, f.Seq), j); err != nil {
				return err
			}
			if err := tx.Bucket(bucketFBIndex).Put(fbKey(t, f.Epoch, f.Seq, f.Device), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, fleet.ErrNotFound) {
			return err
		}
		return fmt.Errorf("put feedback: %w", err)
	}
	return nil
}

// FeedbackResults implements fleet.ViewStore.
func (s *Store) FeedbackResults(_ context.Context, device string, since time.Time, limit int) ([]fleet.StoredResult, error) {
	limit = clampLimit(limit)
	out := []fleet.StoredResult{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketFBIndex).Cursor()
		floor := uint64(0)
		if !since.IsZero() {
			floor = sortTime(since)
		}
		for k, _ := c.Last(); k != nil && len(out) < limit; k, _ = c.Prev() {
			if len(k) < 24 {
				return errors.New("corrupt feedback index")
			}
			if binary.BigEndian.Uint64(k) < floor {
				break
			}
			dev := string(k[24:])
			if device != "" && dev != device {
				continue
			}
			sr, ok, err := storedResult(tx, dev, binary.BigEndian.Uint64(k[8:]), binary.BigEndian.Uint64(k[16:]))
			if err != nil {
				return err
			}
			if ok && sr.Feedback != nil {
				out = append(out, sr)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("feedback results: %w", err)
	}
	return out, nil
}
