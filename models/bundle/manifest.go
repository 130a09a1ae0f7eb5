// Package bundle describes and packages a deployable model. The manifest travels beside a
// .tflite file and tells the agent how to feed it (sensor, channels, sample rate, window,
// stride, normalisation, quantization), how to read its output (kind, labels, threshold), what
// normal input and output looked like in training (the baseline, for drift monitoring) and
// which golden vectors the model must reproduce before a device activates it. A package
// (.opkg) is a deterministic tar holding the manifest, the model and an ed25519 signature over
// both; see package.go for the layout and keys.go for key files.
package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/outpost-ml/outpost/models/stats"
)

// ManifestFormat is the manifest layout version this package reads and writes.
const ManifestFormat = 1

// Output kinds.
const (
	OutputAnomalyScore = "anomaly_score" // one value in [0,1]; anomaly when >= Threshold
	OutputClasses      = "classes"       // one score per label; the arg-max is the class
)

// Manifest describes one model file. Decode it with DecodeManifest; JSON field names are the
// wire contract with the controller and the agent.
type Manifest struct {
	Format          int      `json:"format"`  // ManifestFormat
	Name            string   `json:"name"`    // e.g. "vibration-anomaly-f32"
	Version         string   `json:"version"` // semantic version of this model
	Description     string   `json:"description,omitempty"`
	Created         string   `json:"created"`    // RFC 3339; fixed by the trainer, not a clock
	ModelFile       string   `json:"model_file"` // base name of the .tflite file
	SHA256          string   `json:"sha256"`     // lower-case hex digest of the .tflite file
	Size            int64    `json:"size"`       // bytes of the .tflite file
	Input           Input    `json:"input"`
	Output          Output   `json:"output"`
	Metrics         Metrics  `json:"metrics"`
	Ops             []string `json:"ops"` // builtin operators the model uses
	MinAgentVersion string   `json:"min_agent_version"`
	// Baseline is the training data's distribution, per input channel and per output value.
	Baseline *Baseline `json:"baseline"`
	// Drift overrides the drift monitor's default thresholds (drift.go); omitted, the
	// defaults apply.
	Drift *DriftThresholds `json:"drift,omitempty"`
	// Golden holds inputs with expected outputs that a device runs before activating the model.
	Golden *Golden `json:"golden"`
}

// Quantization maps a quantized tensor to real values: real = Scale * (q - ZeroPoint).
type Quantization struct {
	Scale     float64 `json:"scale"`
	ZeroPoint int     `json:"zero_point"`
}

// Baseline describes the training data for drift monitoring. Input summaries are of raw
// sensor values (before normalisation), one per channel over every sample of every training
// window; output summaries are of the model's real-valued outputs (dequantized for integer
// models), one per output element.
type Baseline struct {
	Source  string            `json:"source"`  // what data the baseline was computed on
	Windows int               `json:"windows"` // number of training windows
	Inputs  []FeatureBaseline `json:"inputs"`  // one per input channel, in channel order
	Outputs []FeatureBaseline `json:"outputs"` // one per output value
}

// FeatureBaseline is one feature's training distribution. Frequencies[i] is
// Histogram.Counts[i] / Count, stored so a consumer computing PSI needs no arithmetic.
type FeatureBaseline struct {
	Name string `json:"name"`
	stats.Summary
	Frequencies []float64 `json:"frequencies"`
}

// Golden is the acceptance test a device runs before activating a model: for every vector,
// feed Input to the input tensor, invoke, and compare the output tensor with Output. Values
// are in the tensors' own types (float32 values, or the integers of an int8 tensor), flat in
// row-major order. A value passes when |got - want| <= Tolerance.Abs + Tolerance.Rel*|want|;
// for a classes model the arg-max must also agree.
type Golden struct {
	Tolerance Tolerance      `json:"tolerance"`
	Vectors   []GoldenVector `json:"vectors"`
}

// Tolerance bounds the difference between a computed and an expected golden output.
type Tolerance struct {
	Abs float64 `json:"abs"`
	Rel float64 `json:"rel"`
}

// GoldenVector is one input with its expected output.
type GoldenVector struct {
	Name   string    `json:"name"`
	Input  []float64 `json:"input"`
	Output []float64 `json:"output"`
}

