package sample_test

import (
	"path/filepath"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
)

// TestModelsMatchMicro is the second judge on the committed sample models: on the inputs of
// their golden cases, the interpreter's outputs equal those of TFLite Micro's reference
// interpreter bit for bit for the int8 models and within the float tolerance for the float
// ones. TFLite Micro's outputs are committed as testdata/NAME.tflm-golden.jsonl by
// scripts/tflm-samples.
func TestModelsMatchMicro(t *testing.T) {
	for _, name := range sampleModels {
		t.Run(name, func(t *testing.T) {
			ip := oracletest.ReadInterpreter(t, name+".tflite", kernels.Builtins())
			golden := oracletest.ReadLines(t, filepath.Join("testdata", name+".oracle-golden.jsonl"))
			if len(golden) > 0 && golden[0].Header {
				golden = golden[1:]
			}
			micro := oracletest.ReadLines(t, filepath.Join("testdata", name+".tflm-golden.jsonl"))
			if len(micro) != len(golden) || len(micro) == 0 {
				t.Fatalf("%d TFLite Micro cases for %d golden cases; run scripts/tflm-samples", len(micro), len(golden))
			}
			for i, c := range golden {
				m := micro[i]
				if m.Name != c.Name || m.Error != "" {
					t.Fatalf("TFLite Micro case %d is %q (error %q), golden case is %q", i, m.Name, m.Error, c.Name)
				}
				oracletest.SetInputs(t, ip, c)
				if err := ip.Invoke(); err != nil {
					t.Fatal(err)
				}
				oracletest.Compare(t, ip, m.Outputs, oracletest.Exact)
			}
		})
	}
}
