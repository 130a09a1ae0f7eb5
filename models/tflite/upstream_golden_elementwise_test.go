package tflite_test

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
)

// TestUpstreamGoldenElementwise runs the seanet ADD, SUB and LEAKY_RELU models of the corpus on
// TFLite Micro's own int16 test vectors (NAME_input{0,1}_int16.csv) and requires the outputs
// to equal NAME_golden_int16.csv exactly: those goldens come from TFLite Micro's reference
// kernels. The csv files hold one line of comma-separated integers in row-major order.
func TestUpstreamGoldenElementwise(t *testing.T) {
	dir := oracletest.CorpusDir(t)
	var dirs []string
	for _, pat := range []string{"seanet_add*", "seanet_sub*", "seanet_leaky_relu*"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, m...)
	}
	sort.Strings(dirs)
	if len(dirs) == 0 {
		t.Fatalf("no seanet elementwise models in %s", dir)
	}
	for _, d := range dirs {
		t.Run(filepath.Base(d), func(t *testing.T) {
			models, _ := filepath.Glob(filepath.Join(d, "*.tflite"))
			if len(models) != 1 {
				t.Fatalf("%d .tflite files in %s, want 1", len(models), d)
			}
			base := strings.TrimSuffix(models[0], ".tflite")
			data, err := os.ReadFile(models[0])
			if err != nil {
				t.Fatal(err)
			}
			m, err := tflite.Load(data)
			if err != nil {
				t.Fatal(err)
			}
			ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < ip.NumInputs(); i++ {
				vals := readElementwiseCSV(t, base+"_input"+strconv.Itoa(i)+"_int16.csv")
				in := ip.Input(i).Int16()
				if len(vals) != len(in) {
					t.Fatalf("input %d: %d csv values for %d elements", i, len(vals), len(in))
				}
				for j, v := range vals {
					in[j] = int16(v)
				}
			}
			if err := ip.Invoke(); err != nil {
				t.Fatal(err)
			}
			want := readElementwiseCSV(t, base+"_golden_int16.csv")
			got := ip.Output(0).Int16()
			if len(got) != len(want) {
				t.Fatalf("%d outputs, golden has %d", len(got), len(want))
			}
			bad := 0
			for i := range got {
				if int64(got[i]) != want[i] {
					if bad++; bad <= 5 {
						t.Errorf("element %d = %d, golden %d", i, got[i], want[i])
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d elements differ from the upstream golden", bad, len(got))
			}
		})
	}
}

// readElementwiseCSV reads comma-separated integers (any line breaks, \r\n included).
func readElementwiseCSV(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.FieldsFunc(string(b), func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' })
	out := make([]int64, len(f))
	for i, s := range f {
		if out[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("%s: value %d: %v", path, i, err)
		}
	}
	return out
}