// Input says how the agent turns sensor samples into the model's input tensor.
type Input struct {
	Sensor       string   `json:"sensor"`   // sensor kind, e.g. "vibration"
	Channels     []string `json:"channels"` // channel names, in tensor order
	SampleRateHz float64  `json:"sample_rate_hz"`
	Window       int      `json:"window"` // samples per channel in one input
	Stride       int      `json:"stride"` // samples between the starts of two windows
	// Normalization has one entry per channel: the tensor gets (x - Mean) / Std.
	Normalization []Normalization `json:"normalization"`
	DType         string          `json:"dtype"` // input tensor type, e.g. "float32" or "int8"
	// Quantization is set for integer input tensors: after normalising, the agent stores
	// clamp(round(x/Scale) + ZeroPoint) in the tensor.
	Quantization *Quantization `json:"quantization,omitempty"`
	// Shape is the input tensor's shape; its element count is Window*len(Channels), samples
	// in time order with the channels of one instant adjacent.
	Shape []int `json:"shape"`
}

// Normalization is one channel's affine input map.
type Normalization struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// Output says what the model's output tensor means.
type Output struct {
	Kind      string   `json:"kind"`             // OutputAnomalyScore or OutputClasses
	Labels    []string `json:"labels,omitempty"` // anomaly_score: [normal, anomalous]; classes: one per score
	Threshold float64  `json:"threshold"`        // anomaly_score: anomaly when score >= Threshold
	DType     string   `json:"dtype"`            // output tensor type, "float32" or "int8"
	// Quantization is set for integer output tensors: the score is Scale * (q - ZeroPoint).
	Quantization *Quantization `json:"quantization,omitempty"`
}

// Metrics are the trainer's measurements on held-out data.
type Metrics struct {
	Accuracy          float64 `json:"accuracy"`
	FalsePositiveRate float64 `json:"false_positive_rate"`
	// Recall per fault class (anomaly models) or per label (classifiers), keyed by name.
	Recall      map[string]float64 `json:"recall,omitempty"`
	EvalWindows int                `json:"eval_windows,omitempty"`
	// FloatAccuracy is, for a quantized model, the accuracy of the float model it was
	// quantized from on the same held-out windows.
	FloatAccuracy float64 `json:"float_accuracy,omitempty"`
	TrainWindows  int     `json:"train_windows,omitempty"`
}

// MaxManifestSize caps a manifest's size in bytes (golden vectors and baselines included).
const MaxManifestSize = 1 << 20

// DecodeManifest parses and validates a manifest. Unknown fields, trailing data and missing
// or out-of-range values are errors.
func DecodeManifest(data []byte) (*Manifest, error) {
	m, err := ParseManifest(data)
	if err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// ParseManifest parses a manifest strictly (unknown fields and trailing data are errors) but
// does not validate it: `outpost models baseline` reads a draft whose digest, baseline and
// golden vectors it is about to fill in.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("decode manifest: %d bytes, limit %d", len(data), MaxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode manifest: trailing data after the JSON object")
	}
	return &m, nil
}

// Encode returns the manifest as indented JSON with a final newline, after validating it.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return append(b, '\n'), nil
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	dtypes   = []string{"float32", "int8", "uint8", "int16", "int32"}
)

// Validate checks that every required field is present and consistent; the error names the
// first field that is not.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("invalid manifest: "+format, args...)
	}
	switch {
	case m.Format != ManifestFormat:
		return bad("format %d, want %d", m.Format, ManifestFormat)
	case !nameRE.MatchString(m.Name):
		return bad("name %q must be 1-64 of [a-z0-9._-], starting with a letter or digit", m.Name)
	case !semverRE.MatchString(m.Version):
		return bad("version %q is not a semantic version (MAJOR.MINOR.PATCH)", m.Version)
	case m.Created == "":
		return bad("created is missing")
	case m.ModelFile == "":
		return bad("model_file is missing")
	case !sha256RE.MatchString(m.SHA256):
		return bad("sha256 %q is not 64 lower-case hex digits", m.SHA256)
	case m.Size <= 0:
		return bad("size %d is not positive", m.Size)
	case !semverRE.MatchString(m.MinAgentVersion):
		return bad("min_agent_version %q is not a semantic version", m.MinAgentVersion)
	case len(m.Ops) == 0:
		return bad("ops is empty")
	}
	if _, err := time.Parse(time.RFC3339, m.Created); err != nil {
		return bad("created %q is not an RFC 3339 time", m.Created)
	}
	for i, op := range m.Ops {
		if op == "" {
			return bad("ops[%d] is empty", i)
		}
	}
	if err := m.Input.validate(); err != nil {
		return bad("input: %v", err)
	}
	if err := m.Output.validate(); err != nil {
		return bad("output: %v", err)
	}
	if err := m.Metrics.validate(); err != nil {
		return bad("metrics: %v", err)
	}
	if m.Baseline == nil {
		return bad("baseline is missing")
	}
	if err := m.Baseline.validate(len(m.Input.Channels)); err != nil {
		return bad("baseline: %v", err)
	}
	if m.Drift != nil {
		if err := m.Drift.Validate(); err != nil {
			return bad("drift: %v", err)
		}
	}
	if m.Golden == nil {
		return bad("golden is missing")
	}
	if err := m.Golden.validate(m); err != nil {
		return bad("golden: %v", err)
	}
	if len(m.Baseline.Outputs) != len(m.Golden.Vectors[0].Output) {
		return bad("baseline has %d outputs, golden vectors have %d", len(m.Baseline.Outputs), len(m.Golden.Vectors[0].Output))
	}
	return nil
}

