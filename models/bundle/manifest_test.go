package bundle

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func validManifest() *Manifest {
	return &Manifest{
		Format: ManifestFormat, Name: "vibration-anomaly-f32", Version: "1.0.0", Created: "2025-01-01T00:00:00Z",
		ModelFile: "vibration-anomaly-f32.tflite", SHA256: strings.Repeat("ab", 32), Size: 100,
		Input: Input{Sensor: "vibration", Channels: []string{"accel"}, SampleRateHz: 50, Window: 64, Stride: 32,
			Normalization: []Normalization{{Mean: 0, Std: 0.25}}, DType: "float32", Shape: []int{1, 64}},
		Output:          Output{Kind: OutputAnomalyScore, Labels: []string{"normal", "anomaly"}, Threshold: 0.5, DType: "float32"},
		Metrics:         Metrics{Accuracy: 0.99, Recall: map[string]float64{"bearing": 0.9}},
		Ops:             []string{"FULLY_CONNECTED", "LOGISTIC"},
		MinAgentVersion: "0.1.0",
		Baseline:        testBaseline(),
		Golden: &Golden{Tolerance: Tolerance{Abs: 1e-5, Rel: 1e-4}, Vectors: []GoldenVector{
			{Name: "zeros", Input: make([]float64, 64), Output: []float64{0.25}},
		}},
	}
}

