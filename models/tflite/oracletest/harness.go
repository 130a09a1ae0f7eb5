package oracletest

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
)

// The harness the interpreter and kernel tests share: building an interpreter from a model,
// holding Invoke at zero allocations, checking that a bad model is refused with one clear line,
// and reading TFLite Micro's integer csv test vectors.

// AllocRuns is how many Invokes ZeroAllocs averages over.
const AllocRuns = 20

// NewInterpreter loads data and builds an interpreter over r with default options, failing
// t on any error.
func NewInterpreter(t testing.TB, data []byte, r tflite.OpResolver) *tflite.Interpreter {
	t.Helper()
	m, err := tflite.Load(data)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ip, err := tflite.NewInterpreter(m, r, tflite.Options{})
	if err != nil {
		t.Fatalf("NewInterpreter: %v", err)
	}
	return ip
}

// BuildInterpreter is NewInterpreter on the model that build writes.
func BuildInterpreter(t testing.TB, build func() ([]byte, error), r tflite.OpResolver) *tflite.Interpreter {
	t.Helper()
	data, err := build()
	if err != nil {
		t.Fatalf("build model: %v", err)
	}
	return NewInterpreter(t, data, r)
}

// ReadInterpreter is NewInterpreter on the model file at path.
func ReadInterpreter(t testing.TB, path string, r tflite.OpResolver) *tflite.Interpreter {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return NewInterpreter(t, data, r)
}

// ZeroAllocs fails t unless ip.Invoke succeeds without allocating, averaged over AllocRuns
// calls on whatever the inputs hold.
func ZeroAllocs(t testing.TB, ip *tflite.Interpreter) {
	t.Helper()
	var invokeErr error
	n := testing.AllocsPerRun(AllocRuns, func() {
		if err := ip.Invoke(); err != nil && invokeErr == nil {
			invokeErr = err
		}
	})
	if invokeErr != nil {
		t.Fatalf("Invoke: %v", invokeErr)
	}
	if n != 0 {
		t.Errorf("Invoke allocates %v times, want 0", n)
	}
}

// RunAllocCases builds every case's model, lets prepare (nil: nothing) fill its inputs, and
// holds Invoke at zero allocations, one subtest per case.
func RunAllocCases(t *testing.T, cases []OpCase, prepare func(*tflite.Interpreter)) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if c.Resolver == nil {
				t.Fatal("op case without a Resolver")
			}
			ip := BuildInterpreter(t, c.Build, c.Resolver)
			if prepare != nil {
				prepare(ip)
			}
			ZeroAllocs(t, ip)
		})
	}
}

// Rejects checks that the model build writes is refused, by Load or else by NewInterpreter
// over r, with a one-line error containing want that does not come from a recovered panic.
func Rejects(t testing.TB, build func() ([]byte, error), r tflite.OpResolver, want string) {
	t.Helper()
	data, err := build()
	if err != nil {
		t.Fatalf("build model: %v", err)
	}
	m, err := tflite.Load(data)
	stage := "Load"
	if err == nil {
		stage = "NewInterpreter"
		_, err = tflite.NewInterpreter(m, r, tflite.Options{})
	}
	if err == nil {
		t.Fatalf("the model was accepted, want an error containing %q", want)
	}
	if msg := err.Error(); !strings.Contains(msg, want) || strings.Contains(msg, "\n") || strings.Contains(msg, "panic") {
		t.Errorf("%s error %q, want one line containing %q", stage, msg, want)
	}
}

// ReadCSVInts reads a TFLite Micro test vector: integers separated by commas, spaces or line
// breaks (\r\n included), in row-major order.
func ReadCSVInts(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.FieldsFunc(string(b), func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' })
	out := make([]int64, len(fields))
	for i, f := range fields {
		if out[i], err = strconv.ParseInt(f, 10, 64); err != nil {
			t.Fatalf("%s: value %d: %v", path, i, err)
		}
	}
	return out
}

// SetInts writes integers into an int8, int16, int32 or int64 tensor of exactly len(vals)
// elements.
func SetInts(t testing.TB, dst *tensor.Tensor, vals []int64) {
	t.Helper()
	if len(vals) != dst.NumElements() {
		t.Fatalf("input %q: %d values for %d elements", dst.Name(), len(vals), dst.NumElements())
	}
	for i, v := range vals {
		switch dst.DType() {
		case tensor.Int8:
			dst.Int8()[i] = int8(v)
		case tensor.Int16:
			dst.Int16()[i] = int16(v)
		case tensor.Int32:
			dst.Int32()[i] = int32(v)
		case tensor.Int64:
			dst.Int64()[i] = v
		default:
			t.Fatalf("input %q: dtype %s is not an integer type the test handles", dst.Name(), dst.DType())
		}
	}
}

// Ints reads an int8, int16, int32 or int64 tensor as int64s.
func Ints(t testing.TB, src *tensor.Tensor) []int64 {
	t.Helper()
	out := make([]int64, src.NumElements())
	for i := range out {
		switch src.DType() {
		case tensor.Int8:
			out[i] = int64(src.Int8()[i])
		case tensor.Int16:
			out[i] = int64(src.Int16()[i])
		case tensor.Int32:
			out[i] = int64(src.Int32()[i])
		case tensor.Int64:
			out[i] = src.Int64()[i]
		default:
			t.Fatalf("output %q: dtype %s is not an integer type the test handles", src.Name(), src.DType())
		}
	}
	return out
}

// EqualInts fails t (naming at most five elements) unless got equals want element for
// element; what says what want is, as in "the upstream golden".
func EqualInts(t testing.TB, got, want []int64, what string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("output has %d elements, %s %d", len(got), what, len(want))
	}
	bad := 0
	for i := range got {
		if got[i] != want[i] {
			if bad++; bad <= 5 {
				t.Errorf("element %d = %d, %s %d", i, got[i], what, want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d elements differ from %s", bad, len(got), what)
	}
}
