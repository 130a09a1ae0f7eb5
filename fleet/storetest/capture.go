package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// RunCapture is the contract of fleet.CaptureStore, for a Store that implements it.
func RunCapture(t *testing.T, newStore Factory) {
	open := func(t *testing.T) (fleet.CaptureStore, func() fleet.CaptureStore) {
		o := newStore(t)
		reopen := func() fleet.CaptureStore {
			s := mustOpen(t, o)
			cs, ok := s.(closeOnce).Store.(fleet.CaptureStore)
			if !ok {
				t.Fatalf("%T does not implement fleet.CaptureStore", s)
			}
			return cs
		}
		return reopen(), reopen
	}
	t.Run("AppendDedupe", func(t *testing.T) { s, _ := open(t); testCaptureDedupe(t, s) })
	t.Run("Query", func(t *testing.T) { s, _ := open(t); testCaptureQuery(t, s) })
	t.Run("Prune", func(t *testing.T) { s, _ := open(t); testCapturePrune(t, s) })
	t.Run("Reopen", func(t *testing.T) {
		s, reopen := open(t)
		ctx := context.Background()
		t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		if _, err := s.AppendCaptures(ctx, []fleet.CaptureBatch{capBatch("d1", 1, t0, "m@1", 1, 2, 3)}); err != nil {
			t.Fatal(err)
		}
		s.(interface{ Close() error }).Close()
		s = reopen()
		a, err := s.AppendCaptures(ctx, []fleet.CaptureBatch{capBatch("d1", 1, t0, "m@1", 2, 3, 4)})
		if err != nil || a[0].Stored != 1 || a[0].Duplicates != 2 || a[0].Through != 4 {
			t.Fatalf("after reopen: %+v, %v; want 1 stored, 2 duplicates, through 4", a, err)
		}
		p, err := s.Captures(ctx, fleet.CaptureQuery{})
		if err != nil || len(p.Items) != 4 {
			t.Fatalf("after reopen: %d items, %v", len(p.Items), err)
		}
	})
}

// capBatch builds a batch of items with the given seqs; each item's values derive from its
// seq, so contents can be checked after a round trip.
func capBatch(device string, epoch uint64, at time.Time, model string, seqs ...uint64) fleet.CaptureBatch {
	b := fleet.CaptureBatch{Device: device, Epoch: epoch, Received: at}
	for _, s := range seqs {
		b.Items = append(b.Items, wire.CaptureItem{
			Seq: s, Time: at.Add(-time.Second), Reason: wire.CaptureRandom, Channels: []string{"a", "b"},
			Shape: []int{2, 2}, Values: []float32{float32(s), 0.5, -float32(s), 1e-3},
			Result: wire.Result{Seq: 100 + s, Time: at.Add(-time.Second), Model: model, Score: float64(s) / 10, Label: "normal"},
		})
	}
	return b
}

func testCaptureDedupe(t *testing.T, s fleet.CaptureStore) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, step := range []struct {
		name         string
		batch        fleet.CaptureBatch
		stored, dups int
		through      uint64
	}{
		{"first", capBatch("d1", 7, t0, "m@1", 1, 2, 3), 3, 0, 3},
		{"resent", capBatch("d1", 7, t0.Add(time.Second), "m@1", 1, 2, 3), 0, 3, 3},
		{"overlap", capBatch("d1", 7, t0.Add(2*time.Second), "m@1", 3, 4), 1, 1, 4},
		{"after a drop", capBatch("d1", 7, t0.Add(3*time.Second), "m@1", 9), 1, 0, 9},
		{"other epoch", capBatch("d1", 8, t0.Add(4*time.Second), "m@1", 1), 1, 0, 1},
		{"other device", capBatch("d2", 7, t0.Add(5*time.Second), "m@1", 1, 2), 2, 0, 2},
	} {
		a, err := s.AppendCaptures(ctx, []fleet.CaptureBatch{step.batch})
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if a[0].Stored != step.stored || a[0].Duplicates != step.dups || a[0].Through != step.through {
			t.Errorf("%s: %+v, want stored %d duplicates %d through %d", step.name, a[0], step.stored, step.dups, step.through)
		}
	}
	if _, err := s.AppendCaptures(ctx, []fleet.CaptureBatch{capBatch("bad/id", 1, t0, "m@1", 1)}); err == nil {
		t.Error("an invalid device id was accepted")
	}
	// One transaction: a bad batch after a good one stores neither.
	_, err := s.AppendCaptures(ctx, []fleet.CaptureBatch{capBatch("d3", 1, t0, "m@1", 1), capBatch("d3", 1, t0, "m@1", 0)})
	if err == nil {
		t.Error("seq 0 was accepted")
	}
	p, err := s.Captures(ctx, fleet.CaptureQuery{Device: "d3"})
	if err != nil || len(p.Items) != 0 {
		t.Errorf("a failed AppendCaptures stored %d items (%v)", len(p.Items), err)
	}
	p, err = s.Captures(ctx, fleet.CaptureQuery{Device: "d1"})
	if err != nil || len(p.Items) != 6 {
		t.Fatalf("d1 has %d items, want 6 (%v)", len(p.Items), err)
	}
	it := p.Items[0]
	if it.Device != "d1" || it.Epoch != 7 || !it.Received.Equal(t0) || it.Seq != 1 || it.Values[2] != -1 || it.Result.Seq != 101 || it.Channels[1] != "b" {
		t.Errorf("round trip: %+v", it)
	}
}

