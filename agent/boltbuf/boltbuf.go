// Package boltbuf keeps the agent's results awaiting ack, its sequence counter and its small
// state records in one bbolt file. It implements agent.Buffer and agent.StateStore.
//
// Layout: bucket "results" maps seq (8-byte big-endian, so keys sort by seq) to the JSON of a
// wire.Result; bucket "meta" holds the counters; bucket "state" holds StateStore records.
// Every write is one bbolt transaction, fsynced before it returns.
package boltbuf

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/fleet/wire"
)

var (
	bucketResults = []byte("results")
	bucketMeta    = []byte("meta")
	bucketState   = []byte("state")

	keyLastSeq        = []byte("last_seq")
	keyAckedSeq       = []byte("acked_seq")
	keyDropped        = []byte("dropped")
	keyDroppedThrough = []byte("dropped_through")
)

// Options configures a Buffer.
type Options struct {
	// MaxResults bounds the unacked results kept; beyond it the oldest are dropped.
	MaxResults int
	// LockTimeout is how long Open waits for another process to release the file.
	LockTimeout time.Duration
}

// Defaults for zero Options fields.
const (
	DefaultMaxResults  = 100_000
	DefaultLockTimeout = time.Second
)

// Buffer is a bbolt-backed agent.Buffer. It is safe for concurrent use.
type Buffer struct {
	db   *bolt.DB
	path string
	max  uint64

	writeMu sync.Mutex // serializes write transactions with the stats update that follows

	// mu guards st, the counters as of the last committed transaction.
	mu sync.Mutex
	st agent.BufferStats
}

// Open opens or creates the buffer file at path.
func Open(path string, opts Options) (*Buffer, error) {
	if opts.MaxResults <= 0 {
		opts.MaxResults = DefaultMaxResults
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("open buffer %s: locked by another process (is another agent using this data dir?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open buffer %s: %w", path, err)
	}
	b := &Buffer{db: db, path: path, max: uint64(opts.MaxResults)}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketResults, bucketMeta, bucketState} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		st, err := readStats(tx)
		b.st = st
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open buffer %s: %w", path, err)
	}
	return b, nil
}

// Close closes the file. The Buffer must not be used afterwards.
func (b *Buffer) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close buffer %s: %w", b.path, err)
	}
	return nil
}

func readStats(tx *bolt.Tx) (agent.BufferStats, error) {
	meta := tx.Bucket(bucketMeta)
	st := agent.BufferStats{
		LastSeq:        getUint(meta, keyLastSeq),
		AckedSeq:       getUint(meta, keyAckedSeq),
		Dropped:        getUint(meta, keyDropped),
		DroppedThrough: getUint(meta, keyDroppedThrough),
	}
	res := tx.Bucket(bucketResults)
	st.Len = uint64(res.Stats().KeyN)
	oldest, err := oldestTime(res)
	st.Oldest = oldest
	return st, err
}

func oldestTime(res *bolt.Bucket) (time.Time, error) {
	k, v := res.Cursor().First()
	if k == nil {
		return time.Time{}, nil
	}
	var r struct {
		Time time.Time `json:"ts"`
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return time.Time{}, fmt.Errorf("decode result seq %d: %w", binary.BigEndian.Uint64(k), err)
	}
	return r.Time, nil
}

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

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// update runs fn in a write transaction on a copy of the stats and publishes the copy only if
// the transaction commits.
func (b *Buffer) update(fn func(tx *bolt.Tx, st *agent.BufferStats) error) error {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	b.mu.Lock()
	st := b.st
	b.mu.Unlock()
	err := b.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx, &st); err != nil {
			return err
		}
		oldest, err := oldestTime(tx.Bucket(bucketResults))
		st.Oldest = oldest
		return err
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.st = st
	b.mu.Unlock()
	return nil
}

