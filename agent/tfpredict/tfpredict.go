// Package tfpredict adapts the pure-Go TensorFlow Lite interpreter (models/tflite) to the
// agent's Predictor seam, reading how to feed and interpret the model from its bundle
// manifest (models/bundle).
package tfpredict

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// Predictor runs one model. It is not safe for concurrent use: the agent calls it from its
// infer loop only.
type Predictor struct {
	manifest *bundle.Manifest
	ip       *tflite.Interpreter
	in, out  *tensor.Tensor
	inQ      affine    // input quantization, for integer inputs
	outQ     affine    // output quantization, for integer outputs
	outF     []float32 // dequantized output, for integer outputs
	spec     agent.ModelSpec
	ref      wire.ModelRef
}

// affine is real = Scale * (q - ZeroPoint).
type affine struct {
	scale float32
	zero  int32
}

// quantize maps x to the nearest integer code in [lo, hi].
func (a affine) quantize(x float32, lo, hi int32) int32 {
	q := math.Round(float64(x/a.scale)) + float64(a.zero)
	return int32(min(max(q, float64(lo)), float64(hi)))
}

func (a affine) dequantize(q int32) float32 { return a.scale * float32(q-a.zero) }

// ManifestPath is where the manifest of the model at modelPath is looked for by default: the
// same path with .json in place of .tflite.
func ManifestPath(modelPath string) string {
	return strings.TrimSuffix(modelPath, ".tflite") + ".json"
}

// Load reads the model at modelPath and its manifest at manifestPath (ManifestPath(modelPath)
// when empty), checks that they belong together and prepares an interpreter.
func Load(modelPath, manifestPath string) (*Predictor, error) {
	return LoadWith(modelPath, manifestPath, Options{})
}

// New prepares a Predictor for the model bytes data described by man with every builtin
// kernel; name labels errors.
func New(data []byte, man *bundle.Manifest, name string) (*Predictor, error) {
	return NewWith(data, man, name, Options{})
}

// LoadWith is Load with options.
func LoadWith(modelPath, manifestPath string, opts Options) (*Predictor, error) {
	if manifestPath == "" {
		manifestPath = ManifestPath(modelPath)
	}
	data, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	mdata, err := os.ReadFile(manifestPath)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	man, err := bundle.DecodeManifest(mdata)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", manifestPath, err)
	}
	return NewWith(data, man, modelPath, opts)
}

// Options tunes NewWith.
type Options struct {
	// Resolver supplies the kernels; nil means kernels.Builtins(). A model using an op the
	// resolver lacks is refused.
	Resolver tflite.OpResolver
	// MaxBytes bounds the model's constants plus its arena (tflite.Options.MaxBytes).
	MaxBytes int
	// Threads is how many goroutines one inference may use for the big convolution and
	// matrix loops (tflite.Options.Threads); 0 and 1 mean one. Results do not depend on it.
	Threads int
}

