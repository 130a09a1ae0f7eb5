// Package synth writes real .tflite files of well-known architectures with seeded random
// weights, for benchmarks and memory measurements that need a model of a given class (a
// MobileNet v2-sized int8 vision network) and no trained weights: the interpreter's work and
// memory depend on the shapes and types, not on what the weights learned.
package synth

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// MobileNetV2 configures MobileNetV2Int8.
type MobileNetV2 struct {
	Input   int     // input height and width; 224 is the classic size
	Alpha   float64 // width multiplier; 1.0 gives 3.5 M parameters
	Classes int     // outputs of the last dense layer; 1000 when 0
	Seed    uint64
}

// bottlenecks are MobileNet v2's inverted residual stages: expansion t, channels c, repeats n,
// first stride s (Sandler et al. 2018, table 2).
var bottlenecks = []struct{ t, c, n, s int }{
	{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1},
}

// makeDivisible rounds channels the way the reference implementation does (multiples of 8,
// never below 90 % of the unrounded width).
func makeDivisible(v float64) int {
	n := max(8, int(v+4)/8*8)
	if float64(n) < 0.9*v {
		n += 8
	}
	return n
}

// builder tracks the current activation tensor of the network being written.
type builder struct {
	sg *write.Subgraph
	r  *rand.Rand
	n  int // tensor name counter
}

// act is an int8 activation tensor and its quantization.
type act struct {
	idx     int32
	h, w, c int
	scale   float32
	zp      int64
}

// Activation quantizations: relu6 outputs span [0, 6] over the int8 range; linear (projection
// and residual) outputs span about [-8, 8].
const (
	relu6Scale = 6.0 / 255
	relu6ZP    = -128
	linScale   = 16.0 / 255
	linZP      = 0
)

func (b *builder) name(kind string) string {
	b.n++
	return fmt.Sprintf("%s_%d", kind, b.n)
}

func (b *builder) activation(kind string, h, w, c int, scale float32, zp int64) act {
	idx := b.sg.AddTensor(write.Tensor{Name: b.name(kind), Type: schema.TensorTypeInt8, Shape: []int32{1, int32(h), int32(w), int32(c)},
		Quant: &write.Quant{Scale: []float32{scale}, ZeroPoint: []int64{zp}}})
	return act{idx: idx, h: h, w: w, c: c, scale: scale, zp: zp}
}

// weights returns n random int8 weights in [-127, 127] and per-channel scales (channels of
// fanIn taps each) chosen so an output's spread is about outStd for inputs of spread inStd.
func (b *builder) weights(n, channels, fanIn int, inStd, outStd float64) ([]int8, []float32) {
	q := make([]int8, n)
	for i := range q {
		q[i] = int8(b.r.IntN(255) - 127)
	}
	const qStd = 73.3 // standard deviation of a uniform integer in [-127, 127]
	s := make([]float32, channels)
	for i := range s {
		jitter := 0.75 + 0.5*b.r.Float64() // per-channel scales differ, as trained ones do
		s[i] = float32(outStd / (math.Sqrt(float64(fanIn)) * inStd * qStd) * jitter)
	}
	return q, s
}

// bias returns random int32 biases of spread about biasStd in real units.
func (b *builder) bias(inScale float32, wScales []float32, biasStd float64) []int32 {
	v := make([]int32, len(wScales))
	for i, ws := range wScales {
		v[i] = int32(math.Round(b.r.NormFloat64() * biasStd / float64(inScale*ws)))
	}
	return v
}

func zeros(n int) []int64 { return make([]int64, n) }

func scalesFor(in float32, ws []float32) []float32 {
	s := make([]float32, len(ws))
	for i, w := range ws {
		s[i] = in * w
	}
	return s
}

