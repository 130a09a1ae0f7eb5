// Package boltstore implements fleet.Store in a single bbolt file in the controller's data
// directory. Layout:
//
//	devices/{id}                    JSON fleet.Device
//	results/{space}/{seq uint64 BE} wire.Result with its received time (one sub-bucket per
//	                                sequence space; value layout and the view indexes: views.go)
//	watermarks/{space}              fleet.ResultStats as six uint64 BE (contiguous ack watermark);
//	                                older files hold the first four, read as Rejected 0, Advanced unknown
//	rejected/{space}/{seq uint64 BE} the one-line reason a result was rejected (fleet.Batch.Rejected)
//	epochs/{id}                     the device's current epoch, uint64 BE (absent: 0)
//	kept/{id}                       results and rejections the device has in the store, uint64 BE
//	models, packages, rollouts, desired, tags: see updates.go
//
// A sequence space is one (device, epoch): {space} is the device id for epoch 0 (agents older
// than epochs, and the layout before them, so old data reads as before) and
// "{id}/{epoch as 16 hex digits}" otherwise; '/' never occurs in a device id.
//
// Every AppendResults call is one read-write transaction, i.e. two fsyncs however many results
// it carries, so callers should batch.
//
// Quota: until devices are registered (so that a client cannot invent device ids), each device
// may keep at most Options.DeviceQuota results and rejections in the store, all epochs
// together. When a new result would pass it, the device's oldest results that its watermark
// already covers are evicted (other epochs first, then the current one, lowest seq first): the
// store is then a per-device ring of the newest results, and de-duplication still holds because
// it is by watermark. When nothing can be evicted (everything kept lies above the watermark:
// only a client sending seqs it never fills does that) new results are refused, counted in
// fleet.Appended.OverQuota and not acked. Files written before the quota start counting at 0.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// FileName is the store's file inside the data directory.
const FileName = "controller.db"

var (
	bucketDevices    = []byte("devices")
	bucketResults    = []byte("results")
	bucketWatermarks = []byte("watermarks")
	bucketEpochs     = []byte("epochs")
	bucketRejected   = []byte("rejected")
	bucketKept       = []byte("kept")
)

// DefaultDeviceQuota is the default Options.DeviceQuota: about 130 MB of store per device at
// the agent's usual result size, 11 hours of a device making 25 results a second.
const DefaultDeviceQuota = 1_000_000

// evictChunk is how many results are evicted at once when a device reaches its quota, so the
// work is done once per chunk rather than once per result.
const evictChunk = 1024

// spaceKey names the sequence space (device, epoch) in the results and watermarks buckets.
func spaceKey(device string, epoch uint64) []byte {
	if epoch == 0 {
		return []byte(device)
	}
	return fmt.Appendf(nil, "%s/%016x", device, epoch)
}

