package capture

import (
	"context"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

func item(v float32) wire.CaptureItem {
	return wire.CaptureItem{
		Time: time.Unix(1000, 0).UTC(), Reason: wire.CaptureRandom, Channels: []string{"x"},
		Shape: []int{4, 1}, Values: []float32{v, v, v, v}, Result: wire.Result{Seq: 1, Time: time.Unix(1000, 0).UTC(), Model: "m@1"},
	}
}

// TestStoreQuota: over its item quota the buffer drops the oldest, counts them and names the
// highest dropped seq; the counters survive a reopen.
func TestStoreQuota(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capture.db")
	s, err := OpenStore(path, StoreOptions{MaxItems: 5})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		its := []wire.CaptureItem{item(float32(i))}
		if err := s.Append(its); err != nil {
			t.Fatal(err)
		}
		if its[0].Seq != uint64(i+1) {
			t.Fatalf("seq %d, want %d", its[0].Seq, i+1)
		}
	}
	st := s.Stats()
	if st.Len != 5 || st.Dropped != 3 || st.DroppedThrough != 3 || st.LastSeq != 8 || st.Epoch == 0 {
		t.Fatalf("stats %+v, want 5 held, 3 dropped through seq 3", st)
	}
	got, err := s.After(0, 100, 1<<20)
	if err != nil || len(got) != 5 || got[0].Seq != 4 || got[0].Values[0] != 3 {
		t.Fatalf("After = %d items (first %+v), %v", len(got), got[0], err)
	}
	if n, err := s.Ack(6); err != nil || n != 3 {
		t.Fatalf("Ack(6) = %d, %v; want 3 deleted", n, err)
	}
	if _, err := s.Ack(99); err == nil {
		t.Error("Ack beyond the last seq succeeded")
	}
	epoch := st.Epoch
	s.Close()
	s, err = OpenStore(path, StoreOptions{MaxItems: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st.Len != 2 || st.AckedSeq != 6 || st.Dropped != 3 || st.Epoch != epoch || st.LastSeq != 8 {
		t.Fatalf("after reopen %+v", st)
	}
}

func TestStoreByteQuota(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), "capture.db"), StoreOptions{MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 20 {
		if err := s.Append([]wire.CaptureItem{item(float32(i))}); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Bytes > 1000 || st.Dropped == 0 || st.Len+st.Dropped != 20 {
		t.Fatalf("stats %+v: want at most 1000 bytes, the rest dropped", st)
	}
	big := item(1)
	big.Values = make([]float32, 1000)
	big.Shape = []int{1000, 1}
	if err := s.Append([]wire.CaptureItem{big}); err == nil {
		t.Error("an item larger than the quota was stored")
	}
}

func newTestCapturer(t *testing.T, p *wire.CapturePolicy) *Capturer {
	t.Helper()
	s, err := OpenStore(filepath.Join(t.TempDir(), "capture.db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := New(Options{DeviceID: "d1", Store: s, Link: &loopLink{}, Channels: []string{"x"}, Policy: p, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestWant: each part of the policy captures about its fraction of the windows it applies to,
// and nothing else; the hourly cap bounds the total.
func TestWant(t *testing.T) {
	const n = 20000
	t0 := time.Unix(0, 0)
	count := func(c *Capturer, score float64, drift bool) map[string]int {
		got := map[string]int{}
		c.Drift(t0, drift)
		for i := range n {
			got[c.Want(t0.Add(time.Duration(i)*time.Hour), score, 0.5)]++
		}
		return got
	}
	for _, tc := range []struct {
		name   string
		p      *wire.CapturePolicy
		score  float64
		drift  bool
		reason string
		frac   float64
	}{
		{"off", nil, 0.5, true, "", 1},
		{"random", &wire.CapturePolicy{Random: 0.1}, 0.9, false, wire.CaptureRandom, 0.1},
		{"low confidence inside band", &wire.CapturePolicy{LowConfidence: 0.5, Band: 0.05}, 0.53, false, wire.CaptureLowConfidence, 0.5},
		{"low confidence outside band", &wire.CapturePolicy{LowConfidence: 0.5, Band: 0.05}, 0.6, false, "", 1},
		{"drift while drifting", &wire.CapturePolicy{Drift: 0.8, Random: 0.01}, 0.9, true, wire.CaptureDrift, 0.8},
		{"drift without drift", &wire.CapturePolicy{Drift: 0.8}, 0.9, false, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := count(newTestCapturer(t, tc.p), tc.score, tc.drift)
			frac := float64(got[tc.reason]) / n
			if math.Abs(frac-tc.frac) > 0.02 {
				t.Errorf("reason %q chose %.3f of windows, want %.2f (all: %v)", tc.reason, frac, tc.frac, got)
			}
		})
	}
	// The cap: 60 per hour is a burst of 1 per minute; windows every second for an hour
	// capture about 60.
	c := newTestCapturer(t, &wire.CapturePolicy{Random: 1, MaxPerHour: 60})
	kept := 0
	for i := range 3600 {
		if c.Want(t0.Add(time.Duration(i)*time.Second), 0, 0.5) != "" {
			kept++
		}
	}
	if kept < 55 || kept > 65 {
		t.Errorf("max_per_hour 60 kept %d windows in an hour", kept)
	}
	// Drift hold: capture goes on for DriftHoldS after the last drifted window.
	c = newTestCapturer(t, &wire.CapturePolicy{Drift: 1, DriftHoldS: 60, MaxPerHour: 1000000})
	c.Drift(t0, true)
	c.Drift(t0, false)
	if c.Want(t0.Add(30*time.Second), 0, 0.5) != wire.CaptureDrift || c.Want(t0.Add(90*time.Second), 0, 0.5) != "" {
		t.Error("drift hold not applied")
	}
	if err := c.SetPolicy(&wire.CapturePolicy{Random: 3}); err == nil || c.Policy().Drift != 1 {
		t.Errorf("SetPolicy of a bad policy = %v; policy now %+v", err, c.Policy())
	}
}

// TestWantAllocs: the decision the infer loop asks for every window allocates nothing.
func TestWantAllocs(t *testing.T) {
	c := newTestCapturer(t, &wire.CapturePolicy{Random: 0.5, LowConfidence: 1, Band: 0.1, Drift: 1})
	now := time.Unix(0, 0)
	if a := testing.AllocsPerRun(1000, func() { c.Want(now, 0.3, 0.5) }); a != 0 {
		t.Errorf("Want allocates %v per call", a)
	}
	off := newTestCapturer(t, nil)
	if a := testing.AllocsPerRun(1000, func() { off.Want(now, 0.3, 0.5) }); a != 0 {
		t.Errorf("Want (off) allocates %v per call", a)
	}
}

// loopLink is the controller end of the capture path in one process: it decodes every
// published batch as the controller does and acks its last seq, unless told to stay silent.
type loopLink struct {
	mu     sync.Mutex
	acks   chan wire.Ack
	got    []wire.CaptureItem
	silent bool
}

func (l *loopLink) Connected() bool { return true }
func (l *loopLink) CaptureAcks() <-chan wire.Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.acks == nil {
		l.acks = make(chan wire.Ack, 16)
	}
	return l.acks
}
func (l *loopLink) Publish(_ context.Context, leaf string, payload []byte, _ bool) error {
	b, err := wire.DecodeCaptureBatch("d1", payload)
	if err != nil || leaf != wire.LeafCapture {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, it := range b.Items {
		if len(l.got) == 0 || it.Seq > l.got[len(l.got)-1].Seq {
			l.got = append(l.got, it)
		}
	}
	if !l.silent {
		l.acks <- wire.Ack{Seq: b.Items[len(b.Items)-1].Seq, Epoch: b.Epoch}
	}
	return nil
}

// TestUpload: kept windows reach the link once each, in order, and the acks empty the buffer.
func TestUpload(t *testing.T) {
	c := newTestCapturer(t, &wire.CapturePolicy{Random: 1})
	link := c.opts.Link.(*loopLink)
	link.CaptureAcks()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for i := range 200 {
		c.Keep([]float32{float32(i), 1, 2, 3}, wire.CaptureRandom, wire.Result{Seq: uint64(i + 1), Time: time.Unix(int64(i), 0), Model: "m@1"})
		if i%50 == 0 {
			time.Sleep(20 * time.Millisecond) // let the store keep up: the queue is 64
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st := c.Stats(); st.Buffer.Len == 0 && st.Acked+st.Lost == 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	link.mu.Lock()
	defer link.mu.Unlock()
	if st.Buffer.Len != 0 || st.Acked != uint64(len(link.got)) || st.Acked+st.Lost != 200 || st.Acked < 150 {
		t.Fatalf("stats %+v, link got %d", st, len(link.got))
	}
	for i, it := range link.got {
		if it.Seq != uint64(i+1) || it.Result.Seq == 0 || it.Shape[0] != 4 {
			t.Fatalf("item %d: %+v", i, it)
		}
	}
}
