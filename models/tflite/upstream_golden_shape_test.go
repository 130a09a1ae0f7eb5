package tflite_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
)

// TestUpstreamGoldenShape runs the corpus' seanet PAD, STRIDED_SLICE and QUANTIZE models on
// TFLite Micro's own integration-test inputs (<model>_input<k>_<dtype>.csv, input position k)
// and requires the outputs to equal <model>_golden_<dtype>.csv bit for bit. Each csv holds one
// line of comma-separated integers in row-major order.
func TestUpstreamGoldenShape(t *testing.T) {
	corpus := oracletest.CorpusDir(t)
	var dirs []string
	for _, pat := range []string{"seanet_pad*", "seanet_strided_slice*", "seanet_quantize*"} {
		m, err := filepath.Glob(filepath.Join(corpus, pat))
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, m...)
	}
	if len(dirs) == 0 {
		t.Fatal("no seanet pad/strided_slice/quantize models in the corpus")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			models, _ := filepath.Glob(filepath.Join(dir, "*.tflite"))
			if len(models) != 1 {
				t.Fatalf("%d models in %s, want 1", len(models), dir)
			}
			base := strings.TrimSuffix(models[0], ".tflite")
			data, err := os.ReadFile(models[0])
			if err != nil {
				t.Fatal(err)
			}
			m, err := tflite.Load(data)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
			if err != nil {
				t.Fatalf("NewInterpreter: %v", err)
			}
			for k := 0; k < ip.NumInputs(); k++ {
				in := ip.Input(k)
				if in.DType() != tensor.Int8 && in.DType() != tensor.Int16 && in.DType() != tensor.Int32 {
					t.Fatalf("input %d: %s is not an integer tensor", k, in)
				}
				vals := readCSVInts(t, base+"_input"+strconv.Itoa(k)+"_"+in.DType().String()+".csv")
				if len(vals) != in.NumElements() {
					t.Fatalf("input %d: %d csv values for %s", k, len(vals), in)
				}
				for i, v := range vals {
					setInt(in, i, v)
				}
			}
			if err := ip.Invoke(); err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			out := ip.Output(0)
			want := readCSVInts(t, base+"_golden_"+out.DType().String()+".csv")
			if len(want) != out.NumElements() {
				t.Fatalf("%d golden values for %s", len(want), out)
			}
			bad := 0
			for i, w := range want {
				if g := getInt(out, i); g != w {
					if bad < 5 {
						t.Errorf("output[%d] = %d, want %d", i, g, w)
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d outputs differ from the upstream golden", bad, len(want))
			}
		})
	}
}

func readCSVInts(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v []int64
	for _, f := range strings.Split(strings.TrimSpace(string(b)), ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		x, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		v = append(v, x)
	}
	return v
}

func setInt(t *tensor.Tensor, i int, v int64) {
	switch t.DType() {
	case tensor.Int8:
		t.Int8()[i] = int8(v)
	case tensor.Int16:
		t.Int16()[i] = int16(v)
	case tensor.Int32:
		t.Int32()[i] = int32(v)
	}
}

func getInt(t *tensor.Tensor, i int) int64 {
	switch t.DType() {
	case tensor.Int8:
		return int64(t.Int8()[i])
	case tensor.Int16:
		return int64(t.Int16()[i])
	case tensor.Int32:
		return int64(t.Int32()[i])
	}
	return -1 << 62
}
