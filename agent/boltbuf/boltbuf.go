// Package boltbuf keeps the agent's results awaiting ack, its sequence counter and its small
// state records in one bbolt file. It implements agent.Buffer and agent.StateStore.
//
// Layout: bucket "results" maps seq (8-byte big-endian, so keys sort by seq) to the JSON of a
// wire.Result (its seq is the key; the stored "seq" field is ignored); bucket "meta" holds the
// counters and the epoch; bucket "state" holds StateStore records; bucket "quarantine" keeps
// the last few records found unreadable, for an operator to inspect.
//
// Damaged storage: a record that cannot be read (a key that is not a seq, a value that is not a
// result's JSON) is moved to the quarantine as it is read, counted, and its seq announced like
// a dropped one, so one bad record never blocks the others. A file damaged so badly that bbolt
// could not open it safely is found by a check before the real open (see checkFile), moved
// aside and replaced by a fresh buffer with a new epoch. One process holds the buffer at a
// time: Open takes an exclusive lock on a ".lock" file beside it and keeps it until Close.
//
// Durability and speed: every Append is on stable storage when it returns, and concurrent
// Appends share one transaction (group commit), because bbolt pays two fsyncs per commit
// however much it carries. The buffer is bounded by result count and by bytes; when full, a
// retention policy drops results and counts every drop in the file. bbolt never shrinks its
// file, so freed pages are reused and the file is compacted (copied, renamed over, directory
// fsynced) once it is much larger than the data it holds.
package boltbuf

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
	bucketQuar    = []byte("quarantine")

	keyLastSeq        = []byte("last_seq")
	keyAckedSeq       = []byte("acked_seq")
	keyDropped        = []byte("dropped")
	keyDroppedThrough = []byte("dropped_through")
	keyEpoch          = []byte("epoch")
	keyQuarantined    = []byte("quarantined")
	keyRenewals       = []byte("epoch_renewals")
	// keyRecovered holds the note about a damaged file this one replaced until the agent has
	// announced it (ClearRecovered), so a replacement is reported even if the run that found
	// it never reached the broker.
	keyRecovered = []byte("recovered")
)

// maxQuarantine is how many quarantined records are kept; older ones are deleted (their
// count stays in the "quarantined" counter).
const maxQuarantine = 1000

// maxBadPerRead bounds the damaged records one read collects before it quarantines them.
const maxBadPerRead = 256

// Retention policies for Options.Policy.
const (
	// DropOldest discards the oldest unacked results to make room: the newest results are
	// usually the most useful to an operator. Dropped seqs are announced to the controller
	// (wire.ResultBatch.DroppedThrough), so it can ack past the gap.
	DropOldest = "drop-oldest"
	// DropNewest keeps what is buffered and discards new results that do not fit. They never
	// get a seq (Append leaves their Seq at 0), so no gap appears in the sequence.
	DropNewest = "drop-newest"
)

// Options configures a Buffer. Zero fields take the Default values.
type Options struct {
	// MaxResults bounds the unacked results kept.
	MaxResults int
	// MaxBytes bounds the stored size of the unacked results (keys plus encoded values). The
	// file itself is at most about MaxBytes/0.9 plus bbolt's fixed overhead, and is compacted
	// back towards the live size after a backlog drains.
	MaxBytes int64
	// Policy is DropOldest or DropNewest.
	Policy string
	// CompactRatio: compact once the file is larger than CompactRatio × the live bytes.
	CompactRatio float64
	// CompactMinBytes: never compact a file smaller than this.
	CompactMinBytes int64
	// CompactMaxLive: compact only while the live data is at most this large, which bounds
	// the time a compaction blocks Append (it copies the live data). The file stays bounded
	// meanwhile, by MaxBytes.
	CompactMaxLive int64
	// LockTimeout is how long Open waits for another process to release the file.
	LockTimeout time.Duration
	// Now is the clock naming a damaged file moved aside; nil is time.Now.
	Now func() time.Time
}