// conv adds a CONV_2D (k×k, stride s, SAME) with per-channel weights.
func (b *builder) conv(x act, outC, k, s int, relu6 bool) act {
	outH, outW := (x.h+s-1)/s, (x.w+s-1)/s
	fanIn := k * k * x.c
	q, ws := b.weights(outC*fanIn, outC, fanIn, 2, 2)
	wt := b.sg.AddTensor(write.Tensor{Name: b.name("conv_w"), Type: schema.TensorTypeInt8,
		Shape: []int32{int32(outC), int32(k), int32(k), int32(x.c)}, Data: write.Int8s(q),
		Quant: &write.Quant{Scale: ws, ZeroPoint: zeros(outC), Dim: 0}})
	bt := b.sg.AddTensor(write.Tensor{Name: b.name("conv_b"), Type: schema.TensorTypeInt32, Shape: []int32{int32(outC)},
		Data: write.Int32s(b.bias(x.scale, ws, 0.5)), Quant: &write.Quant{Scale: scalesFor(x.scale, ws), ZeroPoint: zeros(outC)}})
	y := b.out(outH, outW, outC, relu6)
	a := schema.ActivationNone
	if relu6 {
		a = schema.ActivationRelu6
	}
	b.sg.AddOp(schema.OpConv2D, 3, []int32{x.idx, wt, bt}, []int32{y.idx}, write.Conv2DOptions{
		Padding: schema.PaddingSame, StrideW: int32(s), StrideH: int32(s), DilationW: 1, DilationH: 1, Activation: a})
	return y
}

// depthwise adds a 3×3 DEPTHWISE_CONV_2D (stride s, SAME, relu6) with per-channel weights.
func (b *builder) depthwise(x act, s int) act {
	outH, outW := (x.h+s-1)/s, (x.w+s-1)/s
	q, ws := b.weights(9*x.c, x.c, 9, 2, 2)
	// The filter is [1, 3, 3, C]: channel fastest, so the per-channel scale runs along dim 3.
	wt := b.sg.AddTensor(write.Tensor{Name: b.name("dw_w"), Type: schema.TensorTypeInt8,
		Shape: []int32{1, 3, 3, int32(x.c)}, Data: write.Int8s(q),
		Quant: &write.Quant{Scale: ws, ZeroPoint: zeros(x.c), Dim: 3}})
	bt := b.sg.AddTensor(write.Tensor{Name: b.name("dw_b"), Type: schema.TensorTypeInt32, Shape: []int32{int32(x.c)},
		Data: write.Int32s(b.bias(x.scale, ws, 0.5)), Quant: &write.Quant{Scale: scalesFor(x.scale, ws), ZeroPoint: zeros(x.c)}})
	y := b.out(outH, outW, x.c, true)
	b.sg.AddOp(schema.OpDepthwiseConv2D, 3, []int32{x.idx, wt, bt}, []int32{y.idx}, write.DepthwiseConv2DOptions{
		Padding: schema.PaddingSame, StrideW: int32(s), StrideH: int32(s), DepthMultiplier: 1, DilationW: 1, DilationH: 1,
		Activation: schema.ActivationRelu6})
	return y
}

func (b *builder) out(h, w, c int, relu6 bool) act {
	if relu6 {
		return b.activation("relu6", h, w, c, relu6Scale, relu6ZP)
	}
	return b.activation("linear", h, w, c, linScale, linZP)
}

// MobileNetV2Int8 writes a fully int8 MobileNet v2 (the converter's full-integer form: int8
// input and output, per-channel convolution weights, ADD for the residuals, average pool,
// dense layer, softmax) with weights drawn from cfg.Seed.
func MobileNetV2Int8(cfg MobileNetV2) ([]byte, error) {
	if cfg.Input < 32 || cfg.Alpha <= 0 {
		return nil, fmt.Errorf("synth: input %d must be ≥ 32 and alpha %v positive", cfg.Input, cfg.Alpha)
	}
	classes := cfg.Classes
	if classes == 0 {
		classes = 1000
	}
	m := write.NewModel(fmt.Sprintf("synthetic MobileNet v2 %.2f %d int8, seed %d", cfg.Alpha, cfg.Input, cfg.Seed))
	b := &builder{sg: m.Subgraph(), r: rand.New(rand.NewPCG(cfg.Seed, 0x6d6f62696c65))}
	// An image normalised to [-1, 1].
	in := b.activation("input", cfg.Input, cfg.Input, 3, 2.0/255, 0)
	x := b.conv(in, makeDivisible(32*cfg.Alpha), 3, 2, true)
	for _, st := range bottlenecks {
		outC := makeDivisible(float64(st.c) * cfg.Alpha)
		for i := range st.n {
			s := 1
			if i == 0 {
				s = st.s
			}
			y := x
			if st.t != 1 {
				y = b.conv(y, x.c*st.t, 1, 1, true)
			}
			y = b.depthwise(y, s)
			y = b.conv(y, outC, 1, 1, false)
			if s == 1 && x.c == outC {
				sum := b.out(y.h, y.w, outC, false)
				b.sg.AddOp(schema.OpAdd, 2, []int32{x.idx, y.idx}, []int32{sum.idx}, write.AddOptions(schema.ActivationNone))
				y = sum
			}
			x = y
		}
	}
	last := 1280
	if cfg.Alpha > 1 {
		last = makeDivisible(1280 * cfg.Alpha)
	}
	x = b.conv(x, last, 1, 1, true)
	b.sg.SetInputs(in.idx)
	return b.head(m, x, classes)
}

