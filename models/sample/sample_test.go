// Package sample_test runs the committed sample models through the pure-Go interpreter and
// checks them against the official TFLite runtime's outputs committed under testdata/.
package sample_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

type oracleTensor struct {
	Name   string    `json:"name"`
	Values []float64 `json:"values"`
}

type oracleCase struct {
	Header  bool           `json:"header"`
	Name    string         `json:"name"`
	Inputs  []oracleTensor `json:"inputs"`
	Outputs []oracleTensor `json:"outputs"`
}

func readOracle(t *testing.T, name string) []oracleCase {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []oracleCase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var c oracleCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !c.Header {
			cases = append(cases, c)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", name)
	}
	return cases
}

// TestVibrationAnomalyMatchesOracle: the interpreter's score must match the official
// runtime's within 1e-5 relative (plus 1e-7 absolute for scores that are practically 0).
func TestVibrationAnomalyMatchesOracle(t *testing.T) {
	data, err := os.ReadFile("vibration-anomaly-f32.tflite")
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
	for _, file := range []string{"oracle-random1.json", "oracle-windows.jsonl"} {
		for _, c := range readOracle(t, file) {
			name := c.Name
			if name == "" {
				name = file
			}
			t.Run(name, func(t *testing.T) {
				in := ip.Input(0).Float32()
				if len(c.Inputs) != 1 || len(c.Inputs[0].Values) != len(in) {
					t.Fatalf("golden has %d inputs, model input holds %d values", len(c.Inputs), len(in))
				}
				for i, v := range c.Inputs[0].Values {
					in[i] = float32(v)
				}
				if err := ip.Invoke(); err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				got := float64(ip.Output(0).Float32()[0])
				want := c.Outputs[0].Values[0]
				if math.Abs(got-want) > 1e-5*math.Abs(want)+1e-7 {
					t.Errorf("anomaly_score = %.9g, oracle %.9g", got, want)
				}
			})
		}
	}
}

// TestManifestDescribesModel ties the committed manifest to the committed model file.
func TestManifestDescribesModel(t *testing.T) {
	js, err := os.ReadFile("vibration-anomaly-f32.json")
	if err != nil {
		t.Fatal(err)
	}
	man, err := bundle.DecodeManifest(js)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(man.ModelFile)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != man.SHA256 || int64(len(data)) != man.Size {
		t.Errorf("model sha256 %s size %d, manifest says %s size %d", got, len(data), man.SHA256, man.Size)
	}
}
