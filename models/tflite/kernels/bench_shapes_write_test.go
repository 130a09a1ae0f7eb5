package kernels

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// TestWriteBenchShapes writes the single-layer models that `make bench-oracle` times
// beside the official runtime into $OUTPOST_BENCH_SHAPES (skipped when it is unset): a dense
// layer of the anomaly-detection autoencoder, a ResNet-8 3x3 convolution and a MobileNet v2
// 3x3 depthwise convolution, with random weights.
func TestWriteBenchShapes(t *testing.T) {
	dir := os.Getenv("OUTPOST_BENCH_SHAPES")
	if dir == "" {
		t.Skip("OUTPOST_BENCH_SHAPES not set")
	}
	r := rand.New(rand.NewPCG(4, 5))
	save := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name+".tflite"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fc := randFCCase(r)
	fc.batches, fc.depth, fc.units, fc.wScale, fc.act = 1, 640, 128, []float32{0.004}, schema.ActivationRelu
	fc.filter = randWeights(r, fc.units*fc.depth)
	fc.bias = make([]int32, fc.units)
	save("dense_int8_640x128", fc.model(t))
	for _, s := range []struct {
		name string
		c    convCase
	}{
		{"conv_int8_32x32x16_3x3_16", convCase{n: 1, h: 32, w: 32, inC: 16, outC: 16, fh: 3, fw: 3, sh: 1, sw: 1}},
		{"depthwise_int8_56x56x144_3x3", convCase{n: 1, h: 56, w: 56, inC: 144, outC: 144, fh: 3, fw: 3, sh: 1, sw: 1, depthwise: true}},
	} {
		c := s.c
		c.m, c.dh, c.dw, c.inScale, c.outScale, c.inZP, c.outZP = 1, 1, 1, 0.02, 0.05, -3, 5
		c.wScale, c.pad, c.act = []float32{0.005}, schema.PaddingSame, schema.ActivationRelu6
		nw := c.outC * c.fh * c.fw * c.inC
		if c.depthwise {
			nw = c.fh * c.fw * c.outC
		}
		c.filter = randWeights(r, nw)
		c.bias = make([]int32, c.outC)
		save(s.name, c.model(t))
	}
	// The float32 forms: a dense autoencoder layer, a ResNet-8 3x3 convolution and the
	// MobileNet v2 depthwise layer.
	ws := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = (r.Float32()*2 - 1) * 0.1
		}
		return v
	}
	f32 := func(name string, shape ...int32) write.Tensor {
		return write.Tensor{Name: name, Type: schema.TensorTypeFloat32, Shape: shape}
	}
	for _, s := range []struct {
		name     string
		op       schema.BuiltinOperator
		in, w, o []int32
		opts     write.Options
	}{
		{"dense_f32_640x128", schema.OpFullyConnected, []int32{1, 640}, []int32{128, 640}, []int32{1, 128},
			write.FullyConnectedOptions{Activation: schema.ActivationRelu}},
		{"conv_f32_32x32x16_3x3_16", schema.OpConv2D, []int32{1, 32, 32, 16}, []int32{16, 3, 3, 16}, []int32{1, 32, 32, 16},
			write.Conv2DOptions{Padding: schema.PaddingSame, StrideW: 1, StrideH: 1, DilationW: 1, DilationH: 1, Activation: schema.ActivationRelu}},
		{"depthwise_f32_56x56x144_3x3", schema.OpDepthwiseConv2D, []int32{1, 56, 56, 144}, []int32{1, 3, 3, 144}, []int32{1, 56, 56, 144},
			write.DepthwiseConv2DOptions{Padding: schema.PaddingSame, StrideW: 1, StrideH: 1, DepthMultiplier: 1, DilationW: 1, DilationH: 1, Activation: schema.ActivationRelu6}},
	} {
		m := write.NewModel("outpost float benchmark shape")
		sg := m.Subgraph()
		in := sg.AddTensor(f32("in", s.in...))
		nw := 1
		for _, d := range s.w {
			nw *= int(d)
		}
		wt := f32("filter", s.w...)
		wt.Data = write.Float32s(ws(nw))
		w := sg.AddTensor(wt)
		oc := s.w[0] // [OC,FH,FW,C] and [units,depth]; a depthwise filter is [1,FH,FW,C]
		if s.op == schema.OpDepthwiseConv2D {
			oc = s.w[3]
		}
		bt := f32("bias", oc)
		bt.Data = write.Float32s(ws(int(oc)))
		b := sg.AddTensor(bt)
		out := sg.AddTensor(f32("out", s.o...))
		sg.AddOp(s.op, 1, []int32{in, w, b}, []int32{out}, s.opts)
		sg.SetInputs(in)
		sg.SetOutputs(out)
		data, err := m.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		save(s.name, data)
	}
}
