package agent_test

import (
	"context"
	"errors"
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
	limit int // after this many reads, Read blocks until ctx ends; 0 means no limit
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
	return sensor.Info{Kind: "fake", RateHz: s.rate, Channels: 1}
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
	mu   sync.Mutex
	max  int
	rs   []wire.Result
	st   agent.BufferStats
	fail error // Append fails with it while set
}

func (b *memBuffer) Append(rs []wire.Result) error {
	b.mu.Lock()
	defer b.mu.Unlock()
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

func (b *memBuffer) Oldest(n int) ([]wire.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.rs[:min(n, len(b.rs))]), nil
}

func (b *memBuffer) Ack(seq uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
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
	if len(b.rs) > 0 {
		st.Oldest = b.rs[0].Time
	}
	return st
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
			b = &memBuffer{}
			stores[dir] = b
		}
		b.max = max
		return b, func() {}
	})
}

// fakeUplink is an agent.Uplink whose "controller" acks each batch it receives unless
// dropAcks says otherwise.
type fakeUplink struct {
	acks chan uint64

	mu        sync.Mutex
	connected bool
	batches   []wire.ResultBatch
	health    []wire.Health
	dropAck   func(batch int) bool // batch is 1-based
}

func newFakeUplink() *fakeUplink { return &fakeUplink{acks: make(chan uint64, 1024), connected: true} }

func (u *fakeUplink) Publish(ctx context.Context, leaf string, payload []byte, retained bool) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.connected {
		return agent.ErrNotConnected
	}
	switch leaf {
	case wire.LeafResults:
		var b wire.ResultBatch
		if err := wire.Decode(payload, &b); err != nil {
			return err
		}
		u.batches = append(u.batches, b)
		if (u.dropAck == nil || !u.dropAck(len(u.batches))) && len(b.Results) > 0 {
			u.acks <- b.Results[len(b.Results)-1].Seq
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
	}
	return nil
}
func (u *fakeUplink) Acks() <-chan uint64 { return u.acks }
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
