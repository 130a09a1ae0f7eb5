package tflite_test

import (
	"math"
	"slices"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/outpost-ml/outpost/models/tflite/schema"
)

func near(a, b float32) bool {
	return math.Abs(float64(a-b)) <= 1e-6*math.Max(1, math.Abs(float64(b)))
}

func TestFullyConnectedFloat(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(m *tModel)
		want      []float32
		wantShape []int
	}{
		{name: "bias", want: []float32{1.5, 2, -7, 5, 4.5, 5, -4, 11}, wantShape: []int{2, 4}},
		{name: "no bias", edit: func(m *tModel) { m.ops[0].in[2] = -1 }, want: []float32{1, 2, 3, 5, 4, 5, 6, 11}, wantShape: []int{2, 4}},
		{name: "two inputs", edit: func(m *tModel) { m.ops[0].in = m.ops[0].in[:2] }, want: []float32{1, 2, 3, 5, 4, 5, 6, 11}, wantShape: []int{2, 4}},
		{name: "relu", edit: func(m *tModel) { m.ops[0].opt = fcOptions(schema.ActivationRelu, false) }, want: []float32{1.5, 2, 0, 5, 4.5, 5, 0, 11}, wantShape: []int{2, 4}},
		{name: "relu6", edit: func(m *tModel) { m.ops[0].opt = fcOptions(schema.ActivationRelu6, false) }, want: []float32{1.5, 2, 0, 5, 4.5, 5, 0, 6}, wantShape: []int{2, 4}},
		{name: "keep_num_dims", edit: func(m *tModel) {
			m.tensors[0].shape = []int32{1, 2, 3}
			m.ops[0].opt = fcOptions(schema.ActivationNone, true)
		}, want: []float32{1.5, 2, -7, 5, 4.5, 5, -4, 11}, wantShape: []int{1, 2, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := fcModel()
			if tc.edit != nil {
				tc.edit(&m)
			}
			ip := newInterp(t, m)
			copy(ip.Input(0).Float32(), []float32{1, 2, 3, 4, 5, 6})
			if err := ip.Invoke(); err != nil {
				t.Fatal(err)
			}
			got := ip.Output(0).Float32()
			if !slices.EqualFunc(got, tc.want, near) {
				t.Errorf("output = %v, want %v", got, tc.want)
			}
			if !slices.Equal(ip.Output(0).Shape(), tc.wantShape) {
				t.Errorf("output shape = %v, want %v", ip.Output(0).Shape(), tc.wantShape)
			}
		})
	}
}

// unaryModel is input float32[shape] → op → output float32[outShape].
func unaryModel(op schema.BuiltinOperator, shape, outShape []int32, optType schema.BuiltinOptions, opt func(*flatbuffers.Builder) flatbuffers.UOffsetT) tModel {
	return tModel{
		codes: []tCode{{op: op, version: 1}},
		tensors: []tTensor{
			{name: "in", typ: schema.TensorTypeFloat32, shape: shape},
			{name: "out", typ: schema.TensorTypeFloat32, shape: outShape},
		},
		buffers: [][]byte{nil},
		ops:     []tOp{{in: []int32{0}, out: []int32{1}, optType: optType, opt: opt}},
		inputs:  []int32{0},
		outputs: []int32{1},
	}
}

func softmaxOpt(beta float32) func(*flatbuffers.Builder) flatbuffers.UOffsetT {
	return func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
		b.StartObject(1)
		b.PrependFloat32Slot(0, beta, 0)
		return b.EndObject()
	}
}

func reshapeOpt(shape []int32) func(*flatbuffers.Builder) flatbuffers.UOffsetT {
	return func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
		v := int32Vec(b, shape)
		b.StartObject(1)
		b.PrependUOffsetTSlot(0, v, 0)
		return b.EndObject()
	}
}

func TestElementwiseOps(t *testing.T) {
	in := []float32{-7, -0.5, 0, 0.5, 3, 8}
	sig := func(x float64) float32 { return float32(1 / (1 + math.Exp(-x))) }
	soft := func(beta float64, row []float64) []float32 {
		var sum float64
		for _, v := range row {
			sum += math.Exp(beta * v)
		}
		out := make([]float32, len(row))
		for i, v := range row {
			out[i] = float32(math.Exp(beta*v) / sum)
		}
		return out
	}
	tests := []struct {
		name      string
		m         tModel
		want      []float32
		wantShape []int
	}{
		{"relu", unaryModel(schema.OpRelu, []int32{6}, []int32{6}, 0, nil), []float32{0, 0, 0, 0.5, 3, 8}, []int{6}},
		{"relu6", unaryModel(schema.OpRelu6, []int32{6}, []int32{6}, 0, nil), []float32{0, 0, 0, 0.5, 3, 6}, []int{6}},
		{"logistic", unaryModel(schema.OpLogistic, []int32{6}, []int32{6}, 0, nil),
			[]float32{sig(-7), sig(-0.5), 0.5, sig(0.5), sig(3), sig(8)}, []int{6}},
		{"softmax rows", unaryModel(schema.OpSoftmax, []int32{2, 3}, []int32{2, 3}, schema.BuiltinOptionsSoftmax, softmaxOpt(1)),
			append(soft(1, []float64{-7, -0.5, 0}), soft(1, []float64{0.5, 3, 8})...), []int{2, 3}},
		{"softmax beta", unaryModel(schema.OpSoftmax, []int32{1, 6}, []int32{1, 6}, schema.BuiltinOptionsSoftmax, softmaxOpt(0.5)),
			soft(0.5, []float64{-7, -0.5, 0, 0.5, 3, 8}), []int{1, 6}},
		{"reshape option", unaryModel(schema.OpReshape, []int32{2, 3}, []int32{6}, schema.BuiltinOptionsReshape, reshapeOpt([]int32{3, -1})),
			in, []int{3, 2}},
		{"reshape output shape", unaryModel(schema.OpReshape, []int32{2, 3}, []int32{1, 6}, 0, nil), in, []int{1, 6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ip := newInterp(t, tc.m)
			copy(ip.Input(0).Float32(), in)
			if err := ip.Invoke(); err != nil {
				t.Fatal(err)
			}
			if got := ip.Output(0).Float32(); !slices.EqualFunc(got, tc.want, near) {
				t.Errorf("output = %v, want %v", got, tc.want)
			}
			if !slices.Equal(ip.Output(0).Shape(), tc.wantShape) {
				t.Errorf("shape = %v, want %v", ip.Output(0).Shape(), tc.wantShape)
			}
		})
	}
}