// NewWith is New with options.
func NewWith(data []byte, man *bundle.Manifest, name string, opts Options) (*Predictor, error) {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != man.SHA256 {
		return nil, fmt.Errorf("model %s: sha256 %s does not match the manifest's %s", name, got, man.SHA256)
	}
	if int64(len(data)) != man.Size {
		return nil, fmt.Errorf("model %s: %d bytes, manifest says %d", name, len(data), man.Size)
	}
	m, err := tflite.Load(data)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	res := opts.Resolver
	if res == nil {
		res = kernels.Builtins()
	}
	// The Model serves this one interpreter: its bytes of the weights the kernels pack are
	// given up, so the device holds them once.
	ip, err := tflite.NewInterpreter(m, res, tflite.Options{MaxBytes: opts.MaxBytes, Threads: opts.Threads, DropPacked: true})
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	p := &Predictor{manifest: man, ip: ip}
	if err := p.bind(); err != nil {
		ip.Close()
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	return p, nil
}

// bind checks the interpreter's tensors against the manifest and derives the ModelSpec.
func (p *Predictor) bind() error {
	man := p.manifest
	if p.ip.NumInputs() != 1 || p.ip.NumOutputs() < 1 {
		return fmt.Errorf("has %d inputs and %d outputs, want 1 input and at least 1 output", p.ip.NumInputs(), p.ip.NumOutputs())
	}
	in, out := p.ip.Input(0), p.ip.Output(0)
	var err error
	if p.inQ, err = quantParams("input", in, man.Input.Quantization); err != nil {
		return err
	}
	if p.outQ, err = quantParams("output", out, man.Output.Quantization); err != nil {
		return err
	}
	if out.DType() != tensor.Float32 {
		p.outF = make([]float32, out.NumElements())
	}
	channels := len(man.Input.Channels)
	if want := man.Input.Window * channels; in.NumElements() != want {
		return fmt.Errorf("input shape %v holds %d values, manifest window %d x %d channels needs %d",
			in.Shape(), in.NumElements(), man.Input.Window, channels, want)
	}
	spec := agent.ModelSpec{
		SampleRateHz: man.Input.SampleRateHz,
		Window:       man.Input.Window,
		Stride:       man.Input.Stride,
		Channels:     channels,
		Labels:       man.Output.Labels,
		Threshold:    man.Output.Threshold,
	}
	for _, n := range man.Input.Normalization {
		spec.Mean = append(spec.Mean, float32(n.Mean))
		spec.Std = append(spec.Std, float32(n.Std))
	}
	switch man.Output.Kind {
	case bundle.OutputAnomalyScore:
		spec.OutputKind = agent.OutputAnomaly
	case bundle.OutputClasses:
		spec.OutputKind = agent.OutputClassify
		if out.NumElements() != len(man.Output.Labels) {
			return fmt.Errorf("output has %d values for %d labels", out.NumElements(), len(man.Output.Labels))
		}
	default:
		return fmt.Errorf("output kind %q not supported", man.Output.Kind)
	}
	if out.NumElements() < 1 {
		return fmt.Errorf("output 0 is empty")
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	p.spec = spec
	p.in, p.out = in, out
	p.ref = wire.ModelRef{Name: man.Name, Version: man.Version, SHA256: man.SHA256}
	return nil
}

// Predict implements agent.Predictor. out aliases the output tensor: valid until the next
// call. It allocates nothing.
func (p *Predictor) Predict(window []float32) (out []float32, latency time.Duration, err error) {
	if n := p.in.NumElements(); len(window) != n {
		return nil, 0, fmt.Errorf("window of %d values, model takes %d", len(window), n)
	}
	switch p.in.DType() {
	case tensor.Float32:
		copy(p.in.Float32(), window)
	case tensor.Int8:
		dst := p.in.Int8()
		for i, x := range window {
			dst[i] = int8(p.inQ.quantize(x, math.MinInt8, math.MaxInt8))
		}
	case tensor.Uint8:
		dst := p.in.Uint8()
		for i, x := range window {
			dst[i] = uint8(p.inQ.quantize(x, 0, math.MaxUint8))
		}
	}
	start := time.Now()
	if err := p.ip.Invoke(); err != nil {
		return nil, 0, err
	}
	latency = time.Since(start)
	switch p.out.DType() {
	case tensor.Int8:
		for i, q := range p.out.Int8() {
			p.outF[i] = p.outQ.dequantize(int32(q))
		}
		return p.outF, latency, nil
	case tensor.Uint8:
		for i, q := range p.out.Uint8() {
			p.outF[i] = p.outQ.dequantize(int32(q))
		}
		return p.outF, latency, nil
	}
	return p.out.Float32(), latency, nil
}

// quantParams checks that t's type is supported and returns its quantization: the
// manifest's when given (it is what the trainer vouches for), else the tensor's own.
func quantParams(what string, t *tensor.Tensor, mq *bundle.Quantization) (affine, error) {
	switch t.DType() {
	case tensor.Float32:
		return affine{}, nil
	case tensor.Int8, tensor.Uint8:
	default:
		return affine{}, fmt.Errorf("%s tensor type %v not supported (want float32, int8 or uint8)", what, t.DType())
	}
	var a affine
	switch tq := t.Quant(); {
	case mq != nil:
		a = affine{scale: float32(mq.Scale), zero: int32(mq.ZeroPoint)}
	case tq != nil && len(tq.Scale) == 1 && len(tq.ZeroPoint) == 1:
		a = affine{scale: tq.Scale[0], zero: int32(tq.ZeroPoint[0])}
	default:
		return affine{}, fmt.Errorf("%s tensor is %v without per-tensor quantization parameters", what, t.DType())
	}
	if !(a.scale > 0) || math.IsInf(float64(a.scale), 0) {
		return affine{}, fmt.Errorf("%s quantization scale %v must be positive", what, a.scale)
	}
	return a, nil
}

// Model implements agent.Predictor.
func (p *Predictor) Model() wire.ModelRef { return p.ref }

// Spec implements agent.Predictor.
func (p *Predictor) Spec() agent.ModelSpec { return p.spec }

// Manifest returns the model's manifest.
func (p *Predictor) Manifest() *bundle.Manifest { return p.manifest }

// Close stops the interpreter's helper goroutines (Options.Threads above 1) now rather than
// when the Predictor is garbage; it must not be used after.
func (p *Predictor) Close() { p.ip.Close() }

// ArenaBytes is the size of the model's planned tensor arena in bytes.
func (p *Predictor) ArenaBytes() int { return p.ip.ArenaBytes() }

// CheckGolden runs the manifest's golden vectors through the interpreter, feeding and reading
// the tensors in their own types as bundle.Golden defines, and reports the first mismatch.
func (p *Predictor) CheckGolden() error {
	return p.manifest.CheckGolden(func(x []float64) ([]float64, error) {
		if len(x) != p.in.NumElements() {
			return nil, fmt.Errorf("%d inputs, the input tensor holds %d", len(x), p.in.NumElements())
		}
		switch p.in.DType() {
		case tensor.Int8:
			for i, v := range x {
				p.in.Int8()[i] = int8(v)
			}
		case tensor.Uint8:
			for i, v := range x {
				p.in.Uint8()[i] = uint8(v)
			}
		default:
			for i, v := range x {
				p.in.Float32()[i] = float32(v)
			}
		}
		if err := p.ip.Invoke(); err != nil {
			return nil, err
		}
		y := make([]float64, p.out.NumElements())
		for i := range y {
			switch p.out.DType() {
			case tensor.Int8:
				y[i] = float64(p.out.Int8()[i])
			case tensor.Uint8:
				y[i] = float64(p.out.Uint8()[i])
			default:
				y[i] = float64(p.out.Float32()[i])
			}
		}
		return y, nil
	})
}
