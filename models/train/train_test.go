package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/sim"
)

const sampleDir = "../sample"

var (
	defaultOnce sync.Once
	defaultRes  *Result
	defaultErr  error
)

// defaultResult trains the committed model once per test binary (about a second).
func defaultResult(t *testing.T) *Result {
	t.Helper()
	defaultOnce.Do(func() { defaultRes, defaultErr = Run(DefaultConfig(), DefaultIdentity(), nil) })
	if defaultErr != nil {
		t.Fatalf("Run(DefaultConfig()) = %v", defaultErr)
	}
	return defaultRes
}

var (
	activityOnce sync.Once
	activityRes  *ActivityResult
	activityErr  error
)

func activityResult(t *testing.T) *ActivityResult {
	t.Helper()
	activityOnce.Do(func() {
		activityRes, activityErr = RunActivity(DefaultActivityConfig(), DefaultActivityIdentity(), nil)
	})
	if activityErr != nil {
		t.Fatalf("RunActivity(DefaultActivityConfig()) = %v", activityErr)
	}
	return activityRes
}

func TestRegenerationIsByteIdentical(t *testing.T) {
	res := defaultResult(t)
	dir := t.TempDir()
	if err := res.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range append(res.Artifacts, activityResult(t).Artifacts...) {
		if err := a.WriteFiles(dir); err != nil {
			t.Fatal(err)
		}
		names = append(names, a.Manifest.ModelFile, a.Manifest.Name+".json", bundle.FileName(a.Manifest))
	}
	for _, name := range names {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(sampleDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("regenerated %s (%d bytes) differs from the committed file (%d bytes); "+
				"run `go run ./models/train/cmd/outpost-train -out models/sample` and scripts/oracle-goldens.sh", name, len(got), len(want))
		}
	}
}

func TestCommittedManifestDecodes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(sampleDir, "vibration-anomaly-f32.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.DecodeManifest(data)
	if err != nil {
		t.Fatalf("DecodeManifest(committed) = %v", err)
	}
	if m.Input.Window != 64 || m.Input.SampleRateHz != 50 || m.Output.Kind != bundle.OutputAnomalyScore {
		t.Errorf("manifest input/output = %+v / %+v", m.Input, m.Output)
	}
}

func TestModelDetectsFaults(t *testing.T) {
	m := defaultResult(t).Manifest.Metrics
	if m.Accuracy < 0.95 || m.FalsePositiveRate > 0.05 {
		t.Errorf("held-out accuracy %.4f, false positive rate %.4f; want >= 0.95 and <= 0.05", m.Accuracy, m.FalsePositiveRate)
	}
	for _, f := range []string{"imbalance", "bearing", "looseness"} {
		if r := m.Recall[f]; r < 0.9 {
			t.Errorf("recall of %s = %.4f, want >= 0.9", f, r)
		}
	}
}

type oracleTensor struct {
	Name   string    `json:"name"`
	Values []float64 `json:"values"`
}

type oracleCase struct {
	Header  bool           `json:"header"`
	Name    string         `json:"name"`
	Inputs  []oracleTensor `json:"inputs"`
	Outputs []oracleTensor `json:"outputs"`
	Error   any            `json:"error"`
}

