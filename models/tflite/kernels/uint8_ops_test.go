package kernels_test

import (
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Single-op uint8 (asymmetric, TF1 quantization-aware) models, one or more per op the full
// runtime runs in uint8, and a small uint8 network, checked against the official runtime's
// outputs in testdata/ops/uint8. TFLite Micro has no uint8 kernels, so its committed outputs
// are its refusal and the full runtime's reference arithmetic is the only judge.

const uint8Dir = "testdata/ops/uint8"

// u8 is a uint8 tensor with one scale and zero point.
func u8(scale float32, zp int64, shape ...int32) ts {
	return ts{typ: schema.TensorTypeUint8, shape: shape, q: &write.Quant{Scale: []float32{scale}, ZeroPoint: []int64{zp}}}
}

// constU8 is a constant uint8 weight tensor of values over the whole range.
func constU8(seed uint32, scale float32, zp int64, shape ...int32) ts {
	r := xorshift(seed)
	t := u8(scale, zp, shape...)
	t.data = make([]byte, numel(shape))
	for i := range t.data {
		t.data[i] = byte(r.next() >> 24)
	}
	return t
}

// u8Model builds a one-op model; non-constant inputs become the model's inputs.
func u8Model(op schema.BuiltinOperator, version int32, opts write.Options, ins []ts, outs ...ts) func() ([]byte, error) {
	return oneOpModel("outpost uint8 test: ", op, version, opts, named("in", ins, nil), named("out", outs, nil))
}

// u8Delegated is the tolerance of uint8 cases whose node XNNPACK takes in the official runtime
// (its --profile shows the node as TfLiteXNNPackDelegate) and where XNNPACK's float
// requantization lands 1 LSB from the reference arithmetic this kernel follows (add_u8_same:
// 14 of 64 values; resize_bilinear_u8_half: 3 of 70; leaky_relu_u8: 32 of 256, as for int8).
// Every other case is exact, delegated or not.
func u8Delegated(dt tensor.DType) oracletest.Tolerance {
	if dt == tensor.Uint8 || dt == tensor.Int8 {
		return oracletest.Tolerance{LSB: 1}
	}
	return oracletest.Exact(dt)
}

func uint8Cases() []oracletest.OpCase {
	const (
		same, valid = schema.PaddingSame, schema.PaddingValid
		none        = schema.ActivationNone
		relu        = schema.ActivationRelu
		relu6       = schema.ActivationRelu6
	)
	conv := func(p schema.Padding, s int32, a schema.Activation) write.Options {
		return write.Conv2DOptions{Padding: p, StrideW: s, StrideH: s, DilationW: 1, DilationH: 1, Activation: a}
	}
	dw := func(p schema.Padding, s, m int32, a schema.Activation) write.Options {
		return write.DepthwiseConv2DOptions{Padding: p, StrideW: s, StrideH: s, DepthMultiplier: m, DilationW: 1, DilationH: 1, Activation: a}
	}
	pool := func(p schema.Padding, s, f int32, a schema.Activation) write.Options {
		return write.Pool2DOptions{Padding: p, StrideW: s, StrideH: s, FilterWidth: f, FilterHeight: f, Activation: a}
	}
	reducer := func(keep bool) write.Options { return write.ReducerOptions{KeepDims: keep} }
	rb := func(align, half bool) write.Options {
		return write.ResizeOptions{Op: schema.BuiltinOptionsResizeBilinear, AlignCorners: align, HalfPixelCenters: half}
	}
	rn := func(align, half bool) write.Options {
		return write.ResizeOptions{Op: schema.BuiltinOptionsResizeNearestNeighbor, AlignCorners: align, HalfPixelCenters: half}
	}
	q := func(shape ...int32) ts { return u8(0.05, 128, shape...) }
	q2 := func(shape ...int32) ts { return u8(0.03, 100, shape...) }
	// A bias scale of input_scale × filter_scale, as the converter writes it.
	bias := func(seed uint32, n int, lim int64, inScale, fScale float32) ts {
		b := constBias(seed, n, lim, false)
		b.q = &write.Quant{Scale: []float32{inScale * fScale}, ZeroPoint: []int64{0}}
		return b
	}
	type c struct {
		name string
		b    func() ([]byte, error)
		tol  func(tensor.DType) oracletest.Tolerance
	}
	cs := []c{
		{"conv_u8_same_relu6", u8Model(schema.OpConv2D, 1, conv(same, 1, relu6),
			[]ts{u8(0.02, 128, 1, 6, 6, 3), constU8(101, 0.01, 120, 4, 3, 3, 3), bias(102, 4, 3000, 0.02, 0.01)}, u8(0.05, 10, 1, 6, 6, 4)), nil},
		{"conv_u8_valid_stride2", u8Model(schema.OpConv2D, 1, conv(valid, 2, none),
			[]ts{u8(0.04, 3, 1, 7, 7, 4), constU8(103, 0.005, 140, 5, 3, 3, 4), bias(104, 5, 4000, 0.04, 0.005)}, u8(0.1, 128, 1, 3, 3, 5)), nil},
		{"conv_u8_pointwise_batch2", u8Model(schema.OpConv2D, 1, conv(same, 1, relu),
			[]ts{u8(0.03, 0, 2, 3, 4, 8), constU8(105, 0.004, 255, 6, 1, 1, 8), bias(106, 6, 2000, 0.03, 0.004)}, u8(0.02, 50, 2, 3, 4, 6)), nil},
		{"dw_u8_same_relu6", u8Model(schema.OpDepthwiseConv2D, 1, dw(same, 1, 1, relu6),
			[]ts{u8(0.05, 128, 1, 6, 6, 8), constU8(107, 0.02, 110, 1, 3, 3, 8), bias(108, 8, 3000, 0.05, 0.02)}, u8(0.04, 0, 1, 6, 6, 8)), nil},
		{"dw_u8_mult2_valid_stride2", u8Model(schema.OpDepthwiseConv2D, 1, dw(valid, 2, 2, none),
			[]ts{u8(0.03, 90, 2, 7, 7, 3), constU8(109, 0.01, 130, 1, 3, 3, 6), bias(110, 6, 2000, 0.03, 0.01)}, u8(0.05, 120, 2, 3, 3, 6)), nil},
		{"fc_u8", u8Model(schema.OpFullyConnected, 1, write.FullyConnectedOptions{},
			[]ts{u8(0.05, 128, 2, 10), constU8(111, 0.01, 125, 5, 10), bias(112, 5, 5000, 0.05, 0.01)}, u8(0.08, 128, 2, 5)), nil},
		{"fc_u8_relu_nobias", u8Model(schema.OpFullyConnected, 1, write.FullyConnectedOptions{Activation: relu},
			[]ts{u8(0.02, 10, 3, 16), constU8(113, 0.006, 140, 4, 16)}, u8(0.03, 30, 3, 4)), nil},
		{"add_u8_bcast_relu", u8Model(schema.OpAdd, 1, write.AddOptions(relu),
			[]ts{u8(0.05, 128, 2, 3, 8), u8(0.02, 10, 8)}, u8(0.06, 100, 2, 3, 8)), nil},
		{"add_u8_same", u8Model(schema.OpAdd, 1, write.AddOptions(none),
			[]ts{q(64), q(64)}, u8(0.1, 128, 64)), u8Delegated},
		{"sub_u8_bcast", u8Model(schema.OpSub, 2, write.SubOptions(none),
			[]ts{u8(0.03, 128, 4, 6), u8(0.05, 60, 6)}, u8(0.07, 128, 4, 6)), nil},
		{"mul_u8_bcast_relu6", u8Model(schema.OpMul, 1, write.MulOptions(relu6),
			[]ts{u8(0.04, 128, 3, 8), u8(0.03, 20, 1, 8)}, u8(0.02, 5, 3, 8)), nil},
		{"concat_u8_same", u8Model(schema.OpConcatenation, 1, write.ConcatenationOptions{Axis: -1},
			[]ts{q(2, 3, 2), q(2, 3, 1)}, q(2, 3, 3)), nil},
		// Five inputs: XNNPACK delegates a CONCATENATION of two to four inputs and then copies
		// uint8 values without requantizing them; with five, TFLite's own
		// ConcatenationWithScaling runs.
		{"concat_u8_requant", u8Model(schema.OpConcatenation, 1, write.ConcatenationOptions{Axis: 1},
			[]ts{q(2, 2, 3), q2(2, 1, 3), u8(0.06, 120, 2, 1, 3), u8(0.1, 0, 2, 2, 3), q(2, 1, 3)}, u8(0.06, 120, 2, 7, 3)), nil},
		{"avgpool_u8_same_stride2", u8Model(schema.OpAveragePool2D, 1, pool(same, 2, 3, none),
			[]ts{q(1, 7, 7, 4)}, q(1, 4, 4, 4)), nil},
		{"maxpool_u8_valid_relu6", u8Model(schema.OpMaxPool2D, 1, pool(valid, 2, 2, relu6),
			[]ts{u8(0.05, 50, 1, 6, 6, 3)}, u8(0.05, 50, 1, 3, 3, 3)), nil},
		{"l2norm_u8", u8Model(schema.OpL2Normalization, 1, write.ActivationOptions{Op: schema.BuiltinOptionsL2Norm},
			[]ts{q(2, 2, 5)}, u8(1.0/128, 128, 2, 2, 5)), nil},
		{"reshape_u8", u8Model(schema.OpReshape, 1, write.ReshapeOptions{NewShape: []int32{3, 8}},
			[]ts{q(2, 3, 4), constI32([]int32{3, 8})}, q(3, 8)), nil},
		{"squeeze_u8", u8Model(schema.OpSqueeze, 1, write.SqueezeOptions{Dims: []int32{0, 2}},
			[]ts{q(1, 3, 1, 2)}, q(3, 2)), nil},
		{"softmax_u8", u8Model(schema.OpSoftmax, 1, write.SoftmaxOptions{Beta: 1},
			[]ts{u8(0.1, 128, 3, 10)}, u8(1.0/256, 0, 3, 10)), nil},
		{"softmax_u8_beta_half", u8Model(schema.OpSoftmax, 1, write.SoftmaxOptions{Beta: 0.5},
			[]ts{u8(0.05, 100, 2, 3, 7)}, u8(1.0/256, 0, 2, 3, 7)), nil},
		{"logistic_u8", u8Model(schema.OpLogistic, 1, nil, []ts{u8(0.05, 128, 256)}, u8(1.0/256, 0, 256)), nil},
		{"tanh_u8", u8Model(schema.OpTanh, 1, nil, []ts{u8(0.03, 120, 256)}, u8(1.0/128, 128, 256)), nil},
		{"relu_u8", u8Model(schema.OpRelu, 1, nil, []ts{u8(0.02, 128, 256)}, u8(0.01, 0, 256)), nil},
		{"relu6_u8", u8Model(schema.OpRelu6, 1, nil, []ts{u8(0.05, 100, 256)}, u8(0.05, 100, 256)), nil},
		{"resize_bilinear_u8", u8Model(schema.OpResizeBilinear, 1, rb(false, false),
			[]ts{q(1, 3, 3, 2), constI32([]int32{4, 5})}, q(1, 4, 5, 2)), nil},
		{"resize_bilinear_u8_half", u8Model(schema.OpResizeBilinear, 3, rb(false, true),
			[]ts{q(1, 4, 3, 2), constI32([]int32{7, 5})}, q(1, 7, 5, 2)), u8Delegated},
		{"resize_nearest_u8_align", u8Model(schema.OpResizeNearestNeighbor, 1, rn(true, false),
			[]ts{q(1, 3, 3, 2), constI32([]int32{4, 5})}, q(1, 4, 5, 2)), nil},
		{"mean_u8_hw_keep", u8Model(schema.OpMean, 1, reducer(true),
			[]ts{q(1, 4, 5, 6), constI32([]int32{1, 2})}, q(1, 1, 1, 6)), nil},
		{"mean_u8_requant", u8Model(schema.OpMean, 1, reducer(false),
			[]ts{q(2, 5, 3), constI32([]int32{1})}, u8(0.02, 120, 2, 3)), nil},
		{"pad_u8_zp", u8Model(schema.OpPad, 1, nil, []ts{q2(2, 3, 4), pads(1, 0, 0, 2, 1, 1)}, q2(3, 5, 6)), nil},
		{"strided_slice_u8", u8Model(schema.OpStridedSlice, 1, write.StridedSliceOptions{BeginMask: 1},
			[]ts{q(3, 4, 5), constI32([]int32{2, 1, -4}), constI32([]int32{3, -1, 5}), constI32([]int32{1, 2, 2})}, q(3, 1, 2)), nil},
		{"split_u8", u8Model(schema.OpSplit, 1, write.SplitOptions{NumSplits: 3},
			[]ts{constI32([]int32{-1}, 1), q(2, 6)}, q(2, 2), q(2, 2), q(2, 2)), nil},
		{"transpose_u8", u8Model(schema.OpTranspose, 1, nil, []ts{q(1, 3, 4, 2), constI32([]int32{0, 3, 1, 2})}, q(1, 2, 3, 4)), nil},
		{"gather_u8", u8Model(schema.OpGather, 1, write.GatherOptions{Axis: 1},
			[]ts{q(2, 4, 3), constI32([]int32{3, 1, 0, 3}, 2, 2)}, q(2, 2, 2, 3)), nil},
		{"arg_max_u8", u8Model(schema.OpArgMax, 1, write.ArgMaxOptions{OutputType: schema.TensorTypeInt32},
			[]ts{q(4, 6), constI32([]int32{-1}, 1)}, i32(4)), nil},
		{"maximum_u8", u8Model(schema.OpMaximum, 1, nil, []ts{q(4, 5), q(5)}, q(4, 5)), nil},
		{"minimum_u8", u8Model(schema.OpMinimum, 1, nil, []ts{q(4, 5), q(4, 1)}, q(4, 5)), nil},
		{"quantize_u8_i8", u8Model(schema.OpQuantize, 2, nil, []ts{q(3, 4)}, i8(0.04, -5, 3, 4)), nil},
		{"quantize_i8_u8", u8Model(schema.OpQuantize, 2, nil, []ts{i8(0.05, 0, 3, 4)}, u8(0.05, 128, 3, 4)), nil},
		{"quantize_f32_u8", u8Model(schema.OpQuantize, 1, nil, []ts{f32(3, 4)}, u8(0.01, 120, 3, 4)), nil},
		{"dequantize_u8", u8Model(schema.OpDequantize, 1, nil, []ts{q2(2, 5)}, f32(2, 5)), nil},
		// Data movement the full runtime also runs in uint8.
		{"slice_u8", u8Model(schema.OpSlice, 1, nil, []ts{q(3, 4, 5), constI32([]int32{1, 0, 2}), constI32([]int32{2, -1, 2})}, q(2, 4, 2)), nil},
		{"pack_u8", u8Model(schema.OpPack, 1, write.PackOptions{ValuesCount: 2, Axis: 1}, []ts{q(2, 3), q(2, 3)}, q(2, 2, 3)), nil},
		{"unpack_u8", u8Model(schema.OpUnpack, 1, write.Table{Type: schema.BuiltinOptionsUnpack, Fields: []write.Field{write.Int32Field(0, 2), write.Int32Field(1, 0)}}, []ts{q(2, 5)}, q(5), q(5)), nil},
		{"expand_dims_u8", u8Model(schema.OpExpandDims, 1, nil, []ts{q(3, 4), constI32([]int32{1}, 1)}, q(3, 1, 4)), nil},
		{"space_to_depth_u8", u8Model(schema.OpSpaceToDepth, 1, write.BlockSizeOptions{Op: schema.BuiltinOptionsSpaceToDepth, BlockSize: 2}, []ts{q(1, 4, 6, 2)}, q(1, 2, 3, 8)), nil},
		{"depth_to_space_u8", u8Model(schema.OpDepthToSpace, 1, write.BlockSizeOptions{Op: schema.BuiltinOptionsDepthToSpace, BlockSize: 2}, []ts{q(1, 2, 3, 8)}, q(1, 4, 6, 2)), nil},
		{"batch_to_space_u8", u8Model(schema.OpBatchToSpaceNd, 1, nil, []ts{q(4, 2, 2, 1), constI32([]int32{2, 2}), pads(0, 0, 0, 0)}, q(1, 4, 4, 1)), nil},
		{"space_to_batch_u8_pad", u8Model(schema.OpSpaceToBatchNd, 1, nil, []ts{q(1, 3, 5, 1), constI32([]int32{2, 2}), pads(1, 0, 0, 1)}, q(4, 2, 3, 1)), nil},
		{"gather_nd_u8", u8Model(schema.OpGatherNd, 1, nil, []ts{q(3, 4), constI32([]int32{2, 0}, 2, 1)}, q(2, 4)), nil},
		{"arg_min_u8", u8Model(schema.OpArgMin, 1, write.Table{Type: schema.BuiltinOptionsArgMin, Fields: []write.Field{write.Int8Field(0, int8(schema.TensorTypeInt32))}}, []ts{q(3, 7), constI32([]int32{1}, 1)}, i32(3)), nil},
		{"reduce_min_u8", u8Model(schema.OpReduceMin, 1, reducer(false), []ts{q(4, 3), constI32([]int32{0})}, q(3)), nil},
		{"reduce_max_u8", u8Model(schema.OpReduceMax, 1, reducer(true), []ts{q(2, 3, 4), constI32([]int32{1})}, q(2, 1, 4)), nil},
		{"leaky_relu_u8", u8Model(schema.OpLeakyRelu, 1, write.LeakyReluOptions{Alpha: 0.1}, []ts{q(256)}, u8(0.04, 100, 256)), u8Delegated},
		{"equal_u8", u8Model(schema.OpEqual, 1, nil, []ts{u8(0.5, 128, 300), u8(0.5, 128, 1)}, boolT(300)), nil},
		{"greater_u8_requant", u8Model(schema.OpGreater, 1, nil, []ts{q(6, 8), q2(8)}, boolT(6, 8)), nil},
		{"mobilenet_block_u8", mobilenetBlockU8, nil},
	}
	r := kernels.Builtins()
	out := make([]oracletest.OpCase, len(cs))
	for i, x := range cs {
		out[i] = oracletest.OpCase{Name: x.name, Build: x.b, Resolver: r, Tol: x.tol}
	}
	return out
}

// mobilenetBlockU8 is a small uint8 network in the shape of a TF1 quantization-aware MobileNet:
// a 3x3 stride-2 convolution with ReLU6, a depthwise 3x3 with ReLU6, a pointwise convolution
// with ReLU6, global average pooling, a reshape, a fully connected layer and a softmax.
func mobilenetBlockU8() ([]byte, error) {
	m := write.NewModel("outpost uint8 test: MobileNet-style block")
	sg := m.Subgraph()
	add := func(name string, t ts) int32 { return sg.AddTensor(t.tensor(name)) }
	bias := func(seed uint32, n int, inScale, fScale float32) ts {
		b := constBias(seed, n, 2000, false)
		b.q = &write.Quant{Scale: []float32{inScale * fScale}, ZeroPoint: []int64{0}}
		return b
	}
	const act = 6.0 / 255 // ReLU6 outputs: [0, 6] over the whole uint8 range
	in := add("input", u8(1.0/128, 128, 1, 12, 12, 3))
	w1 := add("conv1/weights", constU8(201, 0.02, 122, 8, 3, 3, 3))
	b1 := add("conv1/bias", bias(202, 8, 1.0/128, 0.02))
	x1 := add("conv1/relu6", u8(act, 0, 1, 6, 6, 8))
	sg.AddOp(schema.OpConv2D, 1, []int32{in, w1, b1}, []int32{x1},
		write.Conv2DOptions{Padding: schema.PaddingSame, StrideW: 2, StrideH: 2, DilationW: 1, DilationH: 1, Activation: schema.ActivationRelu6})
	w2 := add("dw/weights", constU8(203, 0.05, 130, 1, 3, 3, 8))
	b2 := add("dw/bias", bias(204, 8, act, 0.05))
	x2 := add("dw/relu6", u8(act, 0, 1, 6, 6, 8))
	sg.AddOp(schema.OpDepthwiseConv2D, 1, []int32{x1, w2, b2}, []int32{x2},
		write.DepthwiseConv2DOptions{Padding: schema.PaddingSame, StrideW: 1, StrideH: 1, DepthMultiplier: 1, DilationW: 1, DilationH: 1, Activation: schema.ActivationRelu6})
	w3 := add("pw/weights", constU8(205, 0.03, 127, 16, 1, 1, 8))
	b3 := add("pw/bias", bias(206, 16, act, 0.03))
	x3 := add("pw/relu6", u8(act, 0, 1, 6, 6, 16))
	sg.AddOp(schema.OpConv2D, 1, []int32{x2, w3, b3}, []int32{x3},
		write.Conv2DOptions{Padding: schema.PaddingSame, StrideW: 1, StrideH: 1, DilationW: 1, DilationH: 1, Activation: schema.ActivationRelu6})
	x4 := add("pool", u8(act, 0, 1, 1, 1, 16))
	sg.AddOp(schema.OpAveragePool2D, 1, []int32{x3}, []int32{x4},
		write.Pool2DOptions{Padding: schema.PaddingValid, StrideW: 6, StrideH: 6, FilterWidth: 6, FilterHeight: 6})
	shape := add("reshape/shape", constI32([]int32{1, 16}))
	x5 := add("reshape", u8(act, 0, 1, 16))
	sg.AddOp(schema.OpReshape, 1, []int32{x4, shape}, []int32{x5}, write.ReshapeOptions{NewShape: []int32{1, 16}})
	w6 := add("fc/weights", constU8(207, 0.04, 128, 5, 16))
	b6 := add("fc/bias", bias(208, 5, act, 0.04))
	x6 := add("logits", u8(0.1, 100, 1, 5))
	sg.AddOp(schema.OpFullyConnected, 1, []int32{x5, w6, b6}, []int32{x6}, write.FullyConnectedOptions{})
	x7 := add("probs", u8(1.0/256, 0, 1, 5))
	sg.AddOp(schema.OpSoftmax, 1, []int32{x6}, []int32{x7}, write.SoftmaxOptions{Beta: 1})
	sg.SetInputs(in)
	sg.SetOutputs(x7)
	return m.Bytes()
}

func TestUint8OpsOracle(t *testing.T) {
	oracletest.RunOpCases(t, uint8Dir, uint8Cases())
}

// TestUint8OpsAllocs holds Invoke at zero allocations for every case (zero-valued inputs).
func TestUint8OpsAllocs(t *testing.T) {
	oracletest.RunAllocCases(t, uint8Cases(), nil)
}

// TestUint8Rejects: uint8 models outside what the reference kernels define are refused with one
// line naming the problem.
func TestUint8Rejects(t *testing.T) {
	conv := write.Conv2DOptions{Padding: schema.PaddingSame, StrideW: 1, StrideH: 1, DilationW: 1, DilationH: 1}
	q := func(shape ...int32) ts { return u8(0.05, 128, shape...) }
	runRejects(t, []rejectCase{
		{"conv int8 weights", u8Model(schema.OpConv2D, 1, conv, []ts{q(1, 4, 4, 2), constI8(1, []float32{0.01}, 0, 3, 3, 3, 2)}, q(1, 4, 4, 3)), "want uint8"},
		{"conv weights not constant", u8Model(schema.OpConv2D, 1, conv, []ts{q(1, 4, 4, 2), q(3, 3, 3, 2)}, q(1, 4, 4, 3)), "must be constant"},
		{"conv bias int64", u8Model(schema.OpConv2D, 1, conv, []ts{q(1, 4, 4, 2), constU8(2, 0.01, 128, 3, 3, 3, 2), constBias(3, 3, 100, true)}, q(1, 4, 4, 3)), "want constant int32"},
		{"fc depth", u8Model(schema.OpFullyConnected, 1, write.FullyConnectedOptions{}, []ts{q(2, 7), constU8(4, 0.01, 128, 3, 5)}, q(2, 3)), "not a multiple"},
		{"softmax output zero point", u8Model(schema.OpSoftmax, 1, write.SoftmaxOptions{Beta: 1}, []ts{q(2, 5)}, u8(1.0/256, 128, 2, 5)), "want uint8 input, 1/256 and 0"},
		{"l2norm output", u8Model(schema.OpL2Normalization, 1, write.ActivationOptions{Op: schema.BuiltinOptionsL2Norm}, []ts{q(2, 5)}, u8(1.0/128, 0, 2, 5)), "zero point 128"},
		{"logistic output", u8Model(schema.OpLogistic, 1, nil, []ts{q(8)}, u8(1.0/256, 128, 8)), "zero point 0"},
		{"sum uint8", u8Model(schema.OpSum, 1, write.ReducerOptions{}, []ts{q(2, 3), constI32([]int32{1})}, q(2)), "not supported"},
	})
}
