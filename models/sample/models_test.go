package sample_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/train"
)

// The four committed sample models, float32 and int8 of each.
var sampleModels = []string{"vibration-anomaly-f32", "vibration-anomaly-i8", "activity-f32", "activity-i8"}

var (
	trainOnce sync.Once
	artifacts map[string]*train.Artifact
	trainErr  error
)

// trained regenerates the sample models in memory (a few seconds, once per test binary): the
// trainer's forward passes are the reference the oracle outputs are checked against.
func trained(t *testing.T) map[string]*train.Artifact {
	t.Helper()
	trainOnce.Do(func() {
		artifacts = map[string]*train.Artifact{}
		vib, err := train.Run(train.DefaultConfig(), train.DefaultIdentity(), nil)
		if err != nil {
			trainErr = err
			return
		}
		act, err := train.RunActivity(train.DefaultActivityConfig(), train.DefaultActivityIdentity(), nil)
		if err != nil {
			trainErr = err
			return
		}
		for _, a := range append(vib.Artifacts, act.Artifacts...) {
			artifacts[a.Manifest.Name] = a
		}
	})
	if trainErr != nil {
		t.Fatalf("train: %v", trainErr)
	}
	return artifacts
}

// TestCommittedFilesAreCurrent: `make models` must reproduce every committed file byte for
// byte, so the oracle outputs below describe exactly the committed models.
func TestCommittedFilesAreCurrent(t *testing.T) {
	for _, name := range sampleModels {
		a := trained(t)[name]
		if a == nil {
			t.Fatalf("trainer made no %s", name)
		}
		for _, f := range []struct {
			file string
			want []byte
		}{{name + ".tflite", a.TFLite}, {name + ".json", a.JSON}, {bundle.FileName(a.Manifest), a.Package}} {
			got, err := os.ReadFile(f.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, f.want) {
				t.Errorf("%s differs from what the trainer makes now; run `make models` and refresh the oracle outputs (docs/models.md)", f.file)
			}
		}
	}
}

