package agent_test

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/buffertest"
	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/sensortest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// fakeSource yields 1, 2, 3, … on one channel; fail, if set, decides per read (1-based) whether
// that read fails.
type fakeSource struct {
	rate  float64
	read  float64 // Info().ReadHz
	limit int     // after this many reads, Read blocks until ctx ends; 0 means no limit
	mu    sync.Mutex
	n     int
	fail  func(n int) bool
}

func (s *fakeSource) Read(ctx context.Context, dst []float32) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit > 0 && s.n >= s.limit {
		s.mu.Unlock()
		<-ctx.Done()
		s.mu.Lock()
		return time.Time{}, ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	s.n++
	if s.fail != nil && s.fail(s.n) {
		return time.Time{}, errors.New("i2c: no ack from device")
	}
	dst[0] = float32(s.n)
	return time.Now(), nil
}
func (s *fakeSource) Info() sensor.Info {
	return sensor.Info{Kind: "fake", RateHz: s.rate, ReadHz: s.read, Channels: 1}
}
func (s *fakeSource) Close() error { return nil }

func TestFakeSourceContract(t *testing.T) {
	sensortest.Run(t, func(t *testing.T) sensor.Source { return &fakeSource{rate: 500} })
}

// fakePredictor returns the last value of the (normalized) window as its score and records
// every window it saw.
type fakePredictor struct {
	spec agent.ModelSpec
	mu   sync.Mutex
	seen [][]float32
	out  [1]float32
	err  error
}

func (p *fakePredictor) Predict(w []float32) ([]float32, time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, 0, p.err
	}
	p.seen = append(p.seen, slices.Clone(w))
	p.out[0] = w[len(w)-1]
	return p.out[:], time.Duration(len(p.seen)%7+1) * time.Millisecond, nil
}
func (p *fakePredictor) Model() wire.ModelRef {
	return wire.ModelRef{Name: "fake", Version: "1", SHA256: "abc"}
}
func (p *fakePredictor) Spec() agent.ModelSpec { return p.spec }

func (p *fakePredictor) windows() [][]float32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

// memBuffer is an in-memory agent.Buffer; stores keyed by dir survive "reopen" for the
// contract suite.
type memBuffer struct {
	mu    sync.Mutex
	max   int
	epoch uint64
	rs    []wire.Result
	st    agent.BufferStats
	fail  error // Append fails with it while set
	calls int   // Append calls, failed ones included
	acks  int   // Ack calls
}

func (b *memBuffer) Append(rs []wire.Result) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.fail != nil {
		return b.fail
	}
	for i := range rs {
		b.st.LastSeq++
		rs[i].Seq = b.st.LastSeq
		b.rs = append(b.rs, rs[i])
	}
	if over := len(b.rs) - b.max; b.max > 0 && over > 0 {
		b.st.Dropped += uint64(over)
		b.st.DroppedThrough = b.rs[over-1].Seq
		b.rs = slices.Delete(b.rs, 0, over)
	}
	return nil
}

func (b *memBuffer) Oldest(n int) ([]wire.Result, error) { return b.After(0, n) }

func (b *memBuffer) After(after uint64, n int) ([]wire.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i, _ := slices.BinarySearchFunc(b.rs, after+1, func(r wire.Result, seq uint64) int { return cmp.Compare(r.Seq, seq) })
	if after == ^uint64(0) || n <= 0 {
		return nil, nil
	}
	return slices.Clone(b.rs[i:min(i+n, len(b.rs))]), nil
}

func (b *memBuffer) Ack(seq uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.acks++
	if seq > b.st.LastSeq {
		return errors.New("ack beyond last seq")
	}
	if seq <= b.st.AckedSeq {
		return nil
	}
	b.st.AckedSeq = seq
	b.rs = slices.DeleteFunc(b.rs, func(r wire.Result) bool { return r.Seq <= seq })
	return nil
}

func (b *memBuffer) Stats() agent.BufferStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	st.Len = uint64(len(b.rs))
	st.Bytes = 100 * st.Len // a stand-in size; only the contract's Len/Bytes relation is checked
	st.Epoch = b.epoch
	if len(b.rs) > 0 {
		st.Oldest = b.rs[0].Time
	}
	return st
}

func (b *memBuffer) appendCalls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

func (b *memBuffer) setFail(err error) {
	b.mu.Lock()
	b.fail = err
	b.mu.Unlock()
}