// Defaults for zero Options fields.
const (
	DefaultMaxResults      = 100_000
	DefaultMaxBytes        = 64 << 20
	DefaultPolicy          = DropOldest
	DefaultCompactRatio    = 2
	DefaultCompactMinBytes = 4 << 20
	DefaultCompactMaxLive  = 16 << 20
	DefaultLockTimeout     = time.Second
)

// resultsFill packs result pages: keys only ever grow, so bbolt's 50% default split would
// leave every page half empty.
const resultsFill = 0.9

// keyLen is the stored size of a key, counted in Bytes.
const keyLen = 8

// Buffer is a bbolt-backed agent.Buffer. It is safe for concurrent use.
type Buffer struct {
	path string
	opts Options

	// dbMu guards db: every transaction holds it shared; compaction, which closes and
	// reopens the file, holds it exclusively, so no transaction is open while it runs.
	dbMu sync.RWMutex
	db   *bolt.DB // nil after a failed compaction left no file open
	dead error    // why db is nil

	// writeMu serializes write transactions with the stats update that follows; the Append
	// that holds it commits every request queued so far (group commit).
	writeMu sync.Mutex
	qmu     sync.Mutex    // guards queue
	queue   []*appendReq  // Appends waiting for a commit
	compact compactCounts // guarded by writeMu

	lock      *os.File // the held ".lock" file; released by Close
	recovered string   // set when Open replaced a damaged file

	// mu guards st, the counters as of the last committed transaction.
	mu sync.Mutex
	st agent.BufferStats
}

type compactCounts struct {
	n       int
	lastErr error
}

// appendReq is one Append waiting in the group-commit queue. Its outcome fields are written
// by the writeMu holder that commits it and read by its caller after taking writeMu.
type appendReq struct {
	vals  [][]byte // encoded results, in order
	times []time.Time
	seqs  []uint64 // assigned seqs, 0 for a result dropped by DropNewest
	done  bool
	err   error
}

// Open opens or creates the buffer file at path. A new file draws a random epoch; a file made
// before epochs existed keeps epoch 0 once it holds a seq.
func Open(path string, opts Options) (*Buffer, error) {
	if opts.MaxResults <= 0 {
		opts.MaxResults = DefaultMaxResults
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	switch opts.Policy {
	case "":
		opts.Policy = DefaultPolicy
	case DropOldest, DropNewest:
	default:
		return nil, fmt.Errorf("open buffer %s: retention policy %q (want %q or %q)", path, opts.Policy, DropOldest, DropNewest)
	}
	if opts.CompactRatio <= 1 {
		opts.CompactRatio = DefaultCompactRatio
	}
	if opts.CompactMinBytes <= 0 {
		opts.CompactMinBytes = DefaultCompactMinBytes
	}
	if opts.CompactMaxLive <= 0 {
		opts.CompactMaxLive = DefaultCompactMaxLive
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// The lock comes first: everything below changes files another agent may be using.
	lock, err := acquireLock(lockPath(path), opts.LockTimeout)
	if err != nil {
		return nil, fmt.Errorf("open buffer %s: %w", path, err)
	}
	b := &Buffer{path: path, opts: opts, lock: lock}
	if err := b.open(); err != nil {
		releaseLock(lock)
		return nil, err
	}
	return b, nil
}

// open does Open's work under the lock.
func (b *Buffer) open() error {
	path := b.path
	// A compaction interrupted before its rename leaves only this temporary file behind.
	if err := os.Remove(compactPath(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open buffer %s: remove stale compaction file: %w", path, err)
	}
	// A damaged file would make bbolt panic or fault on every start: check it first, and
	// set it aside rather than lose the ability to run at all.
	if err := checkFile(path, b.opts.LockTimeout); err != nil {
		var ce *CorruptError
		if !errors.As(err, &ce) {
			return fmt.Errorf("open buffer %s: %w", path, err)
		}
		aside, mvErr := moveAside(path, b.opts.Now())
		if mvErr != nil {
			return fmt.Errorf("open buffer %s: %w; moving it aside: %w", path, err, mvErr)
		}
		b.recovered = fmt.Sprintf("%s was damaged (%v); moved aside as %s and started a fresh buffer with a new epoch",
			filepath.Base(path), ce.Err, filepath.Base(aside))
	}
	db, err := b.openDB()
	if err != nil {
		return err
	}
	b.db = db
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketResults, bucketMeta, bucketState, bucketQuar} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keyEpoch) == nil && getUint(meta, keyLastSeq) == 0 {
			e, err := newEpoch()
			if err != nil {
				return err
			}
			if err := putUint(meta, keyEpoch, e); err != nil {
				return err
			}
		}
		if b.recovered != "" {
			if err := meta.Put(keyRecovered, []byte(b.recovered)); err != nil {
				return err
			}
		}
		st, err := readStats(tx)
		b.st = st
		return err
	})
	if err != nil {
		db.Close()
		b.db = nil
		return fmt.Errorf("open buffer %s: %w", path, err)
	}
	// A file left large by an earlier backlog shrinks now rather than at the next ack.
	b.writeMu.Lock()
	b.maybeCompactLocked()
	b.writeMu.Unlock()
	return nil
}

