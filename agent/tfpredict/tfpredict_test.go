package tfpredict_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/models/sim"
)

const (
	sampleModel    = "../../models/sample/vibration-anomaly-f32.tflite"
	sampleManifest = "../../models/sample/vibration-anomaly-f32.json"
	oracle         = "../../models/sample/testdata/oracle-windows.jsonl"
)

func load(t *testing.T) *tfpredict.Predictor {
	t.Helper()
	p, err := tfpredict.Load(sampleModel, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSpecFromManifest(t *testing.T) {
	p := load(t)
	s := p.Spec()
	if s.Window != 64 || s.Stride != 32 || s.Channels != 1 || s.SampleRateHz != 50 ||
		s.OutputKind != agent.OutputAnomaly || s.Threshold != 0.5 || len(s.Mean) != 1 || len(s.Std) != 1 ||
		len(s.Labels) != 2 {
		t.Fatalf("Spec() = %+v", s)
	}
	m := p.Model()
	if m.Name != "vibration-anomaly-f32" || m.Version != "1.0.0" || len(m.SHA256) != 64 {
		t.Fatalf("Model() = %+v", m)
	}
}

// The oracle file holds windows run through the reference TensorFlow Lite runtime.
func TestMatchesOracle(t *testing.T) {
	p := load(t)
	f, err := os.Open(oracle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type tensorVals struct {
		Values []float32 `json:"values"`
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	cases := 0
	for sc.Scan() {
		var c struct {
			Name    string       `json:"name"`
			Header  bool         `json:"header"`
			Inputs  []tensorVals `json:"inputs"`
			Outputs []tensorVals `json:"outputs"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		if c.Header {
			continue
		}
		cases++
		out, lat, err := p.Predict(c.Inputs[0].Values)
		if err != nil {
			t.Fatalf("%s: Predict = %v", c.Name, err)
		}
		want := c.Outputs[0].Values[0]
		if math.Abs(float64(out[0]-want)) > 1e-5+1e-4*math.Abs(float64(want)) || lat <= 0 {
			t.Errorf("%s: Predict = %v (latency %v), oracle %v", c.Name, out[0], lat, want)
		}
	}
	if err := sc.Err(); err != nil || cases == 0 {
		t.Fatalf("read oracle: %d cases, %v", cases, err)
	}
}

// Windows of the simulated sensor, normalized as the agent does, score like the manifest's
// metrics promise: healthy below the threshold, faults above it.
func TestSimulatedMachine(t *testing.T) {
	p := load(t)
	s := p.Spec()
	for _, fault := range sim.Faults {
		t.Run(fault.String(), func(t *testing.T) {
			gen := sim.NewVibration(sim.VibrationConfig{Seed: 11, SampleRateHz: s.SampleRateHz, Fault: fault})
			w := make([]float32, s.Window)
			hits := 0
			const windows = 40
			for range windows {
				for i := range w {
					w[i] = (float32(gen.Next()) - s.Mean[0]) / s.Std[0]
				}
				out, _, err := p.Predict(w)
				if err != nil {
					t.Fatal(err)
				}
				if (float64(out[0]) >= s.Threshold) == (fault != sim.FaultNone) {
					hits++
				}
			}
			if hits < windows*8/10 {
				t.Fatalf("%d of %d windows classified right, want ≥ 80%%", hits, windows)
			}
		})
	}
}

func TestPredictAllocatesNothing(t *testing.T) {
	p := load(t)
	w := make([]float32, 64)
	if n := testing.AllocsPerRun(100, func() { _, _, _ = p.Predict(w) }); n != 0 {
		t.Fatalf("Predict allocates %v times per call", n)
	}
	if _, _, err := p.Predict(w[:10]); err == nil || !strings.Contains(err.Error(), "window of 10 values") {
		t.Fatalf("Predict(short window) = %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	model, err := os.ReadFile(sampleModel)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(sampleManifest)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte{}, model...)
	flipped[len(flipped)/2] ^= 0xff
	write("flipped.tflite", flipped)
	write("flipped.json", manifest)
	write("bad.json", []byte(`{"format": 1}`))
	write("bad.tflite", model)
	write("nomanifest.tflite", model)
	// Garbage with a manifest that vouches for it: the interpreter must reject it.
	garbage := []byte(strings.Repeat("garbage!", 100))
	write("garbage.tflite", garbage)
	var man map[string]any
	if err := json.Unmarshal(manifest, &man); err != nil {
		t.Fatal(err)
	}
	man["sha256"] = sha(garbage)
	man["size"] = len(garbage)
	gm, _ := json.Marshal(man)
	write("garbage.json", gm)

	tests := []struct{ name, model, manifest, want string }{
		{"missing model", filepath.Join(dir, "none.tflite"), sampleManifest, "no such file"},
		{"missing manifest", filepath.Join(dir, "nomanifest.tflite"), "", "read manifest"},
		{"bad manifest", filepath.Join(dir, "bad.tflite"), "", "invalid manifest"},
		{"checksum", filepath.Join(dir, "flipped.tflite"), "", "does not match the manifest"},
		{"not tflite", filepath.Join(dir, "garbage.tflite"), "", "garbage.tflite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tfpredict.Load(tt.model, tt.manifest)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Load(%s, %q) = %v, want one-line error containing %q", tt.model, tt.manifest, err, tt.want)
			}
		})
	}
}

func BenchmarkPredict(b *testing.B) {
	p, err := tfpredict.Load(sampleModel, "")
	if err != nil {
		b.Fatal(err)
	}
	w := make([]float32, p.Spec().Window)
	for i := range w {
		w[i] = float32(i%7) / 7
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.Predict(w); err != nil {
			b.Fatal(err)
		}
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
