package boltstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// BenchmarkSizing measures the store's file growth per result (with its indexes and output
// summary) and per health point, for docs/operations.md's sizing: one device's results at a
// typical agent's shape (two outputs, a label) in batches of 100, one result per 100 ms.
func BenchmarkSizing(b *testing.B) {
	const results = 100_000
	dir := b.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ResetTimer() // one pass is the measurement: run with -benchtime 1x
	for from := 1; from <= results; from += 100 {
		batch := fleet.Batch{Device: "pump-0001", Received: t0.Add(time.Duration(from) * 100 * time.Millisecond)}
		for i := range 100 {
			seq := uint64(from + i)
			batch.Results = append(batch.Results, wire.Result{Seq: seq, Time: t0.Add(time.Duration(seq) * 100 * time.Millisecond),
				Model: "vibration-anomaly@1.2.0", Score: float64(seq%50) / 100, Label: "normal", Event: seq%500 == 0,
				Outputs: []float32{0.123456, 0.876543}, LatencyUs: 1432})
		}
		if _, err := s.AppendResults(ctx, []fleet.Batch{batch}); err != nil {
			b.Fatal(err)
		}
	}
	// The controller writes every device's pending points in one transaction per flush; here
	// 60 at a time.
	const points = 6_000
	var pending []fleet.HealthPoint
	for i := range points {
		at := t0.Add(time.Duration(i) * time.Minute)
		h := wire.Health{V: 1, Device: "pump-0001", Time: at, AgentVersion: "0.7.1", Model: wire.ModelRef{Name: "vibration-anomaly", Version: "1.2.0", SHA256: "4f2a9c0e7d1b3a5c4f2a9c0e7d1b3a5c4f2a9c0e7d1b3a5c4f2a9c0e7d1b3a5c"},
			UptimeSeconds: 3600, Inferences: 1e6, InferencesPerS: 10, LatencyP50Ms: 1.4, LatencyP95Ms: 2, LatencyP99Ms: 2.5, SensorStatus: "ok", CPUPercent: 12.5, RSSBytes: 30e6}
		if pending = append(pending, fleet.HealthPoint{Device: "pump-0001", Start: at, Health: h}); len(pending) == 60 {
			if err := s.PutHealth(ctx, pending); err != nil {
				b.Fatal(err)
			}
			pending = pending[:0]
		}
	}
	sums, _ := s.OutputSummaries(ctx, "", time.Time{}, time.Time{})
	b.StopTimer()
	s.Close()
	// Bytes in use per bucket (pages holding data, not the file's preallocated growth).
	db, err := bolt.Open(filepath.Join(dir, boltstore.FileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	inuse := map[string]int{}
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			st := bk.Stats()
			inuse[string(name)] = st.BranchInuse + st.LeafInuse + st.InlineBucketInuse
			return nil
		})
	})
	perResult := float64(inuse["results"]+inuse["rtime"]+inuse["rrecv"]) / results
	perBucket := float64(inuse["outputs"]) / float64(len(sums))
	perPoint := float64(inuse["health"]) / points
	b.ReportMetric(perResult, "B/result")
	b.ReportMetric(perBucket, "B/summary")
	b.ReportMetric(perPoint, "B/health-point")
	b.Logf("%d results: results %d B, time indexes %d + %d B: %.0f B/result; %d summary buckets %d B: %.0f B each; %d health points %d B: %.0f B each; file %d B",
		results, inuse["results"], inuse["rtime"], inuse["rrecv"], perResult, len(sums), inuse["outputs"], perBucket, points, inuse["health"], perPoint, sizeOf(b, filepath.Join(dir, boltstore.FileName)))
}

func sizeOf(b *testing.B, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}