// moveAside renames a damaged file to path.corrupt-TIMESTAMP (UTC) and syncs the directory, so
// a fresh file can take its place while the damaged one stays for inspection.
func moveAside(path string, now time.Time) (string, error) {
	aside := path + ".corrupt-" + now.UTC().Format("20060102T150405.000Z")
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	return aside, syncDir(filepath.Dir(path))
}

func (b *Buffer) openDB() (*bolt.DB, error) {
	db, err := bolt.Open(b.path, 0o600, &bolt.Options{
		Timeout: b.opts.LockTimeout,
		// Free pages are found by a scan at open instead of being written on every commit:
		// commits stay small however large the free list grows after a backlog drains.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bberrors.ErrTimeout) {
		// The lock file is held, so this is not another agent: some other program has it open.
		return nil, fmt.Errorf("open buffer %s: locked by another process", b.path)
	}
	if err != nil {
		return nil, fmt.Errorf("open buffer %s: %w", b.path, err)
	}
	return db, nil
}

// newEpoch draws a random non-zero epoch below 2^53 (exact in every JSON reader).
func newEpoch() (uint64, error) {
	var raw [8]byte
	for range 64 {
		if _, err := rand.Read(raw[:]); err != nil {
			return 0, fmt.Errorf("draw epoch: %w", err)
		}
		if e := binary.BigEndian.Uint64(raw[:]) & (1<<53 - 1); e != 0 {
			return e, nil
		}
	}
	return 0, errors.New("draw epoch: random source returned only zeros")
}

// Close closes the file and releases the lock. The Buffer must not be used afterwards.
func (b *Buffer) Close() error {
	b.dbMu.Lock()
	defer b.dbMu.Unlock()
	if b.lock != nil {
		// Released after the file is closed (deferred calls run last first).
		defer func(f *os.File) { releaseLock(f) }(b.lock)
		b.lock = nil
	}
	if b.db == nil {
		return nil
	}
	err := b.db.Close()
	b.db, b.dead = nil, errors.New("buffer closed")
	if err != nil {
		return fmt.Errorf("close buffer %s: %w", b.path, err)
	}
	return nil
}

// Epoch is the random id of this buffer's current sequence space (0 for a pre-epoch file).
func (b *Buffer) Epoch() uint64 { return b.Stats().Epoch }

// Path is the buffer's file.
func (b *Buffer) Path() string { return b.path }

// Compactions reports how many compactions ran since Open and the last one's error, if any.
func (b *Buffer) Compactions() (int, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	return b.compact.n, b.compact.lastErr
}

func readStats(tx *bolt.Tx) (agent.BufferStats, error) {
	meta := tx.Bucket(bucketMeta)
	st := agent.BufferStats{
		LastSeq:        getUint(meta, keyLastSeq),
		AckedSeq:       getUint(meta, keyAckedSeq),
		Dropped:        getUint(meta, keyDropped),
		DroppedThrough: getUint(meta, keyDroppedThrough),
		Epoch:          getUint(meta, keyEpoch),
		Quarantined:    getUint(meta, keyQuarantined),
		EpochRenewals:  getUint(meta, keyRenewals),
		Recovered:      string(meta.Get(keyRecovered)),
	}
	res := tx.Bucket(bucketResults)
	c := res.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		st.Len++
		st.Bytes += uint64(len(k) + len(v))
	}
	st.Oldest = oldestTime(res)
	return st, nil
}

