package oracletest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
)

// OpCase is a single-op (or few-op) model that the project writes itself with
// models/tflite/write, validated once against the official runtime.
//
// The model is committed as DIR/NAME.tflite and the oracle's output for it as DIR/NAME.json
// (`tflite-oracle.js NAME.tflite --random Seed`, default seed 1; inputs that must be valid
// indices or shapes belong in the model as constant tensors, so random data only feeds real
// data inputs). RunOpCases rebuilds every model, insists it is byte-identical to the committed
// file (so a golden never silently describes another model), runs it through the interpreter
// with the oracle's inputs and compares the outputs.
//
// The second judge is TFLite Micro's reference interpreter (tflm-run): its outputs for the same
// inputs are committed as DIR/NAME.tflm.json, and integer outputs must equal them bit for bit
// (MicroTol). Models it cannot run (uint8, ops it lacks) hold its {"error": …} object instead,
// and only the official runtime judges them.
//
// To add or change cases: OUTPOST_WRITE_OPS=1 go test ./PKG -run TEST writes the .tflite files,
// then scripts/oracle-ops DIR runs the official runtime on every model whose .json is missing or
// older, scripts/tflm-ops DIR does the same for TFLite Micro, and the test passes once all three
// are committed.
type OpCase struct {
	Name  string
	Build func() ([]byte, error)
	// Tol overrides the tolerance per dtype; nil means Exact: integer kernels must reproduce
	// the reference arithmetic bit for bit. Use Default for int8 graphs whose nodes XNNPACK
	// takes inside the oracle.
	Tol func(tensor.DType) Tolerance
	// Resolver runs the model; required.
	Resolver tflite.OpResolver
	// MicroTol overrides the tolerance against TFLite Micro (the second judge, NAME.tflm.json);
	// nil means Exact. Only a documented disagreement of the judges may loosen it.
	MicroTol func(tensor.DType) Tolerance
	// MicroOnly marks a model the official runtime refuses (an op or dtype only TFLite Micro
	// has, e.g. int8 CUMSUM): NAME.json holds that refusal, and TFLite Micro's output, with
	// its own seed-1 inputs, is the only judge.
	MicroOnly bool
	// NotMicro, when set, says why TFLite Micro's output does not judge this model although
	// tflm-run prints one: it has no hybrid kernels (it reads int8 weights as float and prints
	// garbage) and its fast-NMS detection post-processing differs from the full runtime's.
	// The issue makes the full runtime the judge there; the reason is logged.
	NotMicro string
}

// RunOpCases runs every case as a subtest; dir is relative to the calling package.
func RunOpCases(t *testing.T, dir string, cases []OpCase) {
	t.Helper()
	write := os.Getenv("OUTPOST_WRITE_OPS") == "1"
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.Name] {
			t.Fatalf("duplicate op case %q", c.Name)
		}
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			data, err := c.Build()
			if err != nil {
				t.Fatalf("build model: %v", err)
			}
			path := filepath.Join(dir, c.Name+".tflite")
			if write {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if old, err := os.ReadFile(path); err != nil || !bytes.Equal(old, data) {
					if err := os.WriteFile(path, data, 0o644); err != nil {
						t.Fatal(err)
					}
					os.Remove(filepath.Join(dir, c.Name+".json")) // stale golden
					t.Logf("wrote %s; run scripts/oracle-ops %s", path, dir)
				}
			}
			committed, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (OUTPOST_WRITE_OPS=1 writes it)", err)
			}
			if !bytes.Equal(committed, data) {
				t.Fatalf("%s differs from the model the test builds; rewrite it with OUTPOST_WRITE_OPS=1 and rerun scripts/oracle-ops", path)
			}
			var run Run
			if !ReadJSON(t, filepath.Join(dir, c.Name+".json"), &run) {
				t.Fatalf("no oracle output %s.json; run scripts/oracle-ops %s", c.Name, dir)
			}
			if c.MicroOnly {
				if run.Error == "" {
					t.Fatalf("marked MicroOnly, but the official runtime runs it: judge it with both")
				}
				micro := filepath.Join(dir, c.Name+".tflm.json")
				var m Run
				if !ReadJSON(t, micro, &m) || m.Error != "" || len(m.Inputs) == 0 {
					t.Fatalf("no TFLite Micro run with inputs in %s (error %q); run scripts/tflm-ops %s", micro, m.Error, dir)
				}
				ip := NewInterpreter(t, data, c.Resolver)
				SetInputs(t, ip, m)
				if err := ip.Invoke(); err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				CompareMicro(t, ip, micro, c.MicroTol)
				return
			}
			if run.Error != "" {
				t.Fatalf("the official runtime failed on this model: %s", run.Error)
			}
			ip := NewInterpreter(t, data, c.Resolver)
			SetInputs(t, ip, run)
			if err := ip.Invoke(); err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			tol := c.Tol
			if tol == nil {
				tol = Exact
			}
			Compare(t, ip, run.Outputs, tol)
			if c.NotMicro != "" {
				t.Logf("TFLite Micro does not judge this model: %s", c.NotMicro)
				return
			}
			CompareMicro(t, ip, filepath.Join(dir, c.Name+".tflm.json"), c.MicroTol)
		})
	}
}

// CompareMicro checks ip's outputs, computed from the official runtime's inputs, against
// TFLite Micro's outputs for the same inputs in path (written by scripts/tflm-ops); tol nil
// means Exact. A missing file fails the test; a file holding TFLite Micro's error (a model it
// cannot run) is logged and leaves the official runtime as the only judge.
func CompareMicro(t testing.TB, ip *tflite.Interpreter, path string, tol func(tensor.DType) Tolerance) {
	t.Helper()
	var micro Run
	if !ReadJSON(t, path, &micro) {
		t.Fatalf("no TFLite Micro output %s; run scripts/tflm-ops %s", filepath.Base(path), filepath.Dir(path))
	}
	if micro.Error != "" {
		t.Logf("TFLite Micro does not run this model (%s); the official runtime alone judges it", micro.Error)
		return
	}
	if tol == nil {
		tol = Exact
	}
	Compare(t, ip, micro.Outputs, tol)
}
