package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// BenchmarkAppendResults stores calls shaped like the controller's ingest groups: 256 batches
// of 10 in-order results from 256 devices (1,000 devices at 10 results/s send about four such
// groups a second). Reported per result.
func BenchmarkAppendResults(b *testing.B) {
	url := pgtest.Start(b, pgtest.Options{}).NewDB(b)
	ctx := context.Background()
	s, err := pgstore.Open(ctx, url, pgstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const devices, per = 256, 10
	t0 := time.Now()
	next := uint64(1)
	b.ResetTimer()
	for range b.N {
		batches := make([]fleet.Batch, devices)
		for d := range batches {
			batches[d] = fleet.Batch{Device: fmt.Sprintf("bench-%d", d), Epoch: 5}
			for q := next; q < next+per; q++ {
				batches[d].Results = append(batches[d].Results, wire.Result{Seq: q, Time: t0.Add(time.Duration(q) * 100 * time.Millisecond),
					Model: "vib@1.0.0", Score: 0.25, Label: "normal", Outputs: []float32{0.25}, LatencyUs: 900})
			}
		}
		next += per
		if _, err := s.AppendResults(ctx, batches); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*devices*per), "ns/result")
	b.ReportMetric(float64(b.N*devices*per)/b.Elapsed().Seconds(), "results/s")
}