func testCaptureQuery(t *testing.T, s fleet.CaptureStore) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var batches []fleet.CaptureBatch
	for i := range 10 {
		model := "vib@1.0.0"
		if i%2 == 1 {
			model = "vib@1.1.0"
		}
		if i == 9 {
			model = "other@1"
		}
		batches = append(batches, capBatch("d1", 1, t0.Add(time.Duration(i)*time.Minute), model, uint64(2*i+1), uint64(2*i+2)))
	}
	if _, err := s.AppendCaptures(ctx, batches); err != nil {
		t.Fatal(err)
	}
	count := func(q fleet.CaptureQuery) int {
		t.Helper()
		n := 0
		for range 100 {
			p, err := s.Captures(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(p.Items); i++ {
				if p.Items[i].Received.Before(p.Items[i-1].Received) {
					t.Fatal("items not in received order")
				}
			}
			n += len(p.Items)
			if p.Next == "" {
				return n
			}
			q.After = p.Next
		}
		t.Fatal("paging does not end")
		return 0
	}
	for _, tc := range []struct {
		name string
		q    fleet.CaptureQuery
		want int
	}{
		{"all", fleet.CaptureQuery{}, 20},
		{"by name", fleet.CaptureQuery{Model: "vib"}, 18},
		{"by version", fleet.CaptureQuery{Model: "vib@1.1.0"}, 8},
		{"since", fleet.CaptureQuery{Since: t0.Add(5 * time.Minute)}, 10},
		{"name since", fleet.CaptureQuery{Model: "vib", Since: t0.Add(5 * time.Minute)}, 8},
		{"pages of 3", fleet.CaptureQuery{Limit: 3}, 20},
		{"other device", fleet.CaptureQuery{Device: "d2"}, 0},
	} {
		if got := count(tc.q); got != tc.want {
			t.Errorf("%s: %d items, want %d", tc.name, got, tc.want)
		}
	}
	if _, err := s.Captures(ctx, fleet.CaptureQuery{After: "zz"}); err == nil {
		t.Error("a bad cursor was accepted")
	}
}

func testCapturePrune(t *testing.T, s fleet.CaptureStore) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var batches []fleet.CaptureBatch
	for i := range 10 {
		batches = append(batches, capBatch("d1", 1, t0.Add(time.Duration(i)*time.Hour), "m@1", uint64(i+1)))
	}
	if _, err := s.AppendCaptures(ctx, batches); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneCaptures(ctx, 0, t0.Add(3*time.Hour)); err != nil || n != 3 {
		t.Fatalf("prune by age: %d, %v; want 3", n, err)
	}
	if n, err := s.PruneCaptures(ctx, 5, time.Time{}); err != nil || n != 2 {
		t.Fatalf("prune by count: %d, %v; want 2", n, err)
	}
	p, err := s.Captures(ctx, fleet.CaptureQuery{})
	if err != nil || len(p.Items) != 5 || p.Items[0].Seq != 6 {
		t.Fatalf("after prune: %d items (first seq %d), %v", len(p.Items), p.Items[0].Seq, err)
	}
	// A pruned item sent again is still a duplicate.
	a, err := s.AppendCaptures(ctx, []fleet.CaptureBatch{capBatch("d1", 1, t0.Add(20*time.Hour), "m@1", 2)})
	if err != nil || a[0].Duplicates != 1 || a[0].Through != 10 {
		t.Errorf("resend of a pruned item: %+v, %v", a, err)
	}
}