// head adds what ends both networks: average pool over the whole map, flatten, a dense
// layer with per-tensor weights (as the converter writes it), softmax; it marks the output.
func (b *builder) head(m *write.Model, x act, classes int) ([]byte, error) {
	last := x.c
	pooled := b.activation("pool", 1, 1, last, x.scale, x.zp)
	b.sg.AddOp(schema.OpAveragePool2D, 2, []int32{x.idx}, []int32{pooled.idx}, write.Pool2DOptions{
		Padding: schema.PaddingValid, StrideW: 1, StrideH: 1, FilterWidth: int32(x.w), FilterHeight: int32(x.h)})
	flatShape := b.sg.AddTensor(write.Tensor{Name: "flat_shape", Type: schema.TensorTypeInt32, Shape: []int32{2},
		Data: write.Int32s([]int32{1, int32(last)})})
	flat := b.sg.AddTensor(write.Tensor{Name: "flat", Type: schema.TensorTypeInt8, Shape: []int32{1, int32(last)},
		Quant: &write.Quant{Scale: []float32{pooled.scale}, ZeroPoint: []int64{pooled.zp}}})
	b.sg.AddOp(schema.OpReshape, 1, []int32{pooled.idx, flatShape}, []int32{flat}, write.ReshapeOptions{NewShape: []int32{1, int32(last)}})
	// The converter quantizes dense weights per tensor.
	q, ws := b.weights(classes*last, 1, last, 2, 3)
	wt := b.sg.AddTensor(write.Tensor{Name: "fc_w", Type: schema.TensorTypeInt8, Shape: []int32{int32(classes), int32(last)},
		Data: write.Int8s(q), Quant: &write.Quant{Scale: ws}})
	bv := make([]int32, classes)
	for i := range bv {
		bv[i] = int32(math.Round(b.r.NormFloat64() * 0.5 / float64(pooled.scale*ws[0])))
	}
	bt := b.sg.AddTensor(write.Tensor{Name: "fc_b", Type: schema.TensorTypeInt32, Shape: []int32{int32(classes)},
		Data: write.Int32s(bv), Quant: &write.Quant{Scale: []float32{pooled.scale * ws[0]}}})
	logits := b.sg.AddTensor(write.Tensor{Name: "logits", Type: schema.TensorTypeInt8, Shape: []int32{1, int32(classes)},
		Quant: &write.Quant{Scale: []float32{24.0 / 255}, ZeroPoint: []int64{0}}})
	b.sg.AddOp(schema.OpFullyConnected, 4, []int32{flat, wt, bt}, []int32{logits}, write.FullyConnectedOptions{})
	probs := b.sg.AddTensor(write.Tensor{Name: "probs", Type: schema.TensorTypeInt8, Shape: []int32{1, int32(classes)},
		Quant: &write.Quant{Scale: []float32{1.0 / 256}, ZeroPoint: []int64{-128}}})
	b.sg.AddOp(schema.OpSoftmax, 2, []int32{logits}, []int32{probs}, write.SoftmaxOptions{Beta: 1})
	b.sg.SetOutputs(probs)
	return m.Bytes()
}
