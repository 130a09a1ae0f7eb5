// Package oracletest holds the test helpers that compare the pure-Go interpreter with the
// official TFLite runtime's outputs (the oracle, ../shared/oracle): reading the oracle's JSON,
// feeding its inputs to an Interpreter, comparing outputs within the numerics contract, the
// single-op model harness (OpCase), and the checks every interpreter test repeats (harness.go:
// building an interpreter, zero-allocation Invoke, one-line rejection of a bad model, TFLite
// Micro's csv test vectors). Only tests import it.
package oracletest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
)

// Tolerances against the official runtime (docs/tflite.md states the contract): float32 within
// RelTol relative plus AbsTol absolute near zero; int8/uint8 graphs within Int8LSB units because
// XNNPACK requantizes in float (see the oracle README); int16 and int32 exact (those kernels are
// not delegated).
const (
	RelTol  = 1e-5
	AbsTol  = 1e-6
	Int8LSB = 3
)

// Tensor is one tensor of the oracle's JSON output.
type Tensor struct {
	Position int    `json:"position"`
	Tensor   int    `json:"tensor"`
	Name     string `json:"name"`
	DType    string `json:"dtype"`
	Shape    []int  `json:"shape"`
	Values   []any  `json:"values"`
}

// Run is one oracle run (a single-run object, or one case line of a batch).
type Run struct {
	Inputs  []Tensor `json:"inputs"`
	Outputs []Tensor `json:"outputs"`
	Error   string   `json:"error"`
	Header  bool     `json:"header"`
	Name    string   `json:"name"`
	Case    int      `json:"case"`
}

// RepoRoot walks up from the working directory to the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.mod) not found")
		}
		dir = parent
	}
}

// CorpusDir is <repo root>/../shared/tflite-conformance (or $OUTPOST_SHARED_DIR/
// tflite-conformance, for a checkout elsewhere); the test is skipped, saying why, only when
// that directory is absent.
func CorpusDir(t testing.TB) string {
	t.Helper()
	shared := os.Getenv("OUTPOST_SHARED_DIR")
	if shared == "" {
		shared = filepath.Join(RepoRoot(t), "..", "shared")
	}
	c := filepath.Join(shared, "tflite-conformance")
	if _, err := os.Stat(c); err != nil {
		t.Skipf("conformance corpus %s absent: %v", c, err)
	}
	return c
}

// Value converts one JSON value of the oracle (a number, or "NaN"/"Infinity"/"-Infinity").
func Value(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case string:
		switch x {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
	}
	return 0, fmt.Errorf("bad value %v", v)
}

// SetInput writes oracle values into an interpreter tensor.
func SetInput(t testing.TB, dst *tensor.Tensor, vals []any) {
	t.Helper()
	if len(vals) != dst.NumElements() {
		t.Fatalf("input %q: %d values for %d elements", dst.Name(), len(vals), dst.NumElements())
	}
	for i, v := range vals {
		f, err := Value(v)
		if err != nil {
			t.Fatalf("input %q: %v", dst.Name(), err)
		}
		switch dst.DType() {
		case tensor.Float32:
			dst.Float32()[i] = float32(f)
		case tensor.Float64:
			dst.Float64()[i] = f
		case tensor.Int8:
			dst.Int8()[i] = int8(f)
		case tensor.Uint8:
			dst.Uint8()[i] = uint8(f)
		case tensor.Int16:
			dst.Int16()[i] = int16(f)
		case tensor.Int32:
			dst.Int32()[i] = int32(f)
		case tensor.Uint32:
			dst.Uint32()[i] = uint32(f)
		case tensor.Int64:
			dst.Int64()[i] = int64(f)
		case tensor.Bool:
			dst.Bool()[i] = uint8(f)
		default:
			t.Fatalf("input %q: dtype %s not handled by the test", dst.Name(), dst.DType())
		}
	}
}

// SetInputs feeds every input of run to ip.
func SetInputs(t testing.TB, ip *tflite.Interpreter, run Run) {
	t.Helper()
	for _, in := range run.Inputs {
		SetInput(t, ip.Input(in.Position), in.Values)
	}
}

