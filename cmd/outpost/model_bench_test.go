package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
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

// TestModelBenchPerOp: --per-op lists every op of person_detect in order with its output
// shape and MACs (adding up to the model's), shares that add up to 1, and op types that sum
// the ops, slowest first; the headline figures are there as without it.
func TestModelBenchPerOp(t *testing.T) {
	model := filepath.Join(modelCorpus(t), "person_detect", "person_detect.tflite")
	out, code := runOutpost(t, "model", "bench", model, "--n", "20", "--warmup", "1", "--per-op")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if r.MACs != 7157888 || r.MedianMS <= 0 || r.AllocsPerInvoke != 0 {
		t.Errorf("macs %d, median %v ms, allocs %v: want the report of a plain bench", r.MACs, r.MedianMS, r.AllocsPerInvoke)
	}
	data, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tflite.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	operators := m.Subgraphs[0].Operators
	if len(r.Ops) != len(operators) {
		t.Fatalf("%d ops, the model has %d", len(r.Ops), len(operators))
	}
	var macs int64
	var share, us float64
	count := map[string]int{}
	for i, o := range r.Ops {
		if o.Index != i || o.Op != operators[i].Op.Name() || len(o.OutputShape) == 0 || o.MedianUS < 0 {
			t.Errorf("ops[%d] = %+v, want op %d (%s) with its output shape", i, o, i, operators[i].Op.Name())
		}
		macs, share, us = macs+o.MACs, share+o.Share, us+o.MedianUS
		count[o.Op]++
	}
	if last := r.Ops[len(r.Ops)-1]; last.Op != "SOFTMAX" || !slices.Equal(last.OutputShape, []int{1, 2}) {
		t.Errorf("last op %+v, want SOFTMAX to [1 2]", last)
	}
	if macs != r.MACs || math.Abs(share-1) > 0.002 || us <= 0 {
		t.Errorf("ops add up to %d MACs (model %d), share %v, %v µs", macs, r.MACs, share, us)
	}
	seen := 0
	for i, ty := range r.OpTypes {
		if ty.Count != count[ty.Op] || i > 0 && ty.MedianUS > r.OpTypes[i-1].MedianUS {
			t.Errorf("op_types[%d] = %+v: want %d ops, slowest first", i, ty, count[ty.Op])
		}
		seen += ty.Count
	}
	if seen != len(r.Ops) || len(r.OpTypes) != len(count) {
		t.Errorf("op_types cover %d ops in %d types, want %d in %d", seen, len(r.OpTypes), len(r.Ops), len(count))
	}
}