// oldestTime is the time of the oldest readable result among the first few; a damaged one is
// skipped here (the read path quarantines it), never an error that would block every commit.
func oldestTime(res *bolt.Bucket) time.Time {
	c := res.Cursor()
	n := 0
	for k, v := c.First(); k != nil && n < 16; k, v = c.Next() {
		n++
		var r struct {
			Time time.Time `json:"ts"`
		}
		if _, ok := parseKey(k); ok && json.Unmarshal(v, &r) == nil {
			return r.Time
		}
	}
	return time.Time{}
}

// parseKey returns the seq a results key holds; ok is false for a damaged key.
func parseKey(k []byte) (seq uint64, ok bool) {
	if len(k) != keyLen {
		return 0, false
	}
	seq = binary.BigEndian.Uint64(k)
	return seq, seq != 0
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

// view runs fn in a read transaction.
func (b *Buffer) view(fn func(tx *bolt.Tx) error) error {
	b.dbMu.RLock()
	defer b.dbMu.RUnlock()
	if b.db == nil {
		return b.dead
	}
	return b.db.View(fn)
}

// updateLocked runs fn in a write transaction on a copy of the stats and publishes the copy
// only if the transaction commits. writeMu must be held.
func (b *Buffer) updateLocked(fn func(tx *bolt.Tx, st *agent.BufferStats) error) error {
	b.mu.Lock()
	st := b.st
	b.mu.Unlock()
	b.dbMu.RLock()
	defer b.dbMu.RUnlock()
	if b.db == nil {
		return b.dead
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx, &st); err != nil {
			return err
		}
		st.Oldest = oldestTime(tx.Bucket(bucketResults))
		return nil
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.st = st
	b.mu.Unlock()
	return nil
}

// Append implements agent.Buffer. The results are encoded first, outside any transaction;
// then whichever concurrent Append gets the write lock commits every queued request in one
// transaction, so N concurrent callers pay for one commit. Seqs are written into rs only once
// the transaction has committed; on error rs is unchanged. Under DropNewest a result that does
// not fit is counted as dropped and keeps Seq 0.
func (b *Buffer) Append(rs []wire.Result) error {
	if len(rs) == 0 {
		return nil
	}
	req := &appendReq{vals: make([][]byte, len(rs)), times: make([]time.Time, len(rs))}
	for i := range rs {
		r := rs[i]
		r.Seq = 0 // the key carries it
		v, err := json.Marshal(&r)
		if err != nil {
			return fmt.Errorf("append %d results to %s: encode result %d: %w", len(rs), b.path, i, err)
		}
		req.vals[i], req.times[i] = v, r.Time
	}
	b.qmu.Lock()
	b.queue = append(b.queue, req)
	b.qmu.Unlock()

	b.writeMu.Lock()
	if !req.done {
		b.qmu.Lock()
		group := b.queue
		b.queue = nil
		b.qmu.Unlock()
		b.commitLocked(group)
	}
	b.writeMu.Unlock()

	if req.err != nil {
		return fmt.Errorf("append %d results to %s: %w", len(rs), b.path, req.err)
	}
	for i := range rs {
		rs[i].Seq = req.seqs[i]
	}
	return nil
}

// commitLocked stores every request of group in one transaction and records the outcome in
// each. writeMu must be held.
func (b *Buffer) commitLocked(group []*appendReq) {
	err := b.updateLocked(func(tx *bolt.Tx, st *agent.BufferStats) error {
		res, meta := tx.Bucket(bucketResults), tx.Bucket(bucketMeta)
		res.FillPercent = resultsFill
		var dropped uint64
		for _, req := range group {
			req.seqs = make([]uint64, len(req.vals))
			for i, v := range req.vals {
				size := uint64(keyLen + len(v))
				if b.opts.Policy == DropNewest && !b.fits(st, size) {
					dropped++
					continue
				}
				st.LastSeq++
				if err := res.Put(seqKey(st.LastSeq), v); err != nil {
					return err
				}
				req.seqs[i] = st.LastSeq
				st.Len++
				st.Bytes += size
			}
		}
		if b.opts.Policy == DropOldest {
			n, through, err := b.dropOldest(res, st)
			if err != nil {
				return err
			}
			dropped += n
			if n > 0 {
				st.DroppedThrough = through
				if err := putUint(meta, keyDroppedThrough, through); err != nil {
					return err
				}
			}
		}
		if dropped > 0 {
			st.Dropped += dropped
			if err := putUint(meta, keyDropped, st.Dropped); err != nil {
				return err
			}
		}
		return putUint(meta, keyLastSeq, st.LastSeq)
	})
	for _, req := range group {
		req.done, req.err = true, err
	}
}

// fits reports whether one more result of size bytes stays within both bounds.
func (b *Buffer) fits(st *agent.BufferStats, size uint64) bool {
	return st.Len+1 <= uint64(b.opts.MaxResults) && st.Bytes+size <= uint64(b.opts.MaxBytes)
}

// dropOldest deletes the oldest results until both bounds hold and returns how many it
// deleted and the highest seq among them.
func (b *Buffer) dropOldest(res *bolt.Bucket, st *agent.BufferStats) (n, through uint64, err error) {
	over := func() bool { return st.Len > uint64(b.opts.MaxResults) || st.Bytes > uint64(b.opts.MaxBytes) }
	if !over() {
		return 0, 0, nil
	}
	c := res.Cursor()
	// Deleting through the cursor moves it to the next key; the loop ends when the bounds
	// hold or the bucket is empty.
	for k, v := c.First(); k != nil && over(); k, v = c.First() {
		seq, ok := parseKey(k)
		if !ok {
			if err := b.quarantineTx(res.Tx(), st, k, v, "key is not a seq"); err != nil {
				return n, through, err
			}
			continue
		}
		through = seq
		size := uint64(len(k) + len(v))
		if err := c.Delete(); err != nil {
			return n, through, err
		}
		n++
		st.Len--
		st.Bytes -= size
	}
	return n, through, nil
}

// Oldest implements agent.Buffer.
func (b *Buffer) Oldest(n int) ([]wire.Result, error) { return b.After(0, n) }

// After implements agent.Buffer: up to n unacked results with seq > after, lowest first.
func (b *Buffer) After(after uint64, n int) ([]wire.Result, error) {
	if n <= 0 || after == ^uint64(0) {
		return nil, nil
	}
	out := make([]wire.Result, 0, min(n, 1024))
	var bad []badRecord
	err := b.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketResults).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < n && len(bad) < maxBadPerRead; k, v = c.Next() {
			_, raw, reason := readRecord(k, v) // raw carries the seq
			var r wire.Result
			if reason == "" {
				if err := json.Unmarshal(raw, &r); err != nil {
					reason = "value is not a result: " + err.Error()
				}
			}
			if reason != "" {
				bad = append(bad, newBad(k, v, reason))
				continue
			}
			out = append(out, r)
		}
		return nil
	})
	if err == nil {
		err = b.quarantine(bad)
	}
	if err != nil {
		return nil, fmt.Errorf("read buffer %s: %w", b.path, err)
	}
	return out, nil
}