// currentEpoch is device's current epoch, 0 when none was recorded.
func currentEpoch(tx *bolt.Tx, device string) uint64 {
	v := tx.Bucket(bucketEpochs).Get([]byte(device))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// Options configure Open.
type Options struct {
	// LockTimeout bounds the wait for bbolt's file lock (one process per file). Default 1s.
	LockTimeout time.Duration
	// DeviceQuota is the most results (and rejections) one device keeps in the store; see the
	// package comment. Default DefaultDeviceQuota.
	DeviceQuota uint64
}

// Store is a fleet.Store backed by bbolt.
type Store struct {
	db    *bolt.DB
	quota uint64
}

var _ fleet.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.DeviceQuota == 0 {
		opts.DeviceQuota = DefaultDeviceQuota
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: locked by another process (is another controller running?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		names := append([][]byte{bucketDevices, bucketResults, bucketWatermarks, bucketEpochs, bucketRejected, bucketKept}, updateBuckets...)
		for _, name := range append(names, viewBuckets...) {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return migrateViews(tx, time.Now())
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &Store{db: db, quota: opts.DeviceQuota}, nil
}

// Path is the store's file.
func (s *Store) Path() string { return s.db.Path() }

// Close closes the bbolt file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// PutDevices implements fleet.Store.
func (s *Store) PutDevices(_ context.Context, devices []fleet.Device) error {
	for _, d := range devices {
		if err := wire.ValidDeviceID(d.ID); err != nil {
			return fmt.Errorf("put device: %w", err)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		for _, d := range devices {
			v, err := json.Marshal(d)
			if err != nil {
				return fmt.Errorf("encode device %s: %w", d.ID, err)
			}
			if err := b.Put([]byte(d.ID), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put devices: %w", err)
	}
	return nil
}

// AddDevice implements fleet.Store.
func (s *Store) AddDevice(_ context.Context, id string) (bool, error) {
	if err := wire.ValidDeviceID(id); err != nil {
		return false, fmt.Errorf("add device: %w", err)
	}
	added := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		if b.Get([]byte(id)) != nil {
			return nil
		}
		v, err := json.Marshal(fleet.Device{ID: id})
		if err != nil {
			return err
		}
		added = true
		return b.Put([]byte(id), v)
	})
	if err != nil {
		return false, fmt.Errorf("add device %s: %w", id, err)
	}
	return added, nil
}

// Devices implements fleet.Store.
func (s *Store) Devices(_ context.Context) ([]fleet.Device, error) {
	var out []fleet.Device
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			var d fleet.Device
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode device %s: %w", k, err)
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return out, nil
}

// AppendResults implements fleet.Store.
func (s *Store) AppendResults(_ context.Context, batches []fleet.Batch) ([]fleet.Appended, error) {
	if err := fleet.ValidateBatches(batches); err != nil {
		return nil, err
	}
	out := make([]fleet.Appended, 0, len(batches))
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = out[:0] // bbolt does not retry, but keep the closure idempotent anyway
		v := newViewTx(tx)
		for _, b := range batches {
			a, err := s.appendBatch(tx, v, b)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return v.flush()
	})
	if err != nil {
		return nil, fmt.Errorf("append results: %w", err)
	}
	return out, nil
}

func (s *Store) appendBatch(tx *bolt.Tx, views *viewTx, b fleet.Batch) (fleet.Appended, error) {
	a := fleet.Appended{Device: b.Device}
	at := b.Received
	if at.IsZero() {
		at = time.Now()
	}
	id := spaceKey(b.Device, b.Epoch)
	wm := tx.Bucket(bucketWatermarks)
	known := wm.Get(id) != nil
	if !known {
		// A sequence space not seen before: the device's first, or a new one after its data
		// directory was wiped. It becomes current; the old spaces and their results stay.
		cur := currentEpoch(tx, b.Device)
		old := wm.Get(spaceKey(b.Device, cur)) != nil
		a.Restarted = old && cur != b.Epoch
		if err := tx.Bucket(bucketEpochs).Put([]byte(b.Device), binary.BigEndian.AppendUint64(nil, b.Epoch)); err != nil {
			return a, fmt.Errorf("put epoch %s: %w", b.Device, err)
		}
	}
	rb, err := tx.Bucket(bucketResults).CreateBucketIfNotExists(id)
	if err != nil {
		return a, fmt.Errorf("results bucket %s: %w", id, err)
	}
	// Seqs arrive mostly in increasing order, so pack pages fuller than the 50% default.
	rb.FillPercent = 0.9
	jb, err := tx.Bucket(bucketRejected).CreateBucketIfNotExists(id)
	if err != nil {
		return a, fmt.Errorf("rejected bucket %s: %w", id, err)
	}
	st, err := decodeStats(wm.Get(id))
	if err != nil {
		return a, fmt.Errorf("watermark %s: %w", id, err)
	}
	st.Epoch = b.Epoch
	kept := getUint(tx.Bucket(bucketKept), b.Device)
	contiguous0 := st.Contiguous

	// decided reports whether seq already has its outcome: below the watermark, stored or
	// rejected.
	var key [8]byte
	decided := func(seq uint64) bool {
		binary.BigEndian.PutUint64(key[:], seq)
		return seq <= st.Contiguous || rb.Get(key[:]) != nil || jb.Get(key[:]) != nil
	}
	// room makes space under the quota for one more entry, evicting if it must.
	room := func() (bool, error) {
		if kept < s.quota {
			return true, nil
		}
		n, err := s.evict(tx, b.Device, b.Epoch, &st, evictChunk)
		kept -= n
		return kept < s.quota, err
	}
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
		v, err := encodeResult(&r, at)
		if err != nil {
			return a, fmt.Errorf("encode result %s/%d: %w", b.Device, r.Seq, err)
		}
		binary.BigEndian.PutUint64(key[:], r.Seq)
		if err := rb.Put(key[:], v); err != nil {
			return a, fmt.Errorf("put result %s/%d: %w", b.Device, r.Seq, err)
		}
		if err := views.stored(b.Device, b.Epoch, &r, at); err != nil {
			return a, fmt.Errorf("index result %s/%d: %w", b.Device, r.Seq, err)
		}
		kept++
		a.Stored++
	}
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
		binary.BigEndian.PutUint64(key[:], j.Seq)
		if err := jb.Put(key[:], []byte(j.Reason)); err != nil {
			return a, fmt.Errorf("put rejection %s/%d: %w", b.Device, j.Seq, err)
		}
		kept++
		a.Rejected++
	}

	var first uint64
	if len(b.Results) > 0 {
		first = b.Results[0].Seq
	}
	if len(b.Rejected) > 0 && (first == 0 || b.Rejected[0].Seq < first) {
		first = b.Rejected[0].Seq
	}
	if dt := fleet.PlausibleDrop(st, known, b.DroppedThrough, first, at); dt > st.Contiguous {
		// Seqs in (Contiguous, dt] that are absent were dropped by the device. Count the
		// present ones with cursors instead of probing every seq: the range can be millions
		// wide after a long outage.
		present := countRange(rb, st.Contiguous+1, dt) + countRange(jb, st.Contiguous+1, dt)
		a.Dropped = dt - st.Contiguous - present
		st.Dropped += a.Dropped
		st.Contiguous = dt
	} else if b.DroppedThrough > st.Contiguous {
		a.DropRefused = true
	}
	for decided(st.Contiguous + 1) {
		st.Contiguous++
	}
	if st.Contiguous != contiguous0 || !known {
		// A new space counts from when it was first seen, so a watermark that never moves
		// does not leave DroppedThrough unbounded.
		st.Advanced = at
	}
	st.Stored += uint64(a.Stored)
	st.Duplicates += uint64(a.Duplicates)
	st.Rejected += uint64(a.Rejected)
	if err := wm.Put(id, encodeStats(st)); err != nil {
		return a, fmt.Errorf("put watermark %s: %w", b.Device, err)
	}
	if err := tx.Bucket(bucketKept).Put([]byte(b.Device), binary.BigEndian.AppendUint64(nil, kept)); err != nil {
		return a, fmt.Errorf("put kept %s: %w", b.Device, err)
	}
	a.Totals = st
	return a, nil
}

// countRange counts b's keys in [from, to].
func countRange(b *bolt.Bucket, from, to uint64) uint64 {
	var n uint64
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], from)
	c := b.Cursor()
	for k, _ := c.Seek(key[:]); k != nil && binary.BigEndian.Uint64(k) <= to; k, _ = c.Next() {
		n++
	}
	return n
}