// The fake must keep the contract the real buffer keeps, or tests built on it prove nothing.
func TestMemBufferContract(t *testing.T) {
	stores := map[string]*memBuffer{}
	buffertest.Run(t, func(t *testing.T, dir string, max int) (agent.Buffer, func()) {
		b, ok := stores[dir]
		if !ok {
			b = &memBuffer{epoch: uint64(len(stores) + 1)}
			stores[dir] = b
		}
		b.max = max
		return b, func() {}
	})
}

// fakeUplink is an agent.Uplink whose "controller" stores each batch it receives and acks the
// highest contiguous seq, unless dropAck says the batch is lost.
type fakeUplink struct {
	acks chan wire.Ack

	mu         sync.Mutex
	connected  bool
	batches    []wire.ResultBatch
	compressed int // batches that came gzipped on wire.LeafResultsZ
	stored     map[space]bool
	holdAcks   chan struct{}     // if set, no acks are sent until it is closed
	contiguous map[uint64]uint64 // per epoch, like the real controller
	health     []wire.Health
	events     []wire.Event
	dropAck    func(batch int) bool    // batch is 1-based
	reject     func(seq uint64) string // a non-empty reason rejects the result in the ack
	err        error                   // reported by Err, like mqttlink.Link
}

// space names one result at the fake controller.
type space struct{ epoch, seq uint64 }

func newFakeUplink() *fakeUplink {
	return &fakeUplink{acks: make(chan wire.Ack, 1024), connected: true}
}

func (u *fakeUplink) Publish(ctx context.Context, leaf string, payload []byte, retained bool) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.connected {
		return agent.ErrNotConnected
	}
	switch leaf {
	case wire.LeafResults, wire.LeafResultsZ:
		if leaf == wire.LeafResultsZ {
			zr, err := gzip.NewReader(bytes.NewReader(payload))
			if err != nil {
				return err
			}
			if payload, err = io.ReadAll(zr); err != nil {
				return err
			}
			u.compressed++
		}
		var b wire.ResultBatch
		if err := wire.Decode(payload, &b); err != nil {
			return err
		}
		u.batches = append(u.batches, b)
		if u.dropAck != nil && u.dropAck(len(u.batches)) {
			return nil // lost on the way: the "controller" never stores it
		}
		// Like the real controller: store, then ack the highest contiguous seq.
		if u.stored == nil {
			u.stored = map[space]bool{}
		}
		if u.contiguous == nil {
			u.contiguous = map[uint64]uint64{}
		}
		var rejected []wire.Rejected
		for _, r := range b.Results {
			u.stored[space{b.Epoch, r.Seq}] = true
			if u.reject != nil {
				if why := u.reject(r.Seq); why != "" {
					rejected = append(rejected, wire.Rejected{Seq: r.Seq, Reason: why})
				}
			}
		}
		c := u.contiguous[b.Epoch]
		for u.stored[space{b.Epoch, c + 1}] || c+1 <= b.DroppedThrough {
			c++
		}
		u.contiguous[b.Epoch] = c
		if u.holdAcks != nil {
			select {
			case <-u.holdAcks:
			default:
				return nil // stored, not acked yet
			}
		}
		if c > 0 {
			select {
			case u.acks <- wire.Ack{Seq: c, Epoch: b.Epoch, Rejected: rejected}:
			default: // a full channel already holds acks; the agent resends what stays unacked
			}
		}
	case wire.LeafHealth:
		var h wire.Health
		if err := wire.Decode(payload, &h); err != nil {
			return err
		}
		if !retained {
			return errors.New("health must be retained")
		}
		u.health = append(u.health, h)
	case wire.LeafEvents:
		var e wire.Event
		if err := wire.Decode(payload, &e); err != nil {
			return err
		}
		u.events = append(u.events, e)
	}
	return nil
}

func (u *fakeUplink) Err() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// storedIn reports whether the fake controller holds every seq in [1, last] of epoch.
func (u *fakeUplink) storedIn(epoch, last uint64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for s := uint64(1); s <= last; s++ {
		if !u.stored[space{epoch, s}] {
			return false
		}
	}
	return true
}
func (u *fakeUplink) Acks() <-chan wire.Ack { return u.acks }
func (u *fakeUplink) Connected() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.connected
}

func (u *fakeUplink) setConnected(c bool) {
	u.mu.Lock()
	u.connected = c
	u.mu.Unlock()
}

// seqs returns how many times each seq was published.
func (u *fakeUplink) seqs() map[uint64]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := map[uint64]int{}
	for _, b := range u.batches {
		for _, r := range b.Results {
			m[r.Seq]++
		}
	}
	return m
}

func (u *fakeUplink) healthReports() []wire.Health {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.health)
}

// eventually polls cond every 5 ms until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
