package train

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Artifact is one deployable sample model: the .tflite file, its manifest and the signed
// package, all byte-identical on every regeneration.
type Artifact struct {
	TFLite   []byte
	Manifest *bundle.Manifest
	JSON     []byte // the manifest as written to NAME.json and into the package
	Package  []byte // NAME-VERSION.opkg, signed with the DEMO key (bundle.DemoKey)
	// GoldenBatch holds the golden inputs as JSON Lines for the TFLite oracle's --batch.
	GoldenBatch []byte
	// Reference computes the output tensor values for input tensor values with the trainer's
	// own forward pass (float64 with float32 parameters, or the int8 reference kernels).
	Reference func(input []float64) []float64
}

// Golden tolerances. Float: the device computes in float32 with another summation order than
// the float64 reference. Int8: XNNPACK and reference kernels may differ by a few LSB (see the
// oracle's README), and any int8 runtime is allowed that much.
var (
	floatTolerance = bundle.Tolerance{Abs: 1e-5, Rel: 1e-4}
	int8Tolerance  = bundle.Tolerance{Abs: 3}
)

// namedWindow is one raw (not normalised) input window.
type namedWindow struct {
	name string
	x    []float64
}

// modelSpec is everything the float and int8 artifacts of one trained model share.
type modelSpec struct {
	id          Identity
	description string // manifest description; "%s" is replaced by "float32" or "int8"
	modelDesc   string // .tflite Model.description, same substitution
	sensor      string
	channels    []string
	fs          float64
	window      int
	stride      int
	norms       []Normalization // per channel
	net         *MLP
	softmax     bool
	kind        string
	labels      []string
	threshold   float64
	inputName   string
	outputName  string
	outputNames []string // baseline names of the output values
	source      string   // baseline source
	trainRaw    [][]float64
	golden      []namedWindow
	metrics     func(predict func(x []float64) []float64) bundle.Metrics
}

// normalise applies the per-channel normalisation to an interleaved raw window.
func (s *modelSpec) normalise(raw []float64) []float64 {
	out := make([]float64, len(raw))
	nc := len(s.norms)
	for i, v := range raw {
		n := s.norms[i%nc]
		out[i] = (v - n.Mean) / n.Std
	}
	return out
}

func (s *modelSpec) floatPredict(x []float64) []float64 {
	if s.softmax {
		return s.net.Probs(x)
	}
	return []float64{s.net.Score(x)}
}

func f32(x []float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(float32(v))
	}
	return out
}

// buildFloat makes the float32 artifact.
func (s *modelSpec) buildFloat(id Identity) (*Artifact, error) {
	model, err := buildFloatTFLite(s.net, fmt.Sprintf(s.modelDesc, "float32"), s.inputName, s.outputName, s.softmax)
	if err != nil {
		return nil, err
	}
	ref := func(in []float64) []float64 { return f32(s.floatPredict(in)) }
	goldenIn := func(raw []float64) []float64 { return f32(s.normalise(raw)) }
	m := s.metrics(s.floatPredict)
	return s.finish(id, model, "float32", nil, nil, m, ref, goldenIn, s.floatPredict, floatTolerance)
}

// buildInt8 makes the int8 artifact of q, the quantized s.net.
func (s *modelSpec) buildInt8(id Identity, q *QNet) (*Artifact, error) {
	model, err := buildInt8TFLite(q, fmt.Sprintf(s.modelDesc, "int8"), s.inputName, s.outputName)
	if err != nil {
		return nil, err
	}
	ref := func(in []float64) []float64 {
		x := make([]int8, len(in))
		for i, v := range in {
			x[i] = int8(v)
		}
		out, _ := q.Forward(x)
		r := make([]float64, len(out))
		for i, v := range out {
			r[i] = float64(v)
		}
		return r
	}
	goldenIn := func(raw []float64) []float64 {
		x := q.QuantizeInput(s.normalise(raw))
		r := make([]float64, len(x))
		for i, v := range x {
			r[i] = float64(v)
		}
		return r
	}
	m := s.metrics(q.Real)
	m.FloatAccuracy = s.metrics(s.floatPredict).Accuracy
	inQ := &bundle.Quantization{Scale: float64(q.InQ.Scale), ZeroPoint: int(q.InQ.ZeroPoint)}
	outQ := &bundle.Quantization{Scale: float64(q.OutQ.Scale), ZeroPoint: int(q.OutQ.ZeroPoint)}
	return s.finish(id, model, "int8", inQ, outQ, m, ref, goldenIn, q.Real, int8Tolerance)
}