// readRecord checks one stored record and returns its seq and its JSON with the seq filled
// in, or why it is unreadable.
func readRecord(k, v []byte) (seq uint64, raw []byte, reason string) {
	seq, ok := parseKey(k)
	if !ok {
		return 0, nil, "key is not a seq"
	}
	raw, ok = withSeq(v, seq)
	if !ok {
		return 0, nil, "value does not start with a seq field"
	}
	if !validJSON(raw) {
		return 0, nil, "value is not valid JSON"
	}
	return seq, raw, ""
}

// badRecord is a damaged record found by a read, copied out of its transaction.
type badRecord struct {
	k, v   []byte
	reason string
}

func newBad(k, v []byte, reason string) badRecord {
	return badRecord{bytes.Clone(k), bytes.Clone(v), reason}
}

// quarantined is how a damaged record is kept in the quarantine bucket.
type quarantined struct {
	Key    []byte    `json:"key"`   // the results key as found (base64)
	Value  []byte    `json:"value"` // the stored value as found (base64)
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// quarantine moves the damaged records a read found out of the results, if they are still
// there unchanged.
func (b *Buffer) quarantine(bad []badRecord) error {
	if len(bad) == 0 {
		return nil
	}
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	err := b.updateLocked(func(tx *bolt.Tx, st *agent.BufferStats) error {
		res := tx.Bucket(bucketResults)
		for _, r := range bad {
			if v := res.Get(r.k); v == nil || !bytes.Equal(v, r.v) {
				continue // acked, dropped or quarantined meanwhile
			}
			if err := b.quarantineTx(tx, st, r.k, r.v, r.reason); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("quarantine %d damaged records: %w", len(bad), err)
	}
	return nil
}

// quarantineTx moves one damaged record from the results to the quarantine bucket inside tx,
// counts it, and announces the seqs that can no longer be sent (settleTx).
func (b *Buffer) quarantineTx(tx *bolt.Tx, st *agent.BufferStats, k, v []byte, reason string) error {
	rec, err := json.Marshal(quarantined{Key: k, Value: v, Reason: reason, At: b.opts.Now().UTC()})
	if err != nil {
		return err
	}
	size := uint64(len(k) + len(v))
	if err := tx.Bucket(bucketResults).Delete(k); err != nil {
		return err
	}
	st.Len--
	st.Bytes -= size
	q := tx.Bucket(bucketQuar)
	id, err := q.NextSequence()
	if err != nil {
		return err
	}
	if err := q.Put(seqKey(id), rec); err != nil {
		return err
	}
	if id > maxQuarantine {
		if err := q.Delete(seqKey(id - maxQuarantine)); err != nil {
			return err
		}
	}
	st.Quarantined++
	if err := putUint(tx.Bucket(bucketMeta), keyQuarantined, st.Quarantined); err != nil {
		return err
	}
	return settleTx(tx, st)
}

// settleTx raises DroppedThrough over a gap in front of the oldest held result: every seq
// below it that is not acked was discarded or quarantined and will never be sent, so saying
// so lets the controller ack past it. A gap behind held results waits until the acks reach it,
// because the results before it are not delivered yet.
func settleTx(tx *bolt.Tx, st *agent.BufferStats) error {
	first := st.LastSeq + 1
	c := tx.Bucket(bucketResults).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if seq, ok := parseKey(k); ok {
			first = seq
			break
		}
	}
	if first-1 <= max(st.AckedSeq, st.DroppedThrough) || first-1 > st.LastSeq {
		return nil
	}
	st.DroppedThrough = first - 1
	return putUint(tx.Bucket(bucketMeta), keyDroppedThrough, st.DroppedThrough)
}

// AfterRaw is After for the upload path without the decoding: it returns the JSON of up to n
// unacked results with seq > after, each exactly as wire.Result encodes it (seq included), and
// stops before their total size would pass maxBytes, though it always returns at least one.
func (b *Buffer) AfterRaw(after uint64, n, maxBytes int) (raws [][]byte, seqs []uint64, err error) {
	if n <= 0 || after == ^uint64(0) {
		return nil, nil, nil
	}
	size := 0
	var bad []badRecord
	err = b.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketResults).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(raws) < n && len(bad) < maxBadPerRead; k, v = c.Next() {
			// Checked before it goes out: one damaged record would make the controller
			// refuse the whole batch it is in, again on every resend.
			seq, raw, reason := readRecord(k, v)
			if reason != "" {
				bad = append(bad, newBad(k, v, reason))
				continue
			}
			if len(raws) > 0 && size+len(raw)+1 > maxBytes {
				break
			}
			size += len(raw) + 1
			raws, seqs = append(raws, raw), append(seqs, seq)
		}
		return nil
	})
	if err == nil {
		err = b.quarantine(bad)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read buffer %s: %w", b.path, err)
	}
	return raws, seqs, nil
}

