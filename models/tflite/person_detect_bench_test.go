package tflite_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
)

// personDetect builds an interpreter for the corpus' person_detect model with the test image
// of a person as input; portable forces the pure-Go kernels. The arena may reuse the input's
// memory once the first layer has read it, so only the first Invoke sees the image.
func personDetect(tb testing.TB, portable bool) *tflite.Interpreter {
	tb.Helper()
	defer kernels.SetPortable(kernels.SetPortable(portable))
	dir := filepath.Join(oracletest.CorpusDir(tb), "person_detect")
	ip, ok := runnable(tb, filepath.Join(dir, "person_detect.tflite"))
	if !ok {
		tb.Fatal("person_detect is not runnable")
	}
	in := oracletest.ReadLines(tb, filepath.Join(dir, "golden-inputs.jsonl"))[0]
	oracletest.SetInput(tb, ip.Input(0), in.Inputs[0].Values)
	return ip
}

// paths are the kernel paths to run: the pure-Go one, and the SIMD one where this machine
// has it.
func paths() []bool {
	defer kernels.SetPortable(kernels.SetPortable(false))
	if kernels.KernelPath() == "portable" {
		return []bool{true}
	}
	return []bool{true, false}
}

func pathName(portable bool) string {
	defer kernels.SetPortable(kernels.SetPortable(portable))
	return kernels.KernelPath()
}

// TestPersonDetectAllocs holds the whole person_detect Invoke at zero allocations, on every
// kernel path, and checks the paths give the same output bytes.
func TestPersonDetectAllocs(t *testing.T) {
	var first []byte
	for _, portable := range paths() {
		t.Run(pathName(portable), func(t *testing.T) {
			ip := personDetect(t, portable)
			if err := ip.Invoke(); err != nil {
				t.Fatal(err)
			}
			out := slices.Clone(ip.Output(0).Bytes())
			if first == nil {
				first = out
			} else if !slices.Equal(out, first) {
				t.Errorf("output %v, portable path gave %v", out, first)
			}
			oracletest.ZeroAllocs(t, ip)
		})
	}
}

// BenchmarkPersonDetect times single-threaded person_detect inferences on each kernel path
// and reports the median latency (median-ms) beside the mean, to compare with the official
// runtime's 0.35 ms (SIMD) and 2.35 ms (scalar) nominal medians; scripts/bench-vs-oracle
// measures both side by side.
func BenchmarkPersonDetect(b *testing.B) {
	for _, portable := range paths() {
		b.Run("path="+pathName(portable), func(b *testing.B) {
			ip := personDetect(b, portable)
			laps := make([]time.Duration, 0, 1024)
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
		})
	}
}