// TestPackagesVerify opens every committed package with the DEMO public key.
func TestPackagesVerify(t *testing.T) {
	for _, name := range sampleModels {
		a := trained(t)[name]
		data, err := os.ReadFile(bundle.FileName(a.Manifest))
		if err != nil {
			t.Fatal(err)
		}
		p, err := bundle.Open(data, bundle.DemoKey().Public().(ed25519.PublicKey), bundle.Limits{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Manifest.Name != name || p.Manifest.Baseline == nil || len(p.Manifest.Golden.Vectors) != train.GoldenWindows {
			t.Errorf("%s: package manifest %q, baseline %v, golden vectors %d", name, p.Manifest.Name, p.Manifest.Baseline != nil, len(p.Manifest.Golden.Vectors))
		}
	}
}

// runner runs one model on tensor values: through the pure-Go interpreter when it has every
// kernel the model needs, else nil.
func interpreter(t *testing.T, model []byte) func([]float64) []float64 {
	m, err := tflite.Load(model)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
	if err != nil {
		t.Logf("the interpreter cannot run this model yet (%v): checked against the trainer's reference only", err)
		return nil
	}
	return func(in []float64) []float64 {
		x, y := ip.Input(0), ip.Output(0)
		switch x.DType() {
		case tensor.Int8:
			for i, v := range in {
				x.Int8()[i] = int8(v)
			}
		default:
			for i, v := range in {
				x.Float32()[i] = float32(v)
			}
		}
		if err := ip.Invoke(); err != nil {
			t.Fatalf("Invoke: %v", err)
		}
		out := make([]float64, y.NumElements())
		for i := range out {
			if y.DType() == tensor.Int8 {
				out[i] = float64(y.Int8()[i])
			} else {
				out[i] = float64(y.Float32()[i])
			}
		}
		return out
	}
}

// oracleInputs regenerates the official runtime's --random inputs (its README gives the
// generator) for one case.
func oracleInputs(seed uint32, n int, int8In bool) []float64 {
	fmix := func(h uint32) uint32 {
		h ^= h >> 16
		h *= 0x85EBCA6B
		h ^= h >> 13
		h *= 0xC2B2AE35
		h ^= h >> 16
		return h
	}
	s := fmix(seed)
	if s == 0 {
		s = 0x6D2B79F5
	}
	out := make([]float64, n)
	for i := range out {
		s ^= s << 13
		s ^= s >> 17
		s ^= s << 5
		if int8In {
			out[i] = float64(int8(uint8(s >> 24)))
		} else {
			out[i] = float64(float32(-1 + 2*float64(s>>8)/16777216))
		}
	}
	return out
}

type oracleLine struct {
	Header  bool           `json:"header"`
	Seed    *uint32        `json:"seed"`
	Name    string         `json:"name"`
	Inputs  []oracleTensor `json:"inputs"`
	Outputs []oracleTensor `json:"outputs"`
	Error   any            `json:"error"`
}

// compare checks got against the oracle's want: float within 1e-5 relative (1e-7 absolute
// floor for values that are practically zero), int8 within 3 LSB, same arg-max for classes.
func compare(t *testing.T, what string, int8Out, classes bool, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d outputs, oracle %d", what, len(got), len(want))
	}
	for i := range want {
		d := math.Abs(got[i] - want[i])
		ok := d <= 1e-5*math.Abs(want[i])+1e-7
		if int8Out {
			ok = d <= 3
		}
		if !ok {
			t.Errorf("%s: output %d = %.9g, oracle %.9g", what, i, got[i], want[i])
		}
	}
	if classes && bundle.ArgMax(got) != bundle.ArgMax(want) {
		// A tie in the oracle's int8 output may break either way within the tolerance.
		if !(int8Out && math.Abs(got[bundle.ArgMax(want)]-want[bundle.ArgMax(got)]) <= 1) {
			t.Errorf("%s: arg-max %d, oracle %d (%v vs %v)", what, bundle.ArgMax(got), bundle.ArgMax(want), got, want)
		}
	}
}

// TestModelsMatchOracle compares the official TFLite runtime's outputs (committed under
// testdata/) on the golden vectors and 1,000 random inputs with the trainer's reference
// forward pass, with the pure-Go interpreter where it supports the model, and with the
// expected outputs in the manifest (within the manifest's own tolerance).
func TestModelsMatchOracle(t *testing.T) {
	for _, name := range sampleModels {
		t.Run(name, func(t *testing.T) {
			a := trained(t)[name]
			man := a.Manifest
			int8Out := man.Output.DType == "int8"
			classes := man.Output.Kind == bundle.OutputClasses
			run := interpreter(t, a.TFLite)
			inLen := man.Input.Window * len(man.Input.Channels)
			var maxRef, maxInterp float64 // largest absolute differences from the oracle
			check := func(what string, in, want []float64) {
				ref := a.Reference(in)
				compare(t, what+" reference", int8Out, classes, ref, want)
				for i, v := range ref {
					maxRef = max(maxRef, math.Abs(v-want[i]))
				}
				if run != nil {
					got := run(in)
					compare(t, what+" interpreter", int8Out, classes, got, want)
					for i, v := range got {
						maxInterp = max(maxInterp, math.Abs(v-want[i]))
					}
				}
			}
			golden := readLines(t, name+".oracle-golden.jsonl")
			if len(golden) != len(man.Golden.Vectors) {
				t.Fatalf("%d oracle golden cases, manifest has %d vectors", len(golden), len(man.Golden.Vectors))
			}
			for i, c := range golden {
				v := man.Golden.Vectors[i]
				if c.Name != v.Name || !equal(c.Inputs[0].Values, v.Input) {
					t.Fatalf("oracle golden case %d (%s) was run on other inputs than manifest vector %q", i, c.Name, v.Name)
				}
				want := c.Outputs[0].Values
				check("golden "+v.Name, v.Input, want)
				for j, w := range v.Output {
					if d := math.Abs(w - want[j]); d > man.Golden.Tolerance.Abs+man.Golden.Tolerance.Rel*math.Abs(want[j]) {
						t.Errorf("manifest golden %q output %d = %v, oracle %v: beyond the manifest's tolerance", v.Name, j, w, want[j])
					}
				}
			}
			random := readLines(t, name+".oracle-random1.jsonl")
			if len(random) != 1000 {
				t.Fatalf("%d random cases, want 1000", len(random))
			}
			for _, c := range random {
				in := oracleInputs(*c.Seed, inLen, man.Input.DType == "int8")
				check("random seed "+itoa(int(*c.Seed)), in, c.Outputs[0].Values)
			}
			if run != nil {
				t.Logf("largest difference from the oracle: reference %g, interpreter %g", maxRef, maxInterp)
			} else {
				t.Logf("largest difference from the oracle: reference %g (interpreter not run)", maxRef)
			}
		})
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if float32(a[i]) != float32(b[i]) {
			return false
		}
	}
	return true
}

func itoa(i int) string { return strconv.Itoa(i) }

func readLines(t *testing.T, name string) []oracleLine {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var out []oracleLine
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var c oracleLine
		if err := json.Unmarshal(line, &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Error != nil {
			t.Fatalf("%s: oracle error %v", name, c.Error)
		}
		if c.Header {
			continue
		}
		if len(c.Outputs) != 1 {
			t.Fatalf("%s case %d: %d outputs", name, len(out), len(c.Outputs))
		}
		out = append(out, c)
	}
	return out
}