// withSeq copies a stored value, {"seq":N,…} with N the placeholder 0 (or a seq written by an
// older version), with N replaced by seq. The copy outlives the transaction.
func withSeq(v []byte, seq uint64) ([]byte, bool) {
	const prefix = `{"seq":`
	if !bytes.HasPrefix(v, []byte(prefix)) {
		return nil, false
	}
	i := len(prefix)
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	if i == len(prefix) || i == len(v) || (v[i] != ',' && v[i] != '}') {
		return nil, false
	}
	out := make([]byte, 0, len(v)+20)
	out = append(out, prefix...)
	out = strconv.AppendUint(out, seq, 10)
	return append(out, v[i:]...), true
}

// ErrAckBeyondLast is returned by Ack for a seq that was never assigned.
var ErrAckBeyondLast = errors.New("ack beyond last assigned seq")

// Ack implements agent.Buffer. After deleting, it compacts the file if it has grown much
// larger than the data left in it.
func (b *Buffer) Ack(seq uint64) error {
	b.mu.Lock()
	st := b.st
	b.mu.Unlock()
	if seq <= st.AckedSeq {
		return nil // cumulative acks: an old one says nothing new
	}
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	err := b.updateLocked(func(tx *bolt.Tx, st *agent.BufferStats) error {
		if seq > st.LastSeq {
			return fmt.Errorf("%w: ack %d, last %d", ErrAckBeyondLast, seq, st.LastSeq)
		}
		if seq <= st.AckedSeq {
			return nil
		}
		c := tx.Bucket(bucketResults).Cursor()
		for k, v := c.First(); k != nil; k, v = c.First() {
			s, ok := parseKey(k)
			if !ok {
				if err := b.quarantineTx(tx, st, k, v, "key is not a seq"); err != nil {
					return err
				}
				continue
			}
			if s > seq {
				break
			}
			size := uint64(len(k) + len(v))
			if err := c.Delete(); err != nil {
				return err
			}
			st.Len--
			st.Bytes -= size
		}
		st.AckedSeq = seq
		if err := putUint(tx.Bucket(bucketMeta), keyAckedSeq, seq); err != nil {
			return err
		}
		return settleTx(tx, st)
	})
	if err != nil {
		return fmt.Errorf("ack %d in %s: %w", seq, b.path, err)
	}
	b.maybeCompactLocked()
	return nil
}

