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

// TestCorpusMicro is the second judge on the conformance corpus: every model TFLite Micro's
// reference interpreter runs must give, on the full runtime's seed-1 inputs, integer outputs
// equal to TFLite Micro's bit for bit (floats within the float tolerance). TFLite Micro's
// outputs are committed under testdata/tflm-corpus by scripts/tflm-corpus; models it refuses
// hold its error and are judged by TestCorpus alone.
func TestCorpusMicro(t *testing.T) {
	dir := oracletest.CorpusDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.tflite"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no models in %s: %v", dir, err)
	}
	var exact, refusedByMicro, refusedHere []string
	for _, f := range files {
		name := filepath.Base(filepath.Dir(f))
		t.Run(name, func(t *testing.T) {
			var run oracletest.Run
			if !oracletest.ReadJSON(t, filepath.Join(filepath.Dir(f), "oracle-1.json"), &run) || run.Error != "" {
				t.Skip("no full-runtime inputs (oracle-1.json) for this model")
			}
			var micro oracletest.Run
			path := filepath.Join("testdata", "tflm-corpus", name+".json")
			if !oracletest.ReadJSON(t, path, &micro) {
				t.Fatalf("no TFLite Micro output %s; run scripts/tflm-corpus", path)
			}
			if micro.Error != "" {
				refusedByMicro = append(refusedByMicro, name)
				t.Skipf("TFLite Micro does not run it: %s", micro.Error)
			}
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
				refusedHere = append(refusedHere, name)
				t.Skipf("not run here (TestCorpus checks the refusal): %v", err)
			}
			oracletest.SetInputs(t, ip, run)
			if err := ip.Invoke(); err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			oracletest.Compare(t, ip, micro.Outputs, oracletest.Exact)
			if !t.Failed() {
				exact = append(exact, name)
			}
		})
	}
	sort.Strings(exact)
	t.Logf("%d models equal TFLite Micro: %s", len(exact), strings.Join(exact, ", "))
	t.Logf("%d refused by TFLite Micro: %s", len(refusedByMicro), strings.Join(refusedByMicro, ", "))
	t.Logf("%d refused here: %s", len(refusedHere), strings.Join(refusedHere, ", "))
}