func (s *modelSpec) finish(id Identity, model []byte, dtype string, inQ, outQ *bundle.Quantization, metrics bundle.Metrics,
	ref func([]float64) []float64, goldenIn func([]float64) []float64, real func([]float64) []float64, tol bundle.Tolerance) (*Artifact, error) {
	outs := make([][]float64, len(s.trainRaw))
	for i, raw := range s.trainRaw {
		outs[i] = real(s.normalise(raw))
	}
	base, err := bundle.ComputeBaseline(s.source, s.channels, s.trainRaw, outs, s.outputNames)
	if err != nil {
		return nil, err
	}
	g := &bundle.Golden{Tolerance: tol}
	var batch []byte
	for _, w := range s.golden {
		in := goldenIn(w.x)
		g.Vectors = append(g.Vectors, bundle.GoldenVector{Name: w.name, Input: in, Output: ref(in)})
		batch = fmt.Appendf(batch, `{"name":"%s","inputs":[[`, w.name)
		for j, v := range in {
			if j > 0 {
				batch = append(batch, ',')
			}
			batch = strconv.AppendFloat(batch, v, 'g', -1, 64)
		}
		batch = append(batch, "]]}\n"...)
	}
	norms := make([]bundle.Normalization, len(s.norms))
	for i, n := range s.norms {
		norms[i] = bundle.Normalization{Mean: n.Mean, Std: n.Std}
	}
	ops := []string{schema.OpFullyConnected.String(), schema.OpLogistic.String()}
	if s.softmax {
		ops[1] = schema.OpSoftmax.String()
	}
	sum := sha256.Sum256(model)
	man := &bundle.Manifest{
		Format:      bundle.ManifestFormat,
		Name:        id.Name,
		Version:     id.Version,
		Description: fmt.Sprintf(s.description, dtype),
		Created:     id.Created,
		ModelFile:   id.Name + ".tflite",
		SHA256:      hex.EncodeToString(sum[:]),
		Size:        int64(len(model)),
		Input: bundle.Input{
			Sensor:        s.sensor,
			Channels:      s.channels,
			SampleRateHz:  s.fs,
			Window:        s.window,
			Stride:        s.stride,
			Normalization: norms,
			DType:         dtype,
			Quantization:  inQ,
			Shape:         []int{1, s.window * len(s.channels)},
		},
		Output: bundle.Output{
			Kind:         s.kind,
			Labels:       s.labels,
			Threshold:    s.threshold,
			DType:        dtype,
			Quantization: outQ,
		},
		Metrics:         metrics,
		Ops:             ops,
		MinAgentVersion: id.MinAgentVersion,
		Baseline:        base,
		Golden:          g,
	}
	js, err := man.Encode()
	if err != nil {
		return nil, err
	}
	pkg, err := bundle.Build(js, model, bundle.DemoKey())
	if err != nil {
		return nil, err
	}
	return &Artifact{TFLite: model, Manifest: man, JSON: js, Package: pkg, GoldenBatch: batch, Reference: ref}, nil
}

// WriteFiles writes NAME.tflite, NAME.json and NAME-VERSION.opkg into dir.
func (a *Artifact) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{a.Manifest.ModelFile, a.TFLite},
		{a.Manifest.Name + ".json", a.JSON},
		{bundle.FileName(a.Manifest), a.Package},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// buildFloatTFLite writes net as float32 FULLY_CONNECTED layers (ReLU fused in all but the