// RenewEpoch opens a new sequence space: it draws a new epoch and renumbers the held results
// from seq 1 in their order, with nothing acked or dropped in the new epoch yet. The agent
// calls it when the controller acks a seq this buffer never assigned, which means the file went
// back to an older state (a restored image, a lost flush) and its seqs are being reused: in
// a new epoch the controller stores the held results instead of discarding them as duplicates.
// The lifetime counters (dropped, quarantined) stay; EpochRenewals counts the renewal.
func (b *Buffer) RenewEpoch() (uint64, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	var epoch uint64
	err := b.updateLocked(func(tx *bolt.Tx, st *agent.BufferStats) error {
		e, err := newEpoch()
		for err == nil && e == st.Epoch {
			e, err = newEpoch()
		}
		if err != nil {
			return err
		}
		res, meta := tx.Bucket(bucketResults), tx.Bucket(bucketMeta)
		res.FillPercent = resultsFill
		var keys [][]byte
		c := res.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		// New keys 1, 2, … are never above the old ones (old keys ascend from at least 1),
		// so moving in ascending order never overwrites a key still to be moved.
		var n uint64
		for _, k := range keys {
			v := res.Get(k)
			if _, ok := parseKey(k); !ok {
				if err := b.quarantineTx(tx, st, k, v, "key is not a seq"); err != nil {
					return err
				}
				continue
			}
			n++
			nk := seqKey(n)
			if bytes.Equal(nk, k) {
				continue
			}
			v = bytes.Clone(v)
			if err := res.Delete(k); err != nil {
				return err
			}
			if err := res.Put(nk, v); err != nil {
				return err
			}
		}
		st.Epoch, st.LastSeq, st.AckedSeq, st.DroppedThrough = e, n, 0, 0
		st.EpochRenewals++
		for _, kv := range []struct {
			k []byte
			v uint64
		}{{keyEpoch, e}, {keyLastSeq, n}, {keyAckedSeq, 0}, {keyDroppedThrough, 0}, {keyRenewals, st.EpochRenewals}} {
			if err := putUint(meta, kv.k, kv.v); err != nil {
				return err
			}
		}
		epoch = e
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("renew epoch of %s: %w", b.path, err)
	}
	return epoch, nil
}

// ClearRecovered forgets, in the file, the note about a damaged file this one replaced: the
// agent calls it once it has announced the replacement. Stats keeps reporting the note until
// the Buffer is closed.
func (b *Buffer) ClearRecovered() error {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	err := b.updateLocked(func(tx *bolt.Tx, _ *agent.BufferStats) error {
		return tx.Bucket(bucketMeta).Delete(keyRecovered) // the stats keep their copy
	})
	if err != nil {
		return fmt.Errorf("clear recovered note in %s: %w", b.path, err)
	}
	return nil
}

// Stats implements agent.Buffer.
func (b *Buffer) Stats() agent.BufferStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

func compactPath(path string) string { return path + ".compact" }

func lockPath(path string) string { return path + ".lock" }

// maybeCompactLocked compacts when the file is past its thresholds. A failure is recorded
// (Compactions) and leaves the old file in use. writeMu must be held.
func (b *Buffer) maybeCompactLocked() {
	fi, err := os.Stat(b.path)
	if err != nil {
		return
	}
	live := int64(b.Stats().Bytes)
	size := fi.Size()
	if size < b.opts.CompactMinBytes || float64(size) <= b.opts.CompactRatio*float64(live) || live > b.opts.CompactMaxLive {
		return
	}
	b.compact.n++
	b.compact.lastErr = b.compactLocked()
}

// compactLocked copies the live data into a fresh file, fsyncs it, renames it over the
// buffer and fsyncs the directory, so a crash at any point leaves either the old or the new
// file whole. It holds dbMu exclusively: no transaction is open meanwhile. writeMu must be
// held.
func (b *Buffer) compactLocked() error {
	b.dbMu.Lock()
	defer b.dbMu.Unlock()
	if b.db == nil {
		return b.dead
	}
	tmp := compactPath(b.path)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("compact %s: %w", b.path, err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: b.opts.LockTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("compact %s: %w", b.path, err)
	}
	// Each transaction Compact commits is fsynced; 4 MiB per transaction bounds its memory.
	if err := bolt.Compact(dst, b.db, 4<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", b.path, err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", b.path, err)
	}
	if err := b.db.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: close old file: %w", b.path, err)
	}
	renameErr := os.Rename(tmp, b.path)
	if renameErr == nil {
		renameErr = syncDir(filepath.Dir(b.path))
	} else {
		os.Remove(tmp)
	}
	// Reopen whichever file is in place now: the new one, or the old one if the rename failed.
	db, err := b.openDB()
	if err != nil {
		b.db, b.dead = nil, fmt.Errorf("buffer unusable after compaction: %w", err)
		return b.dead
	}
	b.db = db
	if renameErr != nil {
		return fmt.Errorf("compact %s: %w", b.path, renameErr)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// State returns the StateStore kept in the same file.
func (b *Buffer) State() *State { return &State{b: b} }

// State is a bbolt-backed agent.StateStore sharing its Buffer's file.
type State struct{ b *Buffer }

// Get implements agent.StateStore.
func (s *State) Get(name string) ([]byte, error) {
	var out []byte
	err := s.b.view(func(tx *bolt.Tx) error {
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
	err := s.b.updateLocked(func(tx *bolt.Tx, _ *agent.BufferStats) error {
		return tx.Bucket(bucketState).Put([]byte(name), append([]byte{}, value...))
	})
	if err != nil {
		return fmt.Errorf("put state %q in %s: %w", name, s.b.path, err)
	}
	return nil
}