func validateQuant(dtype string, q *Quantization) error {
	switch {
	case dtype == "float32" && q != nil:
		return fmt.Errorf("quantization given for a float32 tensor")
	case dtype != "float32" && q == nil:
		return fmt.Errorf("dtype %s needs quantization", dtype)
	case q == nil:
		return nil
	case !(q.Scale > 0) || !finite(q.Scale):
		return fmt.Errorf("quantization scale %v is not a positive number", q.Scale)
	}
	lo, hi := intRange(dtype)
	if float64(q.ZeroPoint) < lo || float64(q.ZeroPoint) > hi {
		return fmt.Errorf("quantization zero_point %d is outside the %s range", q.ZeroPoint, dtype)
	}
	return nil
}

// intRange is the value range of an integer dtype (float32: everything).
func intRange(dtype string) (lo, hi float64) {
	switch dtype {
	case "int8":
		return math.MinInt8, math.MaxInt8
	case "uint8":
		return 0, math.MaxUint8
	case "int16":
		return math.MinInt16, math.MaxInt16
	case "int32":
		return math.MinInt32, math.MaxInt32
	}
	return math.Inf(-1), math.Inf(1)
}

func (b *Baseline) validate(channels int) error {
	switch {
	case b.Windows < 1:
		return fmt.Errorf("windows %d is not positive", b.Windows)
	case len(b.Inputs) != channels:
		return fmt.Errorf("%d inputs for %d channels", len(b.Inputs), channels)
	case len(b.Outputs) == 0:
		return fmt.Errorf("outputs is empty")
	}
	for _, l := range []struct {
		what string
		fs   []FeatureBaseline
	}{{"inputs", b.Inputs}, {"outputs", b.Outputs}} {
		for i, f := range l.fs {
			if err := f.validate(); err != nil {
				return fmt.Errorf("%s[%d] %q: %v", l.what, i, f.Name, err)
			}
		}
	}
	return nil
}

func (f *FeatureBaseline) validate() error {
	if f.Name == "" {
		return fmt.Errorf("name is missing")
	}
	if err := f.Summary.Validate(); err != nil {
		return err
	}
	want := f.Histogram.Frequencies()
	if len(f.Frequencies) != len(want) {
		return fmt.Errorf("%d frequencies for %d bins", len(f.Frequencies), len(want))
	}
	for i, v := range f.Frequencies {
		if !(math.Abs(v-want[i]) <= 1e-9) {
			return fmt.Errorf("frequencies[%d] %v is not counts[%d]/count %v", i, v, i, want[i])
		}
	}
	return nil
}

// NewFeatureBaseline summarises one feature's training values.
func NewFeatureBaseline(name string, values []float64) (FeatureBaseline, error) {
	s, err := stats.Summarize(values, stats.Options{})
	if err != nil {
		return FeatureBaseline{}, fmt.Errorf("baseline of %s: %w", name, err)
	}
	// Round to 9 significant digits: plenty for drift statistics, and the manifest stays
	// readable. Rounding cannot reorder distinct edges that far apart in practice, but merge
	// any it would.
	r := func(x float64) float64 { return roundSig(x, 9) }
	s.Mean, s.Std, s.Min, s.Max = r(s.Mean), r(s.Std), r(s.Min), r(s.Max)
	for i := range s.Quantiles {
		s.Quantiles[i].Value = r(s.Quantiles[i].Value)
	}
	edges := []float64{r(s.Histogram.Edges[0])}
	counts := []int64{}
	for i, c := range s.Histogram.Counts {
		e := r(s.Histogram.Edges[i+1])
		if i == len(s.Histogram.Counts)-1 && e <= s.Max {
			e = math.Nextafter(s.Max, math.Inf(1)) // keep the maximum inside the last bin
		}
		if e > edges[len(edges)-1] {
			edges, counts = append(edges, e), append(counts, c)
		} else {
			counts[len(counts)-1] += c
		}
	}
	if len(counts) == 0 { // every edge rounded together: a constant feature
		edges, counts = append(edges, math.Nextafter(edges[0], math.Inf(1))), []int64{s.Count}
	}
	s.Histogram = stats.Histogram{Edges: edges, Counts: counts}
	f := FeatureBaseline{Name: name, Summary: s, Frequencies: s.Histogram.Frequencies()}
	for i, v := range f.Frequencies {
		f.Frequencies[i] = math.Round(v*1e12) / 1e12
	}
	return f, nil
}

