package tflite_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
)

// personDetect builds an interpreter for the corpus' person_detect model with the test image
// of a person as input.
func personDetect(tb testing.TB) *tflite.Interpreter {
	tb.Helper()
	dir := filepath.Join(oracletest.CorpusDir(tb), "person_detect")
	ip, ok := runnable(tb, filepath.Join(dir, "person_detect.tflite"))
	if !ok {
		tb.Fatal("person_detect is not runnable")
	}
	in := oracletest.ReadLines(tb, filepath.Join(dir, "golden-inputs.jsonl"))[0]
	oracletest.SetInput(tb, ip.Input(0), in.Inputs[0].Values)
	return ip
}

// TestPersonDetectAllocs holds the whole person_detect Invoke at zero allocations.
func TestPersonDetectAllocs(t *testing.T) {
	ip := personDetect(t)
	if n := testing.AllocsPerRun(20, func() {
		if err := ip.Invoke(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Invoke allocates %v times per run, want 0", n)
	}
}

// BenchmarkPersonDetect times single-threaded person_detect inferences with the pure-Go
// kernels and reports the median latency (median-ms) beside the mean, to compare with the
// official runtime's 0.35 ms (SIMD) and 2.35 ms (scalar) medians.
func BenchmarkPersonDetect(b *testing.B) {
	ip := personDetect(b)
	var laps []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if err := ip.Invoke(); err != nil {
			b.Fatal(err)
		}
		laps = append(laps, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(laps)
	med := laps[len(laps)/2]
	b.ReportMetric(float64(med.Nanoseconds())/1e6, "median-ms")
	b.ReportMetric(float64(med.Nanoseconds())/1e6/2.35, "x-scalar-oracle")
}