// Append implements agent.Buffer. Seqs are written into rs only once the transaction has
// committed; on error rs is unchanged.
func (b *Buffer) Append(rs []wire.Result) error {
	if len(rs) == 0 {
		return nil
	}
	var first uint64
	err := b.update(func(tx *bolt.Tx, st *agent.BufferStats) error {
		res, meta := tx.Bucket(bucketResults), tx.Bucket(bucketMeta)
		first = st.LastSeq + 1
		for i := range rs {
			r := rs[i]
			r.Seq = first + uint64(i)
			v, err := json.Marshal(&r)
			if err != nil {
				return fmt.Errorf("encode result: %w", err)
			}
			if err := res.Put(seqKey(r.Seq), v); err != nil {
				return err
			}
		}
		st.LastSeq += uint64(len(rs))
		st.Len += uint64(len(rs))
		if st.Len > b.max {
			// Drop-oldest retention: the newest results are the most useful to an operator.
			drop := st.Len - b.max
			keys := make([][]byte, 0, drop)
			c := res.Cursor()
			for k, _ := c.First(); k != nil && uint64(len(keys)) < drop; k, _ = c.Next() {
				keys = append(keys, k)
			}
			for _, k := range keys {
				if err := res.Delete(k); err != nil {
					return err
				}
			}
			st.Len -= uint64(len(keys))
			st.Dropped += uint64(len(keys))
			st.DroppedThrough = binary.BigEndian.Uint64(keys[len(keys)-1])
			if err := putUint(meta, keyDropped, st.Dropped); err != nil {
				return err
			}
			if err := putUint(meta, keyDroppedThrough, st.DroppedThrough); err != nil {
				return err
			}
		}
		return putUint(meta, keyLastSeq, st.LastSeq)
	})
	if err != nil {
		return fmt.Errorf("append %d results to %s: %w", len(rs), b.path, err)
	}
	for i := range rs {
		rs[i].Seq = first + uint64(i)
	}
	return nil
}

// Oldest implements agent.Buffer.
func (b *Buffer) Oldest(n int) ([]wire.Result, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []wire.Result
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketResults).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			var r wire.Result
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode result seq %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read buffer %s: %w", b.path, err)
	}
	return out, nil
}

// ErrAckBeyondLast is returned by Ack for a seq that was never assigned.
var ErrAckBeyondLast = errors.New("ack beyond last assigned seq")

// Ack implements agent.Buffer.
func (b *Buffer) Ack(seq uint64) error {
	b.mu.Lock()
	st := b.st
	b.mu.Unlock()
	if seq <= st.AckedSeq {
		return nil // cumulative acks: an old one says nothing new
	}
	err := b.update(func(tx *bolt.Tx, st *agent.BufferStats) error {
		if seq > st.LastSeq {
			return fmt.Errorf("%w: ack %d, last %d", ErrAckBeyondLast, seq, st.LastSeq)
		}
		if seq <= st.AckedSeq {
			return nil
		}
		res := tx.Bucket(bucketResults)
		var keys [][]byte
		c := res.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = c.Next() {
			keys = append(keys, k)
		}
		for _, k := range keys {
			if err := res.Delete(k); err != nil {
				return err
			}
		}
		st.Len -= uint64(len(keys))
		st.AckedSeq = seq
		return putUint(tx.Bucket(bucketMeta), keyAckedSeq, seq)
	})
	if err != nil {
		return fmt.Errorf("ack %d in %s: %w", seq, b.path, err)
	}
	return nil
}

// Stats implements agent.Buffer.
func (b *Buffer) Stats() agent.BufferStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

// State returns the StateStore kept in the same file.
func (b *Buffer) State() *State { return &State{b: b} }

// State is a bbolt-backed agent.StateStore sharing its Buffer's file.
type State struct{ b *Buffer }

// Get implements agent.StateStore.
func (s *State) Get(name string) ([]byte, error) {
	var out []byte
	err := s.b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketState).Get([]byte(name))
		if v == nil {
			return agent.ErrNoRecord
		}
		out = append([]byte{}, v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get state %q: %w", name, err)
	}
	return out, nil
}

// Put implements agent.StateStore.
func (s *State) Put(name string, value []byte) error {
	if name == "" {
		return errors.New("put state: empty record name")
	}
	s.b.writeMu.Lock()
	defer s.b.writeMu.Unlock()
	err := s.b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).Put([]byte(name), append([]byte{}, value...))
	})
	if err != nil {
		return fmt.Errorf("put state %q in %s: %w", name, s.b.path, err)
	}
	return nil
}