func roundSig(x float64, digits int) float64 {
	if x == 0 || !finite(x) {
		return x
	}
	v, err := strconv.ParseFloat(strconv.FormatFloat(x, 'g', digits, 64), 64)
	if err != nil {
		return x
	}
	return v
}

func (g *Golden) validate(m *Manifest) error {
	if !(g.Tolerance.Abs >= 0) || !(g.Tolerance.Rel >= 0) || !finite(g.Tolerance.Abs) || !finite(g.Tolerance.Rel) {
		return fmt.Errorf("tolerance abs %v rel %v must be non-negative numbers", g.Tolerance.Abs, g.Tolerance.Rel)
	}
	if len(g.Vectors) == 0 {
		return fmt.Errorf("vectors is empty")
	}
	inLen := m.Input.Window * len(m.Input.Channels)
	outLen := len(g.Vectors[0].Output)
	if m.Output.Kind == OutputClasses && outLen != len(m.Output.Labels) {
		return fmt.Errorf("vector 0 has %d outputs for %d labels", outLen, len(m.Output.Labels))
	}
	inLo, inHi := intRange(m.Input.DType)
	outLo, outHi := intRange(m.Output.DType)
	for i, v := range g.Vectors {
		switch {
		case v.Name == "":
			return fmt.Errorf("vector %d: name is missing", i)
		case len(v.Input) != inLen:
			return fmt.Errorf("vector %d %q: %d inputs, the input tensor holds %d", i, v.Name, len(v.Input), inLen)
		case len(v.Output) == 0 || len(v.Output) != outLen:
			return fmt.Errorf("vector %d %q: %d outputs, want %d", i, v.Name, len(v.Output), max(outLen, 1))
		}
		if err := checkValues(v.Input, m.Input.DType, inLo, inHi); err != nil {
			return fmt.Errorf("vector %d %q input: %v", i, v.Name, err)
		}
		if err := checkValues(v.Output, m.Output.DType, outLo, outHi); err != nil {
			return fmt.Errorf("vector %d %q output: %v", i, v.Name, err)
		}
	}
	return nil
}

func checkValues(vs []float64, dtype string, lo, hi float64) error {
	for j, x := range vs {
		if !finite(x) {
			return fmt.Errorf("value %d is %v", j, x)
		}
		if dtype != "float32" && (x != math.Trunc(x) || x < lo || x > hi) {
			return fmt.Errorf("value %d (%v) is not a %s", j, x, dtype)
		}
	}
	return nil
}

// CheckGolden runs every golden vector through run, which feeds the input tensor values,
// invokes the model and returns the output tensor values, and reports the first vector whose
// output is off by more than the tolerance (or, for a classes model, picks another class).
func (m *Manifest) CheckGolden(run func(input []float64) ([]float64, error)) error {
	g := m.Golden
	if g == nil {
		return fmt.Errorf("golden: manifest has no golden vectors")
	}
	for _, v := range g.Vectors {
		got, err := run(v.Input)
		if err != nil {
			return fmt.Errorf("golden %q: %w", v.Name, err)
		}
		if len(got) != len(v.Output) {
			return fmt.Errorf("golden %q: model gave %d outputs, want %d", v.Name, len(got), len(v.Output))
		}
		for i, want := range v.Output {
			if d := math.Abs(got[i] - want); !(d <= g.Tolerance.Abs+g.Tolerance.Rel*math.Abs(want)) {
				return fmt.Errorf("golden %q: output %d is %v, want %v (tolerance abs %v rel %v)", v.Name, i, got[i], want, g.Tolerance.Abs, g.Tolerance.Rel)
			}
		}
		if m.Output.Kind == OutputClasses {
			if a, b := ArgMax(got), ArgMax(v.Output); a != b {
				return fmt.Errorf("golden %q: model picks class %d, want %d", v.Name, a, b)
			}
		}
	}
	return nil
}

