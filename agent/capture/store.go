package capture

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Store is the capture buffer: a bbolt file of its own (beside the results buffer, never in
// it, so captures can never crowd out results) holding captured items awaiting the
// controller's ack, under a quota of items and bytes. Over quota the oldest items are dropped
// and counted, and their seqs announced (CaptureBatch.DroppedThrough).
//
// Layout: bucket "items" maps seq (8-byte big-endian) to the JSON of a wire.CaptureItem;
// bucket "meta" holds the counters and the epoch, a random id drawn when the file is created.
type Store struct {
	db   *bolt.DB
	opts StoreOptions

	writeMu sync.Mutex // serializes write transactions with the stats update that follows
	mu      sync.Mutex // guards st
	st      BufferStats
}

// StoreOptions bound a Store. Zero fields take the defaults.
type StoreOptions struct {
	MaxItems int   // items kept; default DefaultMaxItems
	MaxBytes int64 // stored bytes of the items kept; default DefaultMaxBytes
}

// Defaults of StoreOptions.
const (
	DefaultMaxItems = 10_000
	DefaultMaxBytes = 16 << 20
)

// BufferStats are the capture buffer's counters.
type BufferStats struct {
	Len, Bytes        uint64 // items held and their stored size
	LastSeq, AckedSeq uint64
	// Dropped counts items discarded by the quota (or found unreadable), over the life of
	// the file; DroppedThrough is the highest seq among them.
	Dropped, DroppedThrough uint64
	Epoch                   uint64
}

var (
	bucketItems = []byte("items")
	bucketMeta  = []byte("meta")

	keyLastSeq        = []byte("last_seq")
	keyAckedSeq       = []byte("acked_seq")
	keyDropped        = []byte("dropped")
	keyDroppedThrough = []byte("dropped_through")
	keyEpoch          = []byte("epoch")
)

// OpenStore opens or creates the capture buffer at path.
func OpenStore(path string, opts StoreOptions) (*Store, error) {
	if opts.MaxItems <= 0 {
		opts.MaxItems = DefaultMaxItems
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open capture buffer %s: %w", path, err)
	}
	s := &Store{db: db, opts: opts}
	err = db.Update(func(tx *bolt.Tx) error {
		items, err := tx.CreateBucketIfNotExists(bucketItems)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if meta.Get(keyEpoch) == nil {
			// Below 2^53 so every JSON reader holds it exactly; never 0.
			var b [8]byte
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
			if err := putUint(meta, keyEpoch, binary.BigEndian.Uint64(b[:])>>11|1); err != nil {
				return err
			}
		}
		st := BufferStats{
			LastSeq: getUint(meta, keyLastSeq), AckedSeq: getUint(meta, keyAckedSeq),
			Dropped: getUint(meta, keyDropped), DroppedThrough: getUint(meta, keyDroppedThrough),
			Epoch: getUint(meta, keyEpoch),
		}
		_ = items.ForEach(func(k, v []byte) error {
			st.Len++
			st.Bytes += uint64(len(k) + len(v))
			return nil
		})
		s.st = st
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open capture buffer %s: %w", path, err)
	}
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

// Stats returns the counters as of the last commit.
func (s *Store) Stats() BufferStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// update runs fn in a write transaction on a copy of the counters and keeps them if it commits.
func (s *Store) update(fn func(tx *bolt.Tx, st *BufferStats) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	st := s.Stats()
	if err := s.db.Update(func(tx *bolt.Tx) error { return fn(tx, &st) }); err != nil {
		return err
	}
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	return nil
}

// Append numbers items (Seq is set in place once committed), stores them in one transaction
// and drops the oldest items while the quota is exceeded. An item larger than the whole byte
// quota is refused with an error and nothing is stored.
func (s *Store) Append(items []wire.CaptureItem) error {
	if len(items) == 0 {
		return nil
	}
	seqs := make([]uint64, len(items))
	err := s.update(func(tx *bolt.Tx, st *BufferStats) error {
		b, meta := tx.Bucket(bucketItems), tx.Bucket(bucketMeta)
		b.FillPercent = 0.9 // keys only grow
		for i := range items {
			it := items[i]
			it.Seq = st.LastSeq + 1
			v, err := json.Marshal(&it)
			if err != nil {
				return fmt.Errorf("encode capture item: %w", err)
			}
			size := uint64(8 + len(v))
			if size > uint64(s.opts.MaxBytes) {
				return fmt.Errorf("capture item of %d bytes is larger than the capture quota of %d bytes", size, s.opts.MaxBytes)
			}
			if err := b.Put(seqKey(it.Seq), v); err != nil {
				return err
			}
			st.LastSeq, seqs[i] = it.Seq, it.Seq
			st.Len++
			st.Bytes += size
		}
		if err := s.dropOldest(b, meta, st); err != nil {
			return err
		}
		return putUint(meta, keyLastSeq, st.LastSeq)
	})
	if err != nil {
		return fmt.Errorf("append %d captures: %w", len(items), err)
	}
	for i := range items {
		items[i].Seq = seqs[i]
	}
	return nil
}

// dropOldest deletes the oldest items until both bounds hold.
func (s *Store) dropOldest(b, meta *bolt.Bucket, st *BufferStats) error {
	over := func() bool { return st.Len > uint64(s.opts.MaxItems) || st.Bytes > uint64(s.opts.MaxBytes) }
	if !over() {
		return nil
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil && over(); k, v = c.First() {
		st.DroppedThrough = max(st.DroppedThrough, binary.BigEndian.Uint64(k))
		st.Len--
		st.Bytes -= uint64(len(k) + len(v))
		st.Dropped++
		if err := c.Delete(); err != nil {
			return err
		}
	}
	if err := putUint(meta, keyDropped, st.Dropped); err != nil {
		return err
	}
	return putUint(meta, keyDroppedThrough, st.DroppedThrough)
}

// After returns up to n items with seq > after, lowest first, stopping before their JSON
// passes maxBytes (but always returning one). Unreadable records are deleted and counted as
// dropped, so one bad record never blocks the rest.
func (s *Store) After(after uint64, n, maxBytes int) ([]wire.CaptureItem, error) {
	var (
		out  []wire.CaptureItem
		bad  [][]byte
		size int
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketItems).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < n; k, v = c.Next() {
			if len(out) > 0 && size+len(v) > maxBytes {
				break
			}
			var it wire.CaptureItem
			if len(k) != 8 || json.Unmarshal(v, &it) != nil || it.Seq != binary.BigEndian.Uint64(k) {
				bad = append(bad, append([]byte(nil), k...))
				continue
			}
			size += len(v)
			out = append(out, it)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read capture buffer: %w", err)
	}
	if len(bad) > 0 {
		err := s.update(func(tx *bolt.Tx, st *BufferStats) error {
			b := tx.Bucket(bucketItems)
			for _, k := range bad {
				if v := b.Get(k); v != nil {
					st.Len--
					st.Bytes -= uint64(len(k) + len(v))
					st.Dropped++
					if len(k) == 8 {
						st.DroppedThrough = max(st.DroppedThrough, binary.BigEndian.Uint64(k))
					}
					if err := b.Delete(k); err != nil {
						return err
					}
				}
			}
			meta := tx.Bucket(bucketMeta)
			if err := putUint(meta, keyDropped, st.Dropped); err != nil {
				return err
			}
			return putUint(meta, keyDroppedThrough, st.DroppedThrough)
		})
		if err != nil {
			return nil, fmt.Errorf("drop damaged captures: %w", err)
		}
	}
	return out, nil
}

// ErrAckBeyondLast is returned by Ack for a seq never assigned.
var ErrAckBeyondLast = errors.New("capture ack beyond the last assigned seq")

// Ack deletes every item with seq ≤ seq and returns how many it deleted. Acks are cumulative
// and idempotent.
func (s *Store) Ack(seq uint64) (int, error) {
	if seq <= s.Stats().AckedSeq {
		return 0, nil
	}
	n := 0
	err := s.update(func(tx *bolt.Tx, st *BufferStats) error {
		n = 0
		if seq > st.LastSeq {
			return fmt.Errorf("%w: ack %d, last %d", ErrAckBeyondLast, seq, st.LastSeq)
		}
		c := tx.Bucket(bucketItems).Cursor()
		for k, v := c.First(); len(k) == 8 && binary.BigEndian.Uint64(k) <= seq; k, v = c.First() {
			st.Len--
			st.Bytes -= uint64(len(k) + len(v))
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		st.AckedSeq = max(st.AckedSeq, seq)
		return putUint(tx.Bucket(bucketMeta), keyAckedSeq, st.AckedSeq)
	})
	return n, err
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func getUint(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint(b *bolt.Bucket, key []byte, v uint64) error {
	return b.Put(key, binary.BigEndian.AppendUint64(nil, v))
}
