package fleet_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// BenchmarkGroupSize is the store side of the ingest loop under the scale load of
// `make bench-scale`: 1,000 devices each sending one result per batch, arriving round robin,
// taken in groups of the given number of messages per AppendResults (the controller's
// MaxBatch when it has fallen behind). It shows what a larger group saves per result: a
// device's batches in one group share an output-summary update and the pages of one commit.
// Compare the sub-benchmarks of one run (docs/performance.md, "Controller at scale").
func BenchmarkGroupSize(b *testing.B) {
	const devices = 1000
	for _, group := range []int{256, 1024, 2048} {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			s, err := boltstore.Open(b.TempDir(), boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			seq := make([]uint64, devices)
			next := 0
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for range b.N {
				batches := make([]fleet.Batch, group)
				for j := range batches {
					d := next % devices
					next++
					seq[d]++
					batches[j] = fleet.Batch{Device: fmt.Sprintf("dev-%04d", d), Results: []wire.Result{{
						Seq: seq[d], Time: t0.Add(time.Duration(seq[d]) * 100 * time.Millisecond),
						Model: "vib@1.0.0", Score: 0.25, Label: "normal", Outputs: []float32{0.1, 0.9}, LatencyUs: 1400,
					}}}
				}
				if _, err := s.AppendResults(ctx, batches); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time, not wall time: on a shared machine the wall clock mostly measures the
			// other processes.
			cpu := cpuTime(b) - cpu0
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*group)/1000, "cpu-µs/result")
		})
	}
}

// cpuTime is the process's user plus system CPU time so far (GC and fsync included).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