// ArgMax returns the index of the largest value (the first one on ties), -1 for none.
func ArgMax(v []float64) int {
	best := -1
	for i, x := range v {
		if best < 0 || x > v[best] {
			best = i
		}
	}
	return best
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func (in *Input) validate() error {
	switch {
	case in.Sensor == "":
		return fmt.Errorf("sensor is missing")
	case len(in.Channels) == 0:
		return fmt.Errorf("channels is empty")
	case !(in.SampleRateHz > 0) || !finite(in.SampleRateHz):
		return fmt.Errorf("sample_rate_hz %v is not a positive number", in.SampleRateHz)
	case in.Window < 1:
		return fmt.Errorf("window %d is not positive", in.Window)
	case in.Stride < 1:
		return fmt.Errorf("stride %d is not positive", in.Stride)
	case len(in.Normalization) != len(in.Channels):
		return fmt.Errorf("%d normalization entries for %d channels", len(in.Normalization), len(in.Channels))
	}
	for i, c := range in.Channels {
		if c == "" {
			return fmt.Errorf("channels[%d] is empty", i)
		}
		for _, d := range in.Channels[:i] {
			if d == c {
				return fmt.Errorf("channel %q appears twice", c)
			}
		}
	}
	for i, n := range in.Normalization {
		if !finite(n.Mean) || !(n.Std > 0) || !finite(n.Std) {
			return fmt.Errorf("normalization[%d] mean %v std %v: need a finite mean and a positive std", i, n.Mean, n.Std)
		}
	}
	known := false
	for _, d := range dtypes {
		known = known || in.DType == d
	}
	if !known {
		return fmt.Errorf("dtype %q is not one of %v", in.DType, dtypes)
	}
	if err := validateQuant(in.DType, in.Quantization); err != nil {
		return err
	}
	if len(in.Shape) == 0 {
		return fmt.Errorf("shape is missing")
	}
	elems := 1
	for _, d := range in.Shape {
		if d < 1 {
			return fmt.Errorf("shape %v has a non-positive dimension", in.Shape)
		}
		elems *= d
	}
	if want := in.Window * len(in.Channels); elems != want {
		return fmt.Errorf("shape %v holds %d values, window %d x %d channels needs %d", in.Shape, elems, in.Window, len(in.Channels), want)
	}
	return nil
}

func (out *Output) validate() error {
	if !slices.Contains(dtypes, out.DType) {
		return fmt.Errorf("dtype %q is not one of %v", out.DType, dtypes)
	}
	if err := validateQuant(out.DType, out.Quantization); err != nil {
		return err
	}
	switch out.Kind {
	case OutputAnomalyScore:
		if !(out.Threshold > 0 && out.Threshold < 1) {
			return fmt.Errorf("threshold %v is not in (0,1)", out.Threshold)
		}
		if len(out.Labels) != 0 && len(out.Labels) != 2 {
			return fmt.Errorf("anomaly_score has %d labels, want none or 2", len(out.Labels))
		}
	case OutputClasses:
		if len(out.Labels) < 2 {
			return fmt.Errorf("classes needs at least 2 labels, has %d", len(out.Labels))
		}
		if !(out.Threshold >= 0 && out.Threshold <= 1) {
			return fmt.Errorf("threshold %v is not in [0,1]", out.Threshold)
		}
	case "":
		return fmt.Errorf("kind is missing")
	default:
		return fmt.Errorf("kind %q is not %q or %q", out.Kind, OutputAnomalyScore, OutputClasses)
	}
	for i, l := range out.Labels {
		if l == "" {
			return fmt.Errorf("labels[%d] is empty", i)
		}
	}
	return nil
}

func (mt *Metrics) validate() error {
	if !(mt.Accuracy >= 0 && mt.Accuracy <= 1) {
		return fmt.Errorf("accuracy %v is not in [0,1]", mt.Accuracy)
	}
	if !(mt.FloatAccuracy >= 0 && mt.FloatAccuracy <= 1) {
		return fmt.Errorf("float_accuracy %v is not in [0,1]", mt.FloatAccuracy)
	}
	if !(mt.FalsePositiveRate >= 0 && mt.FalsePositiveRate <= 1) {
		return fmt.Errorf("false_positive_rate %v is not in [0,1]", mt.FalsePositiveRate)
	}
	for _, k := range slices.Sorted(maps.Keys(mt.Recall)) {
		if v := mt.Recall[k]; !(v >= 0 && v <= 1) {
			return fmt.Errorf("recall %q %v is not in [0,1]", k, v)
		}
	}
	if mt.EvalWindows < 0 || mt.TrainWindows < 0 {
		return fmt.Errorf("window counts %d/%d are negative", mt.EvalWindows, mt.TrainWindows)
	}
	return nil
}
