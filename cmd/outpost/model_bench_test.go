package main

import (
	"encoding/json"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestModelBench runs `outpost model bench` on person_detect and checks the report: a few
// timed invocations, no allocations, the planned arena, and the MAC count of the model's 14
// CONV_2D and 13 DEPTHWISE_CONV_2D layers (out elements x taps, summed layer by layer from
// the shapes `outpost model inspect` prints).
func TestModelBench(t *testing.T) {
	model := filepath.Join(modelCorpus(t), "person_detect", "person_detect.tflite")
	for _, tc := range []struct {
		name string
		args []string
		path string // "" when it depends on the CPU
	}{
		{"default", nil, ""},
		{"portable", []string{"--portable"}, "portable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runOutpost(t, append([]string{"model", "bench", model, "--n", "5", "--warmup", "1"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, out)
			}
			var r benchReport
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			const macs = 7157888
			if r.MACs != macs {
				t.Errorf("macs = %d, want %d", r.MACs, macs)
			}
			if r.N != 5 || r.Warmup != 1 || r.Threads != 1 {
				t.Errorf("n, warmup, threads = %d, %d, %d, want 5, 1, 1", r.N, r.Warmup, r.Threads)
			}
			if r.MedianMS <= 0 || r.P90MS < r.MedianMS || r.MinMS > r.MedianMS || r.GMACs <= 0 {
				t.Errorf("timings median %v p90 %v min %v gmacs %v are inconsistent", r.MedianMS, r.P90MS, r.MinMS, r.GMACs)
			}
			if runtime.GOOS == "linux" && (r.CPUMS == nil || *r.CPUMS <= 0) {
				t.Errorf("cpu_ms = %v, want a positive thread CPU time on Linux", r.CPUMS)
			}
			if r.AllocsPerInvoke != 0 {
				t.Errorf("allocs_per_invoke = %v, want 0", r.AllocsPerInvoke)
			}
			if r.ArenaBytes <= 0 {
				t.Errorf("arena_bytes = %d", r.ArenaBytes)
			}
			if r.Kernels != "portable" && !strings.HasPrefix(r.Kernels, "avx2") && !strings.HasPrefix(r.Kernels, "neon") {
				t.Errorf("kernels = %q", r.Kernels)
			}
			if tc.path != "" && r.Kernels != tc.path {
				t.Errorf("kernels = %q, want %q", r.Kernels, tc.path)
			}
		})
	}
}

func TestModelBenchRejects(t *testing.T) {
	model := filepath.Join(modelCorpus(t), "person_detect", "person_detect.tflite")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"zero runs", []string{model, "--n", "0"}, exitUsage, "--n 0"},
		{"negative warmup", []string{model, "--warmup", "-1"}, exitUsage, "--warmup -1"},
		{"threads", []string{model, "--threads", "65"}, exitUsage, "want 1 to 64"},
		{"missing file", []string{filepath.Join(t.TempDir(), "nope.tflite")}, exitUsage, "read model"},
		{"not a model", []string{"model_bench_test.go"}, exitLoad, "model_bench_test.go"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRootCmd()
			var out strings.Builder
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append([]string{"model", "bench"}, tc.args...))
			err := root.Execute()
			ee, ok := err.(*exitError)
			if !ok || ee.code != tc.code {
				t.Fatalf("error %v, want exit code %d", err, tc.code)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}