func testBaseline() *Baseline {
	in := make([]float64, 256)
	for i := range in {
		in[i] = float64(i%17) / 10
	}
	b, err := ComputeBaseline("test", []string{"accel"}, [][]float64{in[:64], in[64:128], in[128:192], in[192:]},
		[][]float64{{0.1}, {0.2}, {0.9}, {0.3}}, []string{"anomaly_score"})
	if err != nil {
		panic(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	b, err := validManifest().Encode()
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeManifest(b)
	if err != nil {
		t.Fatalf("DecodeManifest(Encode()) = %v", err)
	}
	b2, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Errorf("re-encoding changed the manifest:\n%s\n%s", b, b2)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Manifest)
		want   string
	}{
		{"format", func(m *Manifest) { m.Format = 2 }, "format 2"},
		{"name missing", func(m *Manifest) { m.Name = "" }, "name"},
		{"name upper", func(m *Manifest) { m.Name = "Vib" }, "name"},
		{"version", func(m *Manifest) { m.Version = "1.0" }, "version"},
		{"prerelease ok", func(m *Manifest) { m.Version = "1.0.0-rc.1+build.5" }, ""},
		{"created missing", func(m *Manifest) { m.Created = "" }, "created is missing"},
		{"created bad", func(m *Manifest) { m.Created = "yesterday" }, "RFC 3339"},
		{"model file", func(m *Manifest) { m.ModelFile = "" }, "model_file"},
		{"sha256", func(m *Manifest) { m.SHA256 = "ABC" }, "sha256"},
		{"size", func(m *Manifest) { m.Size = 0 }, "size"},
		{"agent version", func(m *Manifest) { m.MinAgentVersion = "" }, "min_agent_version"},
		{"ops empty", func(m *Manifest) { m.Ops = nil }, "ops is empty"},
		{"op blank", func(m *Manifest) { m.Ops = []string{""} }, "ops[0]"},
		{"sensor", func(m *Manifest) { m.Input.Sensor = "" }, "input: sensor"},
		{"channels", func(m *Manifest) { m.Input.Channels = nil }, "channels is empty"},
		{"duplicate channel", func(m *Manifest) {
			m.Input.Channels = []string{"x", "x"}
			m.Input.Normalization = append(m.Input.Normalization, Normalization{Std: 1})
			m.Input.Shape = []int{1, 128}
		}, `channel "x" appears twice`},
		{"rate", func(m *Manifest) { m.Input.SampleRateHz = -1 }, "sample_rate_hz"},
		{"window", func(m *Manifest) { m.Input.Window = 0 }, "window 0"},
		{"stride", func(m *Manifest) { m.Input.Stride = 0 }, "stride"},
		{"normalization count", func(m *Manifest) { m.Input.Normalization = nil }, "0 normalization entries for 1 channels"},
		{"std zero", func(m *Manifest) { m.Input.Normalization[0].Std = 0 }, "positive std"},
		{"dtype", func(m *Manifest) { m.Input.DType = "float64" }, "dtype"},
		{"shape missing", func(m *Manifest) { m.Input.Shape = nil }, "shape is missing"},
		{"shape size", func(m *Manifest) { m.Input.Shape = []int{1, 32} }, "needs 64"},
		{"kind missing", func(m *Manifest) { m.Output.Kind = "" }, "kind is missing"},
		{"kind unknown", func(m *Manifest) { m.Output.Kind = "regression" }, "kind"},
		{"threshold", func(m *Manifest) { m.Output.Threshold = 1.5 }, "threshold"},
		{"anomaly labels", func(m *Manifest) { m.Output.Labels = []string{"a", "b", "c"} }, "want none or 2"},
		{"classes labels", func(m *Manifest) { m.Output.Kind = OutputClasses; m.Output.Labels = []string{"a"} }, "at least 2 labels"},
		{"classes ok", func(m *Manifest) {
			m.Output.Kind = OutputClasses
			m.Output.Labels = []string{"a", "b", "c"}
			m.Golden.Vectors[0].Output = []float64{0.2, 0.5, 0.3}
			m.Baseline.Outputs = append(m.Baseline.Outputs, m.Baseline.Outputs[0], m.Baseline.Outputs[0])
		}, ""},
		{"classes golden width", func(m *Manifest) { m.Output.Kind = OutputClasses; m.Output.Labels = []string{"a", "b", "c"} }, "1 outputs for 3 labels"},
		{"accuracy", func(m *Manifest) { m.Metrics.Accuracy = 2 }, "accuracy"},
		{"recall", func(m *Manifest) { m.Metrics.Recall["bearing"] = -1 }, `recall "bearing"`},
		{"float accuracy", func(m *Manifest) { m.Metrics.FloatAccuracy = -0.5 }, "float_accuracy"},
		{"output dtype", func(m *Manifest) { m.Output.DType = "" }, `output: dtype ""`},
		{"int8 without quantization", func(m *Manifest) { m.Input.DType = "int8" }, "input: dtype int8 needs quantization"},
		{"float with quantization", func(m *Manifest) { m.Input.Quantization = &Quantization{Scale: 1} }, "quantization given for a float32"},
		{"bad scale", func(m *Manifest) {
			m.Output.DType = "int8"
			m.Output.Quantization = &Quantization{Scale: 0, ZeroPoint: -128}
		}, "scale 0"},
		{"bad zero point", func(m *Manifest) {
			m.Output.DType = "int8"
			m.Output.Quantization = &Quantization{Scale: 1.0 / 256, ZeroPoint: -129}
		}, "zero_point -129"},
		{"baseline missing", func(m *Manifest) { m.Baseline = nil }, "baseline is missing"},
		{"baseline windows", func(m *Manifest) { m.Baseline.Windows = 0 }, "baseline: windows 0"},
		{"baseline channels", func(m *Manifest) { m.Baseline.Inputs = nil }, "0 inputs for 1 channels"},
		{"baseline outputs", func(m *Manifest) { m.Baseline.Outputs = nil }, "outputs is empty"},
		{"baseline name", func(m *Manifest) { m.Baseline.Inputs[0].Name = "" }, "name is missing"},
		{"baseline count", func(m *Manifest) { m.Baseline.Inputs[0].Count++ }, "counts add up"},
		{"baseline frequencies", func(m *Manifest) { m.Baseline.Inputs[0].Frequencies[0] += 0.1 }, "frequencies[0]"},
		{"baseline edges", func(m *Manifest) { m.Baseline.Outputs[0].Histogram.Edges[1] = -1 }, "not increasing"},
		{"golden missing", func(m *Manifest) { m.Golden = nil }, "golden is missing"},
		{"golden empty", func(m *Manifest) { m.Golden.Vectors = nil }, "vectors is empty"},
		{"golden tolerance", func(m *Manifest) { m.Golden.Tolerance.Abs = -1 }, "tolerance"},
		{"golden input length", func(m *Manifest) { m.Golden.Vectors[0].Input = []float64{1} }, "1 inputs, the input tensor holds 64"},
		{"golden output length", func(m *Manifest) { m.Golden.Vectors[0].Output = nil }, "0 outputs"},
		{"golden name", func(m *Manifest) { m.Golden.Vectors[0].Name = "" }, "name is missing"},
		{"golden int8 value", func(m *Manifest) {
			m.Input.DType = "int8"
			m.Input.Quantization = &Quantization{Scale: 0.1}
			m.Golden.Vectors[0].Input[3] = 0.5
		}, "value 3 (0.5) is not a int8"},
		{"golden outputs vs baseline", func(m *Manifest) { m.Golden.Vectors[0].Output = []float64{1, 2} }, "baseline has 1 outputs, golden vectors have 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validManifest()
			tt.mutate(m)
			err := m.Validate()
			if tt.want == "" {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestDecodeStrict(t *testing.T) {
	good, err := validManifest().Encode()
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(good, &generic); err != nil {
		t.Fatal(err)
	}
	withExtra := func(key string, v any) []byte {
		g := map[string]any{}
		for k, val := range generic {
			g[k] = val
		}
		g[key] = v
		b, _ := json.Marshal(g)
		return b
	}
	without := func(key string) []byte {
		g := map[string]any{}
		for k, val := range generic {
			if k != key {
				g[k] = val
			}
		}
		b, _ := json.Marshal(g)
		return b
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"unknown field", withExtra("colour", "red"), `unknown field "colour"`},
		{"trailing data", append(append([]byte{}, good...), []byte(`{}`)...), "trailing data"},
		{"not json", []byte("model"), "decode manifest"},
		{"empty", nil, "decode manifest"},
		{"wrong type", withExtra("size", "big"), "decode manifest"},
		{"missing sha256", without("sha256"), "sha256"},
		{"missing input", without("input"), "input: sensor is missing"},
		{"missing baseline", without("baseline"), "baseline is missing"},
		{"missing golden", without("golden"), "golden is missing"},
		{"too big", append(append([]byte{}, good...), bytes.Repeat([]byte(" "), MaxManifestSize)...), "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeManifest(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeManifest() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := DecodeManifest(good); err != nil {
		t.Errorf("DecodeManifest(valid) = %v", err)
	}
}

func FuzzDecodeManifest(f *testing.F) {
	good, _ := validManifest().Encode()
	f.Add(good)
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded manifest fails Validate: %v", err)
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded manifest: %v", err)
		}
		m2, err := DecodeManifest(enc)
		if err != nil {
			t.Fatalf("DecodeManifest(Encode(m)): %v", err)
		}
		if enc2, _ := m2.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}
