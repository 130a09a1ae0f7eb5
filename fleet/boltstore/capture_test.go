package boltstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/storetest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func TestCaptureContract(t *testing.T) {
	storetest.RunCapture(t, func(t *testing.T) func() (fleet.Store, error) {
		dir := t.TempDir()
		return func() (fleet.Store, error) { return boltstore.Open(dir, boltstore.Options{}) }
	})
}

// TestPruneCapturesChunked: a prune larger than one transaction's share goes on in further
// transactions until done, by count and by age.
func TestPruneCapturesChunked(t *testing.T) {
	t.Parallel()
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	const n = 2*4096 + 100
	var batch []fleet.CaptureBatch
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Second)
		batch = append(batch, fleet.CaptureBatch{Device: "d", Epoch: 1, Received: at, Items: []wire.CaptureItem{{Seq: uint64(i + 1), Time: at,
			Reason: wire.CaptureRandom, Channels: []string{"x"}, Shape: []int{1, 1}, Values: []float32{1}, Result: wire.Result{Seq: uint64(i + 1), Time: at, Model: "m@1"}}}})
	}
	if _, err := s.AppendCaptures(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// By age: everything received before the 5,000th second.
	if got, err := s.PruneCaptures(ctx, 0, t0.Add(5000*time.Second)); err != nil || got != 5000 {
		t.Fatalf("prune by age = %d, %v; want 5000", got, err)
	}
	// By count: keep 7 of the remaining n-5000.
	if got, err := s.PruneCaptures(ctx, 7, time.Time{}); err != nil || got != n-5000-7 {
		t.Fatalf("prune by count = %d, %v; want %d", got, err, n-5000-7)
	}
	p, err := s.Captures(ctx, fleet.CaptureQuery{})
	if err != nil || len(p.Items) != 7 || p.Items[0].Seq != n-6 {
		t.Fatalf("left %d items (%v), want the newest 7", len(p.Items), err)
	}
}
