package tflite_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// Seeds: the committed corpus under testdata/fuzz (small real models and builder output), the
// builder's models, and the conformance models when present.
func addSeeds(f *testing.F) {
	f.Add(fcModel().bytes())
	f.Add(unaryModel(0, []int32{4}, []int32{4}, 0, nil).bytes())
	dir, err := os.Getwd()
	if err != nil {
		f.Fatal(err)
	}
	shared := filepath.Join(dir, "..", "..", "..", "shared", "tflite-conformance")
	for _, name := range []string{"hello_world_float/hello_world_float.tflite", "hello_world_int8/hello_world_int8.tflite", "seanet_quantize0/quantize0.tflite"} {
		if b, err := os.ReadFile(filepath.Join(shared, name)); err == nil {
			f.Add(b)
		}
	}
}

// FuzzLoad: Load returns a model or an error for any bytes, never panics (its recover would
// report "internal error", which fails here so the bug is found).
func FuzzLoad(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := tflite.Load(data, tflite.WithMaxBytes(8<<20))
		if err != nil {
			if strings.Contains(err.Error(), "internal error") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Load: %v", err)
			}
			return
		}
		_ = m.OpNames()
		for _, ti := range m.Tensors() {
			_ = ti.Constant()
		}
	})
}

// FuzzInvoke: mutated models that load must be refused by NewInterpreter or Invoke with an
// error, or run; kernels must not panic on shapes and types Prepare accepted.
func FuzzInvoke(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := tflite.Load(data, tflite.WithMaxBytes(8<<20))
		if err != nil {
			return
		}
		ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{MaxBytes: 16 << 20})
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatalf("NewInterpreter: %v", err)
			}
			return
		}
		for i := 0; i < ip.NumInputs(); i++ {
			b := ip.Input(i).Bytes()
			for j := range b {
				b[j] = byte(j*7 + i)
			}
		}
		if err := ip.Invoke(); err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatalf("Invoke: %v", err)
		}
	})
}