// Values reads any numeric tensor as float64s.
func Values(t testing.TB, src *tensor.Tensor) []float64 {
	t.Helper()
	out := make([]float64, src.NumElements())
	for i := range out {
		switch src.DType() {
		case tensor.Float32:
			out[i] = float64(src.Float32()[i])
		case tensor.Float64:
			out[i] = src.Float64()[i]
		case tensor.Int8:
			out[i] = float64(src.Int8()[i])
		case tensor.Uint8:
			out[i] = float64(src.Uint8()[i])
		case tensor.Int16:
			out[i] = float64(src.Int16()[i])
		case tensor.Int32:
			out[i] = float64(src.Int32()[i])
		case tensor.Uint32:
			out[i] = float64(src.Uint32()[i])
		case tensor.Int64:
			out[i] = float64(src.Int64()[i])
		case tensor.Bool:
			out[i] = float64(src.Bool()[i])
		default:
			t.Fatalf("output %q: dtype %s not handled by the test", src.Name(), src.DType())
		}
	}
	return out
}

// Tolerance says how far an output may be from the oracle.
type Tolerance struct {
	Rel, Abs float64 // float outputs
	LSB      float64 // integer outputs, in quantized units
}

// Default is the numerics contract: floats RelTol/AbsTol; int8 and uint8 Int8LSB; wider
// integers exact.
func Default(dt tensor.DType) Tolerance {
	switch dt {
	case tensor.Float32, tensor.Float64:
		return Tolerance{Rel: RelTol, Abs: AbsTol}
	case tensor.Int8, tensor.Uint8:
		return Tolerance{LSB: Int8LSB}
	}
	return Tolerance{}
}

// Exact demands bit-exact integer outputs (reference-kernel arithmetic, no XNNPACK in the way).
func Exact(dt tensor.DType) Tolerance {
	if dt == tensor.Float32 || dt == tensor.Float64 {
		return Default(dt)
	}
	return Tolerance{}
}

// Compare checks every output of ip against the oracle's, with tol choosing the tolerance per
// dtype (nil: Default).
func Compare(t testing.TB, ip *tflite.Interpreter, want []Tensor, tol func(tensor.DType) Tolerance) {
	t.Helper()
	if tol == nil {
		tol = Default
	}
	if len(want) != ip.NumOutputs() {
		t.Fatalf("%d outputs, oracle has %d", ip.NumOutputs(), len(want))
	}
	for _, w := range want {
		out := ip.Output(w.Position)
		if out.DType().String() != w.DType {
			t.Errorf("output %d dtype %s, oracle %s", w.Position, out.DType(), w.DType)
			continue
		}
		if w.Shape != nil && !slices.Equal(out.Shape(), w.Shape) {
			t.Errorf("output %d shape %v, oracle %v", w.Position, out.Shape(), w.Shape)
			continue
		}
		got := Values(t, out)
		if len(got) != len(w.Values) {
			t.Fatalf("output %d: %d values, oracle %d", w.Position, len(got), len(w.Values))
		}
		tl := tol(out.DType())
		bad := 0
		for i, g := range got {
			o, err := Value(w.Values[i])
			if err != nil {
				t.Fatal(err)
			}
			diff := math.Abs(g - o)
			var ok bool
			switch out.DType() {
			case tensor.Float32, tensor.Float64:
				ok = g == o || (math.IsNaN(g) && math.IsNaN(o)) || diff <= tl.Rel*math.Max(math.Abs(g), math.Abs(o))+tl.Abs
			default:
				ok = diff <= tl.LSB
			}
			if !ok {
				bad++
				if bad <= 5 {
					t.Errorf("output %d element %d = %v, oracle %v", w.Position, i, g, o)
				}
			}
		}
		if bad > 0 {
			t.Errorf("output %d: %d of %d elements outside tolerance %+v", w.Position, bad, len(got), tl)
		}
	}
}

// ReadJSON decodes the file at path into v; false when the file does not exist.
func ReadJSON(t testing.TB, path string, v any) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return true
}

// ReadLines decodes a JSON Lines file of runs (a batch's header line included, Header set).
func ReadLines(t testing.TB, path string) []Run {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Run
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r Run
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