// last), then LOGISTIC (one output) or SOFTMAX.
func buildFloatTFLite(net *MLP, description, inName, outName string, softmaxHead bool) ([]byte, error) {
	if len(net.Layers) == 0 {
		return nil, fmt.Errorf("build tflite: network has no layers")
	}
	m := write.NewModel(description)
	sg := m.Subgraph()
	sg.SetName("main")
	f := schema.TensorTypeFloat32
	x := sg.AddTensor(write.Tensor{Name: inName, Type: f, Shape: []int32{1, int32(net.Layers[0].In)}})
	in := x
	for i, l := range net.Layers {
		w := make([]float32, len(l.W))
		for j, v := range l.W {
			w[j] = float32(v)
		}
		b := make([]float32, len(l.B))
		for j, v := range l.B {
			b[j] = float32(v)
		}
		wt := sg.AddTensor(write.Tensor{Name: fmt.Sprintf("dense_%d/weights", i), Type: f,
			Shape: []int32{int32(l.Out), int32(l.In)}, Data: write.Float32s(w)})
		bt := sg.AddTensor(write.Tensor{Name: fmt.Sprintf("dense_%d/bias", i), Type: f,
			Shape: []int32{int32(l.Out)}, Data: write.Float32s(b)})
		act, name := schema.ActivationRelu, fmt.Sprintf("dense_%d/relu", i)
		if i == len(net.Layers)-1 {
			act, name = schema.ActivationNone, "logit"
			if softmaxHead {
				name = "logits"
			}
		}
		out := sg.AddTensor(write.Tensor{Name: name, Type: f, Shape: []int32{1, int32(l.Out)}})
		sg.AddOp(schema.OpFullyConnected, 1, []int32{in, wt, bt}, []int32{out},
			write.FullyConnectedOptions{Activation: act})
		in = out
	}
	last := net.Layers[len(net.Layers)-1].Out
	y := sg.AddTensor(write.Tensor{Name: outName, Type: f, Shape: []int32{1, int32(last)}})
	if softmaxHead {
		sg.AddOp(schema.OpSoftmax, 1, []int32{in}, []int32{y}, write.SoftmaxOptions{Beta: 1})
	} else {
		sg.AddOp(schema.OpLogistic, 1, []int32{in}, []int32{y}, nil)
	}
	sg.SetInputs(x)
	sg.SetOutputs(y)
	buf, err := m.Bytes()
	if err != nil {
		return nil, fmt.Errorf("build tflite: %w", err)
	}
	return buf, nil
}

func quant(p QParams) *write.Quant {
	return &write.Quant{Scale: []float32{p.Scale}, ZeroPoint: []int64{int64(p.ZeroPoint)}}
}

// buildInt8TFLite writes q as a full-integer model: int8 input, int8 FULLY_CONNECTED layers
// with per-channel int8 weights and int32 biases, int8 LOGISTIC or SOFTMAX, int8 output.
// Op versions are the ones TFLite assigns to int8 kernels with these options.
func buildInt8TFLite(q *QNet, description, inName, outName string) ([]byte, error) {
	if len(q.Layers) == 0 {
		return nil, fmt.Errorf("build tflite: network has no layers")
	}
	m := write.NewModel(description)
	sg := m.Subgraph()
	sg.SetName("main")
	i8, i32 := schema.TensorTypeInt8, schema.TensorTypeInt32
	x := sg.AddTensor(write.Tensor{Name: inName, Type: i8, Shape: []int32{1, int32(q.Layers[0].In)}, Quant: quant(q.InQ)})
	in, inQ := x, q.InQ
	for i, l := range q.Layers {
		bScale := make([]float32, l.Out)
		for c, s := range l.WScale {
			bScale[c] = inQ.Scale * s
		}
		wt := sg.AddTensor(write.Tensor{Name: fmt.Sprintf("dense_%d/weights", i), Type: i8,
			Shape: []int32{int32(l.Out), int32(l.In)}, Data: write.Int8s(l.W),
			Quant: &write.Quant{Scale: append([]float32(nil), l.WScale...), ZeroPoint: make([]int64, l.Out), Dim: 0}})
		bt := sg.AddTensor(write.Tensor{Name: fmt.Sprintf("dense_%d/bias", i), Type: i32,
			Shape: []int32{int32(l.Out)}, Data: write.Int32s(l.B),
			Quant: &write.Quant{Scale: bScale, ZeroPoint: make([]int64, l.Out), Dim: 0}})
		act, name := schema.ActivationRelu, fmt.Sprintf("dense_%d/relu", i)
		if !l.Relu {
			act, name = schema.ActivationNone, "logits"
		}
		out := sg.AddTensor(write.Tensor{Name: name, Type: i8, Shape: []int32{1, int32(l.Out)}, Quant: quant(l.OutQ)})
		sg.AddOp(schema.OpFullyConnected, 4, []int32{in, wt, bt}, []int32{out},
			write.FullyConnectedOptions{Activation: act})
		in, inQ = out, l.OutQ
	}
	last := q.Layers[len(q.Layers)-1].Out
	y := sg.AddTensor(write.Tensor{Name: outName, Type: i8, Shape: []int32{1, int32(last)}, Quant: quant(q.OutQ)})
	if q.Softmax {
		sg.AddOp(schema.OpSoftmax, 2, []int32{in}, []int32{y}, write.SoftmaxOptions{Beta: 1})
	} else {
		sg.AddOp(schema.OpLogistic, 2, []int32{in}, []int32{y}, nil)
	}
	sg.SetInputs(x)
	sg.SetOutputs(y)
	buf, err := m.Bytes()
	if err != nil {
		return nil, fmt.Errorf("build tflite: %w", err)
	}
	return buf, nil
}
