// Package boltstore implements fleet.Store in a single bbolt file in the controller's data
// directory. Layout:
//
//	devices/{id}                    JSON fleet.Device
//	results/{space}/{seq uint64 BE} JSON wire.Result (one sub-bucket per sequence space)
//	watermarks/{space}              fleet.ResultStats as four uint64 BE (contiguous ack watermark)
//	epochs/{id}                     the device's current epoch, uint64 BE (absent: 0)
//	models, packages, rollouts, desired, tags: see updates.go
//
// A sequence space is one (device, epoch): {space} is the device id for epoch 0 (agents older
// than epochs, and the layout before them, so old data reads as before) and
// "{id}/{epoch as 16 hex digits}" otherwise; '/' never occurs in a device id.
//
// Every AppendResults call is one read-write transaction, i.e. two fsyncs however many results
// it carries, so callers should batch.
package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
)

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
}

// Store is a fleet.Store backed by bbolt.
type Store struct {
	db *bolt.DB
}

var _ fleet.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
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
		for _, name := range append([][]byte{bucketDevices, bucketResults, bucketWatermarks, bucketEpochs}, updateBuckets...) {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &Store{db: db}, nil
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
	for _, b := range batches {
		if err := wire.ValidDeviceID(b.Device); err != nil {
			return nil, fmt.Errorf("append results: %w", err)
		}
		for _, r := range b.Results {
			if r.Seq == 0 {
				return nil, fmt.Errorf("append results for %s: seq 0 is not a valid sequence number", b.Device)
			}
		}
	}
	out := make([]fleet.Appended, 0, len(batches))
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = out[:0] // bbolt does not retry, but keep the closure idempotent anyway
		for _, b := range batches {
			a, err := appendBatch(tx, b)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("append results: %w", err)
	}
	return out, nil
}

func appendBatch(tx *bolt.Tx, b fleet.Batch) (fleet.Appended, error) {
	a := fleet.Appended{Device: b.Device}
	id := spaceKey(b.Device, b.Epoch)
	wm := tx.Bucket(bucketWatermarks)
	if wm.Get(id) == nil {
		// A sequence space not seen before: the device's first, or a new one after its data
		// directory was wiped. It becomes current; the old spaces and their results stay.
		cur := currentEpoch(tx, b.Device)
		known := wm.Get(spaceKey(b.Device, cur)) != nil
		a.Restarted = known && cur != b.Epoch
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
	st, err := decodeStats(wm.Get(id))
	if err != nil {
		return a, fmt.Errorf("watermark %s: %w", id, err)
	}
	st.Epoch = b.Epoch

	var key [8]byte
	for _, r := range b.Results {
		binary.BigEndian.PutUint64(key[:], r.Seq)
		if r.Seq <= st.Contiguous || rb.Get(key[:]) != nil {
			a.Duplicates++
			continue
		}
		v, err := json.Marshal(r)
		if err != nil {
			return a, fmt.Errorf("encode result %s/%d: %w", b.Device, r.Seq, err)
		}
		if err := rb.Put(key[:], v); err != nil {
			return a, fmt.Errorf("put result %s/%d: %w", b.Device, r.Seq, err)
		}
		a.Stored++
	}

	c := rb.Cursor()
	if b.DroppedThrough > st.Contiguous {
		// Seqs in (Contiguous, DroppedThrough] that are absent were dropped by the device.
		// Count the present ones with the cursor instead of probing every seq: the range can
		// be millions wide after a long outage.
		var present uint64
		binary.BigEndian.PutUint64(key[:], st.Contiguous+1)
		for k, _ := c.Seek(key[:]); k != nil && binary.BigEndian.Uint64(k) <= b.DroppedThrough; k, _ = c.Next() {
			present++
		}
		a.Dropped = b.DroppedThrough - st.Contiguous - present
		st.Dropped += a.Dropped
		st.Contiguous = b.DroppedThrough
	}
	binary.BigEndian.PutUint64(key[:], st.Contiguous+1)
	for k, _ := c.Seek(key[:]); k != nil && binary.BigEndian.Uint64(k) == st.Contiguous+1; k, _ = c.Next() {
		st.Contiguous++
	}
	st.Stored += uint64(a.Stored)
	st.Duplicates += uint64(a.Duplicates)
	if err := wm.Put(id, encodeStats(st)); err != nil {
		return a, fmt.Errorf("put watermark %s: %w", b.Device, err)
	}
	a.Totals = st
	return a, nil
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
			var r wire.Result
			if err := json.Unmarshal(v, &r); err != nil {
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
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b[0:], st.Stored)
	binary.BigEndian.PutUint64(b[8:], st.Duplicates)
	binary.BigEndian.PutUint64(b[16:], st.Dropped)
	binary.BigEndian.PutUint64(b[24:], st.Contiguous)
	return b
}

// decodeStats reads encodeStats' layout; nil (unknown device) is all zero.
func decodeStats(b []byte) (fleet.ResultStats, error) {
	if b == nil {
		return fleet.ResultStats{}, nil
	}
	if len(b) != 32 {
		return fleet.ResultStats{}, fmt.Errorf("corrupt watermark record: %d bytes, want 32", len(b))
	}
	return fleet.ResultStats{
		Stored:     binary.BigEndian.Uint64(b[0:]),
		Duplicates: binary.BigEndian.Uint64(b[8:]),
		Dropped:    binary.BigEndian.Uint64(b[16:]),
		Contiguous: binary.BigEndian.Uint64(b[24:]),
	}, nil
}
