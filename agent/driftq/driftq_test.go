package driftq_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/driftq"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func summary(w uint64) *wire.DriftSummary {
	t := time.Date(2026, 3, 1, 0, int(w), 0, 0, time.UTC)
	return &wire.DriftSummary{V: 1, Device: "d", Model: wire.ModelRef{Name: "m", Version: "1"}, Window: w, Start: t, End: t,
		Inferences: 10, Features: []wire.DriftFeature{{Name: "x", Role: wire.DriftInput, Count: 10, Counts: []int64{10}}}}
}

func windows(ss []*wire.DriftSummary) []uint64 {
	var out []uint64
	for _, s := range ss {
		out = append(out, s.Window)
	}
	return out
}

// Summaries survive a reopen until acked; ids keep growing across reopens; the oldest go
// when the queue is full.
func TestQueue(t *testing.T) {
	dir := t.TempDir()
	q, err := driftq.Open(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	for w := uint64(1); w <= 4; w++ {
		s := summary(w)
		if err := q.Put(s); err != nil || s.ID != w {
			t.Fatalf("Put window %d: id %d, %v", w, s.ID, err)
		}
	}
	if st := q.Stats(); st.Pending != 3 || st.Dropped != 1 {
		t.Fatalf("stats %+v, want 3 pending, 1 dropped", st)
	}
	if err := q.Ack([]uint64{3, 3, 99}); err != nil {
		t.Fatal(err)
	}
	q, err = driftq.Open(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := windows(q.Pending()); !slices.Equal(got, []uint64{2, 4}) {
		t.Fatalf("pending after reopen %v, want [2 4]", got)
	}
	s := summary(5)
	if err := q.Put(s); err != nil || s.ID != 5 {
		t.Fatalf("id after reopen %d, %v; want 5", s.ID, err)
	}
}

// A damaged file (a torn write on a failing card, a stray file) is deleted and counted; the
// rest stay.
func TestQueueDamage(t *testing.T) {
	dir := t.TempDir()
	q, err := driftq.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for w := uint64(1); w <= 3; w++ {
		if err := q.Put(summary(w)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "0000000000000002.json"), []byte(`{"v":1,"device":"d","win`), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ".0000000000000009.json.tmp123"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)
	q, err = driftq.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := windows(q.Pending()); !slices.Equal(got, []uint64{1, 3}) {
		t.Fatalf("pending %v, want [1 3]", got)
	}
	if st := q.Stats(); st.Damaged != 1 || st.Pending != 2 {
		t.Errorf("stats %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, ".0000000000000009.json.tmp123")); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	// Damaged after open: Pending drops it too.
	os.WriteFile(filepath.Join(dir, "0000000000000003.json"), []byte(`garbage`), 0o600)
	if got := windows(q.Pending()); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("pending %v, want [1]", got)
	}
}

// BenchmarkPut is what the infer loop pays once per closed window (agent/driftpub.go): one
// summary of the sample model's shape (an input and an output feature, 20 bins, with an
// event) written atomically and fsynced, then acked so the queue stays small.
func BenchmarkPut(b *testing.B) {
	q, err := driftq.Open(b.TempDir(), 0)
	if err != nil {
		b.Fatal(err)
	}
	s := summary(1)
	feat := wire.DriftFeature{Name: "accel", Role: wire.DriftInput, Count: 64000, QuantileP: []float64{0.05, 0.5, 0.95},
		Quantiles: []float64{-0.6, 0.1, 0.7}, Counts: make([]int64, 20), Scored: true, PSI: 0.9, Drifted: []string{wire.ScorePSI}}
	out := feat
	out.Name, out.Role, out.Count = "score", wire.DriftOutput, 1000
	s.Features = []wire.DriftFeature{feat, out}
	s.Event = &wire.Event{V: 1, Device: "d", Kind: wire.EventDrift, Reason: "drift in accel (psi 0.9 > 0.6)"}
	b.ReportAllocs()
	for b.Loop() {
		if err := q.Put(s); err != nil {
			b.Fatal(err)
		}
		if err := q.Ack([]uint64{s.ID}); err != nil {
			b.Fatal(err)
		}
	}
}