func readOracle(t *testing.T, name string) []oracleCase {
	t.Helper()
	f, err := os.Open(filepath.Join(sampleDir, "testdata", name))
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
		if c.Error != nil {
			t.Fatalf("%s: oracle reported error %v", name, c.Error)
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

// near reports whether got matches the oracle's want: 1e-5 relative, with an absolute floor
// of 1e-7 for scores that are practically zero (float32 rounding of a tiny sigmoid).
func near(got, want float64) bool {
	return math.Abs(got-want) <= 1e-5*math.Abs(want)+1e-7
}

// TestForwardMatchesOracle evaluates the trained network in float64 (with the float32
// parameters stored in the file) and compares with the official TFLite runtime's outputs.
func TestForwardMatchesOracle(t *testing.T) {
	net := defaultResult(t).Net
	for _, file := range []string{"oracle-random1.json", "oracle-windows.jsonl"} {
		for i, c := range readOracle(t, file) {
			name := c.Name
			if name == "" {
				name = file
			}
			t.Run(name, func(t *testing.T) {
				if len(c.Inputs) != 1 || len(c.Inputs[0].Values) != 64 || len(c.Outputs) != 2 {
					t.Fatalf("case %d: want 1 input of 64 values and 2 outputs (score, logit), have %d, %d", i, len(c.Inputs), len(c.Outputs))
				}
				logit := net.Logit(c.Inputs[0].Values)
				score := net.Score(c.Inputs[0].Values)
				if want := c.Outputs[0].Values[0]; !near(score, want) {
					t.Errorf("score = %.9g, oracle %.9g", score, want)
				}
				if want := c.Outputs[1].Values[0]; !near(logit, want) {
					t.Errorf("logit = %.9g, oracle %.9g", logit, want)
				}
			})
		}
	}
}

// TestOracleWindowsAreCurrent checks that the golden windows are the ones OracleBatch makes
// now, i.e. the goldens were produced from this code's simulator and normalisation.
func TestOracleWindowsAreCurrent(t *testing.T) {
	res := defaultResult(t)
	cases := readOracle(t, "oracle-windows.jsonl")
	lines := strings.Split(strings.TrimSpace(string(OracleBatch(DefaultConfig(), res.Norm, len(cases)))), "\n")
	for i, c := range cases {
		var in struct {
			Name   string      `json:"name"`
			Inputs [][]float64 `json:"inputs"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &in); err != nil {
			t.Fatal(err)
		}
		if in.Name != c.Name {
			t.Errorf("case %d name %q, golden %q", i, in.Name, c.Name)
		}
		for j, v := range in.Inputs[0] {
			if float32(v) != float32(c.Inputs[0].Values[j]) {
				t.Fatalf("case %d value %d = %v, golden %v", i, j, v, c.Inputs[0].Values[j])
			}
		}
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"rate", func(c *Config) { c.SampleRateHz = 0 }, "sample rate"},
		{"window", func(c *Config) { c.Window = 1 }, "window"},
		{"stride", func(c *Config) { c.Stride = 0 }, "stride"},
		{"windows", func(c *Config) { c.TestWindows = 2 }, "test windows"},
		{"epochs", func(c *Config) { c.Epochs = 0 }, "epochs"},
		{"lr", func(c *Config) { c.LearningRate = math.NaN() }, "learning rate"},
		{"threshold", func(c *Config) { c.Threshold = 1 }, "threshold"},
		{"hidden", func(c *Config) { c.Hidden = []int{4, 0} }, "hidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			_, err := Run(cfg, DefaultIdentity(), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run() error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestBadIdentityIsRejected(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TrainWindows, cfg.TestWindows, cfg.Epochs = 16, 16, 1
	id := DefaultIdentity()
	id.Version = "v1"
	if _, err := Run(cfg, id, nil); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("Run(version v1) error = %v, want a version error", err)
	}
}

func TestBuildTFLiteRejectsWrongShape(t *testing.T) {
	net := &MLP{Layers: []Dense{{In: 4, Out: 2, W: make([]float64, 8), B: make([]float64, 2)}}}
	if _, err := BuildTFLite(net, 4); err == nil {
		t.Error("BuildTFLite(4->2) succeeded, want error: output must be 1 wide")
	}
	if _, err := BuildTFLite(&MLP{}, 4); err == nil {
		t.Error("BuildTFLite(no layers) succeeded, want error")
	}
}

func TestWindowsMix(t *testing.T) {
	ex := Windows(1, SplitTrain, 12, 64, 50)
	counts := map[string]int{}
	for _, e := range ex {
		counts[e.Fault.String()]++
		if len(e.X) != 64 {
			t.Fatalf("window of %d samples, want 64", len(e.X))
		}
	}
	if counts["none"] != 6 || counts["imbalance"] != 2 || counts["bearing"] != 2 || counts["looseness"] != 2 {
		t.Errorf("fault mix = %v, want 6 none and 2 of each fault", counts)
	}
}

func TestActivityClassifies(t *testing.T) {
	res := activityResult(t)
	f, q := res.Artifacts[0].Manifest.Metrics, res.Artifacts[1].Manifest.Metrics
	if f.Accuracy < 0.95 {
		t.Errorf("float activity accuracy %.4f, want >= 0.95", f.Accuracy)
	}
	for _, a := range []string{"idle", "walk", "run", "fall"} {
		if f.Recall[a] < 0.9 {
			t.Errorf("float recall of %s = %.4f, want >= 0.9", a, f.Recall[a])
		}
	}
	if q.Accuracy < f.Accuracy-0.01 || q.FloatAccuracy != f.Accuracy {
		t.Errorf("int8 accuracy %.4f (float_accuracy %.4f), float %.4f: quantization lost more than 1 point", q.Accuracy, q.FloatAccuracy, f.Accuracy)
	}
}

func TestVibrationInt8TracksFloat(t *testing.T) {
	res := defaultResult(t)
	f, q := res.Artifacts[0].Manifest, res.Artifacts[1].Manifest
	if q.Name != "vibration-anomaly-i8" || q.Input.DType != "int8" || q.Output.Quantization == nil ||
		q.Output.Quantization.Scale != 1.0/256 || q.Output.Quantization.ZeroPoint != -128 {
		t.Fatalf("int8 manifest %s input %s output %+v", q.Name, q.Input.DType, q.Output)
	}
	if q.Metrics.Accuracy < f.Metrics.Accuracy-0.01 {
		t.Errorf("int8 accuracy %.4f, float %.4f", q.Metrics.Accuracy, f.Metrics.Accuracy)
	}
	// The dequantized int8 score stays close to the float score on held-out windows.
	test := Windows(DefaultConfig().Seed, SplitTest, 200, 64, 50)
	var worst float64
	for _, e := range test {
		x := res.Norm.Apply(e.X)
		worst = max(worst, math.Abs(res.QNet.Real(x)[0]-res.Net.Score(x)))
	}
	if worst > 0.1 {
		t.Errorf("largest |int8 - float| score difference %.4f, want <= 0.1", worst)
	}
}

func TestQuantizeMultiplier(t *testing.T) {
	tests := []struct {
		m     float64
		q     int32
		shift int
	}{
		{0, 0, 0},
		{0.5, 1 << 30, 0},
		{1, 1 << 30, 1},
		{0.25, 1 << 30, -1},
		{0.75, 3 << 29, 0},
		{1e-12, 0, 0}, // below 2^-31: flushed to zero, as TFLite does
	}
	for _, tt := range tests {
		q, s := quantizeMultiplier(tt.m)
		if q != tt.q || s != tt.shift {
			t.Errorf("quantizeMultiplier(%v) = %d, %d; want %d, %d", tt.m, q, s, tt.q, tt.shift)
		}
	}
}

func TestMultiplyByQuantizedMultiplier(t *testing.T) {
	tests := []struct {
		x    int32
		m    float64
		want int32
	}{
		{100, 0.5, 50},
		{3, 0.5, 2},   // 1.5 rounds away from zero
		{-3, 0.5, -1}, // but gemmlowp's nudge 1-2^30 rounds an exact negative half toward zero
		{1000, 0.001, 1},
		{-7, 0.25, -2},
		{12345, 1.5, 18518}, // 18517.5 rounds up
	}
	for _, tt := range tests {
		q, s := quantizeMultiplier(tt.m)
		if got := multiplyByQuantizedMultiplier(tt.x, q, s); got != tt.want {
			t.Errorf("%d * %v = %d, want %d", tt.x, tt.m, got, tt.want)
		}
	}
	// Against real arithmetic over a sweep: never more than one off.
	for x := int32(-100000); x <= 100000; x += 37 {
		for _, m := range []float64{0.0123, 0.37, 0.9999, 2.5} {
			q, s := quantizeMultiplier(m)
			got, want := float64(multiplyByQuantizedMultiplier(x, q, s)), math.Round(float64(x)*m)
			if math.Abs(got-want) > 1 {
				t.Fatalf("%d * %v = %v, want about %v", x, m, got, want)
			}
		}
	}
}

func TestAsymmetricParams(t *testing.T) {
	tests := []struct {
		lo, hi float64
		zp     int32
	}{
		{-1, 3, -64},
		{0, 6, -128},   // ReLU output: zero maps to the lowest value
		{-2, 0, 127},   // all negative
		{0.5, 2, -128}, // widened to include 0
	}
	for _, tt := range tests {
		q := asymmetric(tt.lo, tt.hi)
		want := float32((max(tt.hi, 0) - min(tt.lo, 0)) / 255)
		if q.ZeroPoint != tt.zp || q.Scale != want {
			t.Errorf("asymmetric(%v, %v) = %+v, want scale %v zero point %d", tt.lo, tt.hi, q, want, tt.zp)
		}
		if q.Dequantize(q.Quantize(0)) != 0 {
			t.Errorf("asymmetric(%v, %v): 0 is not exact", tt.lo, tt.hi)
		}
		if q.Quantize(1e9) != 127 || q.Quantize(-1e9) != -128 {
			t.Errorf("asymmetric(%v, %v): quantize does not saturate", tt.lo, tt.hi)
		}
	}
}

func TestActivityWindowsMix(t *testing.T) {
	ex := ActivityWindows(1, SplitTrain, 8, 50, 25)
	for i, e := range ex {
		if e.Activity != sim.Activities[i%4] || len(e.X) != 150 {
			t.Errorf("window %d: %v with %d values", i, e.Activity, len(e.X))
		}
	}
	if _, err := RunActivity(ActivityConfig{}, DefaultActivityIdentity(), nil); err == nil {
		t.Error("RunActivity(zero config) succeeded")
	}
}
