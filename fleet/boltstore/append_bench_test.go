package boltstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// BenchmarkAppend is the controller's ingest transaction: 256 batches of 10 results from 100
// devices per AppendResults, as the ingest loop groups them (results, indexes and summaries).
func BenchmarkAppend(b *testing.B) {
	s, err := boltstore.Open(b.TempDir(), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seq := make([]uint64, 100)
	b.ResetTimer()
	for i := range b.N {
		batches := make([]fleet.Batch, 256)
		for j := range batches {
			d := (i*256 + j) % 100
			bt := fleet.Batch{Device: fmt.Sprintf("dev-%03d", d)}
			for range 10 {
				seq[d]++
				bt.Results = append(bt.Results, wire.Result{Seq: seq[d], Time: t0.Add(time.Duration(seq[d]) * 100 * time.Millisecond),
					Model: "vib@1.0.0", Score: 0.25, Label: "normal", Outputs: []float32{0.1, 0.9}, LatencyUs: 1400})
			}
			batches[j] = bt
		}
		if _, err := s.AppendResults(ctx, batches); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*2560)/b.Elapsed().Seconds(), "results/s")
}
