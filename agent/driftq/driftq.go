// Package driftq is the agent's durable queue of drift summaries (docs/monitoring.md): a
// summary is written to disk when its window closes, sent, resent until the controller acks
// it (wire.DriftAck) and deleted then, so an outage or a restart loses none. It is a directory
// of one small JSON file per summary, written atomically, which an SD card that fails part way
// through a write leaves either whole or absent; a file that does not decode is deleted and
// counted. At most Max summaries wait; beyond, the oldest is dropped and counted.
package driftq

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/atomicfile"
)

// DefaultMax is the queue's capacity unless configured: with the default 1,000-inference
// windows of the sample model (about 10 minutes each), two days of outage.
const DefaultMax = 256

// maxFile bounds one queued file; a summary of wire.MaxDriftFeatures features with
// wire.MaxDriftBins bins each is well below it.
const maxFile = 1 << 20

// Queue is safe for concurrent use.
type Queue struct {
	dir string
	max int

	mu      sync.Mutex
	ids     []uint64 // queued, ascending
	next    uint64
	dropped uint64 // dropped for capacity
	damaged uint64 // files that did not decode
}

// Open opens (creating) the queue in dir holding at most capacity summaries (≤ 0: DefaultMax).
func Open(dir string, capacity int) (*Queue, error) {
	if capacity <= 0 {
		capacity = DefaultMax
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("drift queue: %w", err)
	}
	q := &Queue{dir: dir, max: capacity, next: 1}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("drift queue: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") { // a temporary file a crash left behind
			os.Remove(filepath.Join(dir, name))
			continue
		}
		id, ok := parseName(name)
		if !ok {
			continue
		}
		if _, err := q.read(id); err != nil {
			q.damaged++
			os.Remove(filepath.Join(dir, name))
			continue
		}
		q.ids = append(q.ids, id)
		q.next = max(q.next, id+1)
	}
	slices.Sort(q.ids)
	return q, nil
}

func fileName(id uint64) string { return fmt.Sprintf("%016x.json", id) }

func parseName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, ".json")
	if !ok || len(hex) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 64)
	return id, err == nil && id > 0
}

func (q *Queue) read(id uint64) (*wire.DriftSummary, error) {
	f, err := os.Open(filepath.Join(q.dir, fileName(id)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, errors.New("file too large")
	}
	s, err := wire.DecodeDriftSummary(data)
	if err != nil {
		return nil, err
	}
	if s.ID != id {
		return nil, fmt.Errorf("id %d in file %s", s.ID, fileName(id))
	}
	return s, nil
}

// Put numbers s (setting s.ID), writes it durably and queues it, dropping the oldest summary
// when the queue is full.
func (q *Queue) Put(s *wire.DriftSummary) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	s.ID = q.next
	data, err := wire.Encode(s)
	if err != nil {
		return fmt.Errorf("drift queue: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(q.dir, fileName(s.ID)), data, 0o600); err != nil {
		return fmt.Errorf("drift queue: %w", err)
	}
	q.next++
	q.ids = append(q.ids, s.ID)
	for len(q.ids) > q.max {
		os.Remove(filepath.Join(q.dir, fileName(q.ids[0])))
		q.ids = q.ids[1:]
		q.dropped++
	}
	return nil
}

// Pending returns the queued summaries, oldest first. A file that no longer decodes is
// deleted and counted.
func (q *Queue) Pending() []*wire.DriftSummary {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]*wire.DriftSummary, 0, len(q.ids))
	keep := q.ids[:0]
	for _, id := range q.ids {
		s, err := q.read(id)
		if err != nil {
			q.damaged++
			os.Remove(filepath.Join(q.dir, fileName(id)))
			continue
		}
		keep = append(keep, id)
		out = append(out, s)
	}
	q.ids = keep
	return out
}

// Ack deletes the summaries with these ids; unknown ids are ignored (acks are idempotent).
func (q *Queue) Ack(ids []uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var firstErr error
	for _, id := range ids {
		i, ok := slices.BinarySearch(q.ids, id)
		if !ok {
			continue
		}
		if err := os.Remove(filepath.Join(q.dir, fileName(id))); err != nil && !errors.Is(err, os.ErrNotExist) && firstErr == nil {
			firstErr = fmt.Errorf("drift queue: %w", err)
			continue
		}
		q.ids = slices.Delete(q.ids, i, i+1)
	}
	return firstErr
}

// Stats are the queue's figures.
type Stats struct {
	Pending int
	Dropped uint64 // summaries dropped because the queue was full (since Open)
	Damaged uint64 // files that did not decode, deleted (since Open)
}

// Stats returns the queue's figures.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{Pending: len(q.ids), Dropped: q.dropped, Damaged: q.damaged}
}