// evict deletes up to n of device's oldest results that a watermark covers, from the spaces
// other than the current one (epoch cur, whose stats are *cur and are written by the caller)
// first, and returns how many went.
func (s *Store) evict(tx *bolt.Tx, device string, epoch uint64, cur *fleet.ResultStats, n uint64) (uint64, error) {
	results := tx.Bucket(bucketResults)
	var spaces [][]byte
	if results.Bucket([]byte(device)) != nil {
		spaces = append(spaces, []byte(device))
	}
	prefix := []byte(device + "/")
	c := results.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		spaces = append(spaces, bytes.Clone(k))
	}
	curKey := spaceKey(device, epoch)
	slices.SortStableFunc(spaces, func(a, b []byte) int {
		// The current space last; the rest in key order.
		return cmpBool(bytes.Equal(a, curKey), bytes.Equal(b, curKey))
	})
	var gone uint64
	for _, sp := range spaces {
		if gone == n {
			break
		}
		limit := cur.Contiguous
		if !bytes.Equal(sp, curKey) {
			st, err := decodeStats(tx.Bucket(bucketWatermarks).Get(sp))
			if err != nil {
				return gone, fmt.Errorf("watermark %s: %w", sp, err)
			}
			limit = st.Contiguous
		}
		_, spEpoch, err := parseSpace(sp)
		if err != nil {
			return gone, fmt.Errorf("results space %q: %w", sp, err)
		}
		rb := results.Bucket(sp)
		rc := rb.Cursor()
		for k, v := rc.First(); k != nil && gone < n && binary.BigEndian.Uint64(k) <= limit; k, v = rc.First() {
			if err := unindex(tx, device, spEpoch, binary.BigEndian.Uint64(k), v); err != nil {
				return gone, err
			}
			if err := rc.Delete(); err != nil {
				return gone, fmt.Errorf("evict %s/%d: %w", sp, binary.BigEndian.Uint64(k), err)
			}
			gone++
		}
	}
	return gone, nil
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// getUint reads a uint64 BE value, 0 when absent or malformed.
func getUint(b *bolt.Bucket, key string) uint64 {
	v := b.Get([]byte(key))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// ResultStats implements fleet.Store.
func (s *Store) ResultStats(_ context.Context, device string) (fleet.ResultStats, error) {
	var st fleet.ResultStats
	err := s.db.View(func(tx *bolt.Tx) error {
		epoch := currentEpoch(tx, device)
		var err error
		st, err = decodeStats(tx.Bucket(bucketWatermarks).Get(spaceKey(device, epoch)))
		st.Epoch = epoch
		return err
	})
	if err != nil {
		return st, fmt.Errorf("result stats %s: %w", device, err)
	}
	return st, nil
}

// Results implements fleet.Store.
func (s *Store) Results(ctx context.Context, device string, after uint64, limit int) ([]wire.Result, error) {
	return s.results(ctx, device, nil, after, limit)
}

// EpochResults implements fleet.Store.
func (s *Store) EpochResults(ctx context.Context, device string, epoch, after uint64, limit int) ([]wire.Result, error) {
	return s.results(ctx, device, &epoch, after, limit)
}

// results reads the given epoch of device, or its current one when epoch is nil.
func (s *Store) results(_ context.Context, device string, epoch *uint64, after uint64, limit int) ([]wire.Result, error) {
	var out []wire.Result
	if limit <= 0 || after == ^uint64(0) {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		e := currentEpoch(tx, device)
		if epoch != nil {
			e = *epoch
		}
		rb := tx.Bucket(bucketResults).Bucket(spaceKey(device, e))
		if rb == nil {
			return nil
		}
		var key [8]byte
		binary.BigEndian.PutUint64(key[:], after+1)
		c := rb.Cursor()
		for k, v := c.Seek(key[:]); k != nil && len(out) < limit; k, v = c.Next() {
			r, _, err := decodeResult(v)
			if err != nil {
				return fmt.Errorf("decode result %s/%d: %w", device, binary.BigEndian.Uint64(k), err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read results %s: %w", device, err)
	}
	return out, nil
}

func encodeStats(st fleet.ResultStats) []byte {
	b := make([]byte, 48)
	binary.BigEndian.PutUint64(b[0:], st.Stored)
	binary.BigEndian.PutUint64(b[8:], st.Duplicates)
	binary.BigEndian.PutUint64(b[16:], st.Dropped)
	binary.BigEndian.PutUint64(b[24:], st.Contiguous)
	binary.BigEndian.PutUint64(b[32:], st.Rejected)
	var adv int64
	if !st.Advanced.IsZero() {
		adv = st.Advanced.UnixNano()
	}
	binary.BigEndian.PutUint64(b[40:], uint64(adv))
	return b
}

// decodeStats reads encodeStats' layout, or the older 32-byte one; nil (unknown device) is all
// zero.
func decodeStats(b []byte) (fleet.ResultStats, error) {
	if b == nil {
		return fleet.ResultStats{}, nil
	}
	if len(b) != 32 && len(b) != 48 {
		return fleet.ResultStats{}, fmt.Errorf("corrupt watermark record: %d bytes, want 32 or 48", len(b))
	}
	st := fleet.ResultStats{
		Stored:     binary.BigEndian.Uint64(b[0:]),
		Duplicates: binary.BigEndian.Uint64(b[8:]),
		Dropped:    binary.BigEndian.Uint64(b[16:]),
		Contiguous: binary.BigEndian.Uint64(b[24:]),
	}
	if len(b) == 48 {
		st.Rejected = binary.BigEndian.Uint64(b[32:])
		if adv := int64(binary.BigEndian.Uint64(b[40:])); adv != 0 {
			st.Advanced = time.Unix(0, adv)
		}
	}
	return st, nil
}
