// Package bundle describes a deployable model: the manifest that travels beside a .tflite
// file and tells the agent how to feed it (sensor, channels, sample rate, window, stride,
// normalisation) and how to read its output (kind, labels, threshold).
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
	"time"
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
	DType         string          `json:"dtype"` // input tensor type, e.g. "float32"
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
}

// Metrics are the trainer's measurements on held-out data.
type Metrics struct {
	Accuracy          float64 `json:"accuracy"`
	FalsePositiveRate float64 `json:"false_positive_rate"`
	// Recall per fault class (anomaly models) or per label (classifiers), keyed by name.
	Recall       map[string]float64 `json:"recall,omitempty"`
	EvalWindows  int                `json:"eval_windows,omitempty"`
	TrainWindows int                `json:"train_windows,omitempty"`
}

// DecodeManifest parses and validates a manifest. Unknown fields, trailing data and missing
// or out-of-range values are errors.
func DecodeManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode manifest: trailing data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
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
	return nil
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
