package tflite_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
)

// The conformance corpus lives beside the repository: <repo root>/../shared/tflite-conformance,
// with real models and the outputs of the official TFLite runtime (see its README).

// TestCorpus loads every model of the corpus. Each must load (all are valid files), then
// either run and match the oracle's seed-1 outputs, or be refused by NewInterpreter with one
// clear line naming the unsupported op.
func TestCorpus(t *testing.T) {
	dir := oracletest.CorpusDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.tflite"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no models in %s: %v", dir, err)
	}
	var runs, refused []string
	for _, f := range files {
		name := filepath.Base(filepath.Dir(f))
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := tflite.Load(data)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
			if err != nil {
				msg := err.Error()
				if !strings.Contains(msg, "unsupported op") || strings.Contains(msg, "\n") {
					t.Fatalf("NewInterpreter error is not a one-line unsupported-op error: %v", err)
				}
				refused = append(refused, name+": "+msg)
				return
			}
			var run oracletest.Run
			if !oracletest.ReadJSON(t, filepath.Join(filepath.Dir(f), "oracle-1.json"), &run) || run.Error != "" {
				t.Logf("runs; no oracle-1.json output to compare")
				return
			}
			oracletest.SetInputs(t, ip, run)
			if err := ip.Invoke(); err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			oracletest.Compare(t, ip, run.Outputs, nil)
			runs = append(runs, name)
		})
	}
	sort.Strings(runs)
	t.Logf("%d of %d models run and match the oracle: %s", len(runs), len(files), strings.Join(runs, ", "))
	t.Logf("%d refused with an unsupported op", len(refused))
}

// TestGolden runs the corpus' named golden inputs through the models that run and compares
// them with the oracle on the same inputs.
func TestGolden(t *testing.T) {
	dir := oracletest.CorpusDir(t)
	for _, tc := range []struct{ dir, file string }{
		{"hello_world_float", "hello_world_float.tflite"},
		{"hello_world_int8", "hello_world_int8.tflite"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			base := filepath.Join(dir, tc.dir)
			ip := oracletest.ReadInterpreter(t, filepath.Join(base, tc.file), kernels.Builtins())
			inputs := oracletest.ReadLines(t, filepath.Join(base, "golden-inputs.jsonl"))
			want := oracletest.ReadLines(t, filepath.Join(base, "oracle-golden.jsonl"))
			if len(want) > 0 && want[0].Header {
				want = want[1:]
			}
			if len(inputs) != len(want) || len(inputs) == 0 {
				t.Fatalf("%d golden inputs, %d oracle cases", len(inputs), len(want))
			}
			for i, in := range inputs {
				t.Run(in.Name, func(t *testing.T) {
					for pos, x := range in.Inputs {
						oracletest.SetInput(t, ip.Input(pos), x.Values)
					}
					if err := ip.Invoke(); err != nil {
						t.Fatal(err)
					}
					oracletest.Compare(t, ip, want[i].Outputs, nil)
				})
			}
		})
	}
}

func BenchmarkInvoke(b *testing.B) {
	dir := oracletest.CorpusDir(b)
	for _, name := range []string{"hello_world_float/hello_world_float.tflite", "hello_world_int8/hello_world_int8.tflite", "seanet_quantize0/quantize0.tflite"} {
		b.Run(filepath.Base(filepath.Dir(name)), func(b *testing.B) {
			ip := oracletest.ReadInterpreter(b, filepath.Join(dir, name), kernels.Builtins())
			b.ReportAllocs()
			for b.Loop() {
				if err := ip.Invoke(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