func TestReshapeShapeTensor(t *testing.T) {
	m := unaryModel(schema.OpReshape, []int32{2, 3}, []int32{6}, 0, nil)
	m.tensors = append(m.tensors, tTensor{name: "shape", typ: schema.TensorTypeInt32, shape: []int32{3}, buffer: 1})
	m.buffers = append(m.buffers, []byte{3, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	m.ops[0].in = []int32{0, 2}
	ip := newInterp(t, m)
	if got := ip.Output(0).Shape(); !slices.Equal(got, []int{3, 1, 2}) {
		t.Errorf("shape = %v, want [3 1 2]", got)
	}
}

// TestQuantizeRoundTrip: QUANTIZE float→int8 rounds half away from zero and clamps;
// DEQUANTIZE maps back with scale*(q-zp).
func TestQuantizeRoundTrip(t *testing.T) {
	m := tModel{
		codes: []tCode{{op: schema.OpQuantize, version: 1}, {op: schema.OpDequantize, version: 2}},
		tensors: []tTensor{
			{name: "x", typ: schema.TensorTypeFloat32, shape: []int32{6}},
			{name: "q", typ: schema.TensorTypeInt8, shape: []int32{6}, scale: []float32{0.5}, zp: []int64{-3}},
			{name: "y", typ: schema.TensorTypeFloat32, shape: []int32{6}},
		},
		buffers: [][]byte{nil},
		ops:     []tOp{{code: 0, in: []int32{0}, out: []int32{1}}, {code: 1, in: []int32{1}, out: []int32{2}}},
		inputs:  []int32{0},
		outputs: []int32{2, 1},
	}
	ip := newInterp(t, m)
	copy(ip.Input(0).Float32(), []float32{0.25, -0.25, 1, 100, -100, 0.74})
	if err := ip.Invoke(); err != nil {
		t.Fatal(err)
	}
	wantQ := []int8{-2, -4, -1, 127, -128, -2}
	if got := ip.Output(1).Int8(); !slices.Equal(got, wantQ) {
		t.Errorf("quantized = %v, want %v", got, wantQ)
	}
	wantY := []float32{0.5, -0.5, 1, 65, -62.5, 0.5}
	if got := ip.Output(0).Float32(); !slices.Equal(got, wantY) {
		t.Errorf("dequantized = %v, want %v", got, wantY)
	}
}

// TestVariablesPersistAndReset: a variable tensor keeps its value across Invoke (it has its own
// arena slot) and ResetVariables sets it back to its zero point.
func TestVariablesPersistAndReset(t *testing.T) {
	m := tModel{
		codes: []tCode{{op: schema.OpRelu, version: 1}},
		tensors: []tTensor{
			{name: "state", typ: schema.TensorTypeFloat32, shape: []int32{3}, variable: true},
			{name: "out", typ: schema.TensorTypeFloat32, shape: []int32{3}},
			{name: "q", typ: schema.TensorTypeInt8, shape: []int32{2}, variable: true, scale: []float32{0.5}, zp: []int64{-5}},
		},
		buffers: [][]byte{nil},
		ops:     []tOp{{in: []int32{0}, out: []int32{1}}},
		outputs: []int32{1},
	}
	ip := newInterp(t, m)
	state, q := ip.Tensor(0), ip.Tensor(2)
	if !slices.Equal(q.Int8(), []int8{-5, -5}) {
		t.Errorf("quantized variable starts at %v, want zero point -5", q.Int8())
	}
	copy(state.Float32(), []float32{-1, 2, 3})
	for i := 0; i < 2; i++ {
		if err := ip.Invoke(); err != nil {
			t.Fatal(err)
		}
		if got := ip.Output(0).Float32(); !slices.Equal(got, []float32{0, 2, 3}) {
			t.Fatalf("invoke %d: output %v, want [0 2 3]", i, got)
		}
	}
	ip.ResetVariables()
	if got := state.Float32(); !slices.Equal(got, []float32{0, 0, 0}) {
		t.Errorf("after ResetVariables state = %v, want zeros", got)
	}
}
