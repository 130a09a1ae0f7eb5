package kernels_test

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Single-op models of the convolution and pooling family (CONV_2D, DEPTHWISE_CONV_2D,
// TRANSPOSE_CONV, AVERAGE_POOL_2D, MAX_POOL_2D, L2_POOL_2D, quantized SOFTMAX), checked
// against the official runtime's outputs committed in testdata/ops/conv (workflow:
// oracletest.OpCase). Constant weights come from a fixed generator so the models are stable.

const convDir = "testdata/ops/conv"

func numel(shape []int32) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// constF32 is a constant float tensor of uniform values in [-1, 1).
func constF32(seed uint32, shape ...int32) ts {
	r := xorshift(seed)
	t := f32(shape...)
	t.data = make([]byte, 4*numel(shape))
	for i := 0; i < numel(shape); i++ {
		v := float32(r.next()>>8)/(1<<23) - 1
		binary.LittleEndian.PutUint32(t.data[4*i:], math.Float32bits(v))
	}
	return t
}

// constI8 is a constant symmetric int8 weight tensor with the given scales (one, or one per
// channel along dim).
func constI8(seed uint32, scales []float32, dim int32, shape ...int32) ts {
	r := xorshift(seed)
	t := ts{typ: schema.TensorTypeInt8, shape: shape, q: &write.Quant{Scale: scales, ZeroPoint: make([]int64, len(scales)), Dim: dim}}
	t.data = make([]byte, numel(shape))
	for i := range t.data {
		t.data[i] = byte(int8(r.next() >> 24))
		if t.data[i] == 0x80 {
			t.data[i] = 0x81 // keep weights in [-127, 127] as TFLite's symmetric quantizer does
		}
	}
	return t
}

// constBias is an int32 (or int64 when wide) bias of n values in [-lim, lim].
func constBias(seed uint32, n int, lim int64, wide bool) ts {
	r := xorshift(seed)
	t := ts{typ: schema.TensorTypeInt32, shape: []int32{int32(n)}}
	size := 4
	if wide {
		t.typ, size = schema.TensorTypeInt64, 8
	}
	t.data = make([]byte, size*n)
	for i := 0; i < n; i++ {
		v := int64(r.next()%uint32(2*lim+1)) - lim
		if wide {
			binary.LittleEndian.PutUint64(t.data[8*i:], uint64(v))
		} else {
			binary.LittleEndian.PutUint32(t.data[4*i:], uint32(int32(v)))
		}
	}
	return t
}

// constShape is a constant int32 shape vector.
func constShape(vals ...int32) ts { return constI32(vals) }

func scales(n int, base float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = base * (1 + 0.37*float32(i%5))
	}
	return s
}

// cvModel builds a one-op model; an input with a nil shape is an omitted optional input (-1).
func cvModel(op schema.BuiltinOperator, version int32, opts write.Options, ins []ts, out ts) func() ([]byte, error) {
	omit := func(t ts) bool { return t.shape == nil }
	return oneOpModel("outpost conv test: ", op, version, opts, named("in", ins, omit), []write.Tensor{out.tensor("out")})
}

func convCases() []oracletest.OpCase {
	r := kernels.Builtins()
	conv := func(p schema.Padding, sw, sh, dw, dh int32, a schema.Activation) write.Options {
		return write.Conv2DOptions{Padding: p, StrideW: sw, StrideH: sh, DilationW: dw, DilationH: dh, Activation: a}
	}
	dw := func(p schema.Padding, sw, sh, m, dil int32, a schema.Activation) write.Options {
		return write.DepthwiseConv2DOptions{Padding: p, StrideW: sw, StrideH: sh, DepthMultiplier: m, DilationW: dil, DilationH: dil, Activation: a}
	}
	tconv := func(p schema.Padding, s int32) write.Options {
		return write.TransposeConvOptions{Padding: p, StrideW: s, StrideH: s}
	}
	pool := func(p schema.Padding, s, f int32, a schema.Activation) write.Options {
		return write.Pool2DOptions{Padding: p, StrideW: s, StrideH: s, FilterWidth: f, FilterHeight: f, Activation: a}
	}
	const (
		same, valid = schema.PaddingSame, schema.PaddingValid
		none0       = schema.ActivationNone
		relu        = schema.ActivationRelu
		relu6       = schema.ActivationRelu6
		reluN1      = schema.ActivationReluN1To1
	)
	in16 := float32(4.0 / 32768) // int16 activations cover [-4, 4)
	cases := []oracletest.OpCase{
		// CONV_2D float32
		{Name: "conv_f32_same_relu", Build: cvModel(schema.OpConv2D, 1, conv(same, 1, 1, 1, 1, relu),
			[]ts{f32(1, 5, 5, 3), constF32(1, 4, 3, 3, 3), constF32(2, 4)}, f32(1, 5, 5, 4))},
		{Name: "conv_f32_valid_stride2_relu6", Build: cvModel(schema.OpConv2D, 1, conv(valid, 2, 2, 1, 1, relu6),
			[]ts{f32(1, 7, 6, 2), constF32(3, 3, 3, 2, 2), constF32(4, 3)}, f32(1, 3, 3, 3))},
		{Name: "conv_f32_dilation_batch2", Build: cvModel(schema.OpConv2D, 2, conv(same, 1, 2, 2, 2, reluN1),
			[]ts{f32(2, 6, 6, 2), constF32(5, 2, 3, 3, 2), constF32(31, 2)}, f32(2, 3, 6, 2))},
		// CONV_2D int8: per-channel and per-tensor weights, the GEMM path's im2col and direct forms
		{Name: "conv_i8_perchannel_same_relu6", Build: cvModel(schema.OpConv2D, 3, conv(same, 1, 1, 1, 1, relu6),
			[]ts{i8(0.05, -5, 1, 6, 6, 3), constI8(6, scales(5, 0.004), 0, 5, 3, 3, 3), constBias(7, 5, 3000, false)}, i8(0.08, 3, 1, 6, 6, 5))},
		{Name: "conv_i8_pertensor_valid_stride2", Build: cvModel(schema.OpConv2D, 3, conv(valid, 2, 2, 1, 1, none0),
			[]ts{i8(0.02, 10, 1, 7, 7, 4), constI8(8, []float32{0.01}, 0, 6, 2, 2, 4), constBias(9, 6, 5000, false)}, i8(0.1, -7, 1, 3, 3, 6))},
		{Name: "conv_i8_pointwise_batch2", Build: cvModel(schema.OpConv2D, 3, conv(same, 1, 1, 1, 1, relu),
			[]ts{i8(0.03, -128, 2, 3, 4, 8), constI8(10, scales(7, 0.003), 0, 7, 1, 1, 8), constBias(11, 7, 2000, false)}, i8(0.05, -20, 2, 3, 4, 7))},
		{Name: "conv_i8_dilation", Build: cvModel(schema.OpConv2D, 3, conv(same, 2, 1, 2, 2, none0),
			[]ts{i8(0.04, 0, 1, 8, 8, 2), constI8(12, scales(3, 0.005), 0, 3, 3, 3, 2), constBias(32, 3, 1000, false)}, i8(0.06, 0, 1, 8, 4, 3)),
			Tol: xnnTolerance},
		// CONV_2D 16x8
		{Name: "conv_i16_same_relu", Build: cvModel(schema.OpConv2D, 4, conv(same, 1, 1, 1, 1, relu),
			[]ts{i16(in16, 1, 5, 5, 3), constI8(13, scales(4, 0.004), 0, 4, 3, 3, 3), constBias(14, 4, 1<<20, true)}, i16(1.0/4096, 1, 5, 5, 4))},
		{Name: "conv_i16_valid_stride2_bias32", Build: cvModel(schema.OpConv2D, 4, conv(valid, 2, 2, 1, 1, none0),
			[]ts{i16(in16, 1, 7, 7, 2), constI8(15, []float32{0.006}, 0, 3, 3, 3, 2), constBias(16, 3, 1<<18, false)}, i16(1.0/2048, 1, 3, 3, 3))},
		// DEPTHWISE_CONV_2D
		{Name: "dw_f32_same_relu6", Build: cvModel(schema.OpDepthwiseConv2D, 1, dw(same, 1, 1, 1, 1, relu6),
			[]ts{f32(1, 5, 5, 4), constF32(17, 1, 3, 3, 4), constF32(18, 4)}, f32(1, 5, 5, 4))},
		{Name: "dw_f32_mult2_valid_stride2", Build: cvModel(schema.OpDepthwiseConv2D, 1, dw(valid, 2, 2, 2, 1, none0),
			[]ts{f32(1, 7, 7, 3), constF32(19, 1, 3, 3, 6)}, f32(1, 3, 3, 6))},
		{Name: "dw_i8_perchannel_same_relu", Build: cvModel(schema.OpDepthwiseConv2D, 3, dw(same, 1, 1, 1, 1, relu),
			[]ts{i8(0.05, 7, 1, 6, 6, 8), constI8(20, scales(8, 0.006), 3, 1, 3, 3, 8), constBias(21, 8, 3000, false)}, i8(0.04, -9, 1, 6, 6, 8))},
		{Name: "dw_i8_mult2_stride2_dilation2", Build: cvModel(schema.OpDepthwiseConv2D, 3, dw(same, 2, 2, 2, 2, none0),
			[]ts{i8(0.03, -3, 2, 7, 7, 2), constI8(22, scales(4, 0.008), 3, 1, 3, 3, 4), constBias(23, 4, 2000, false)}, i8(0.05, 4, 2, 4, 4, 4))},
		{Name: "dw_i16_same", Build: cvModel(schema.OpDepthwiseConv2D, 5, dw(same, 1, 1, 1, 1, none0),
			[]ts{i16(in16, 1, 5, 5, 4), constI8(24, scales(4, 0.005), 3, 1, 3, 3, 4), constBias(25, 4, 1<<20, true)}, i16(1.0/8192, 1, 5, 5, 4))},
		{Name: "dw_i8_nobias_valid", Build: cvModel(schema.OpDepthwiseConv2D, 3, dw(valid, 1, 1, 1, 1, none0),
			[]ts{i8(0.05, -1, 1, 4, 5, 3), constI8(33, []float32{0.01}, 3, 1, 2, 2, 3)}, i8(0.03, 2, 1, 3, 4, 3))},
		// TRANSPOSE_CONV
		{Name: "tconv_f32_same_stride2", Build: cvModel(schema.OpTransposeConv, 1, tconv(same, 2),
			[]ts{constShape(1, 6, 6, 3), constF32(26, 3, 3, 3, 2), f32(1, 3, 3, 2)}, f32(1, 6, 6, 3))},
		{Name: "tconv_i8_valid_stride2_bias", Build: cvModel(schema.OpTransposeConv, 3, tconv(valid, 2),
			[]ts{constShape(1, 7, 7, 4), constI8(27, scales(4, 0.006), 0, 4, 3, 3, 3), i8(0.05, 2, 1, 3, 3, 3), constBias(28, 4, 3000, false)}, i8(0.07, -4, 1, 7, 7, 4))},
		{Name: "tconv_i16_same_stride2_bias64", Build: cvModel(schema.OpTransposeConv, 3, tconv(same, 2),
			[]ts{constShape(1, 6, 8, 3), constI8(29, scales(3, 0.005), 0, 3, 2, 3, 4), i16(in16, 1, 3, 4, 4), constBias(30, 3, 1<<20, true)}, i16(1.0/4096, 1, 6, 8, 3))},
		// Pooling
		{Name: "avgpool_f32_same_stride2_relu", Build: cvModel(schema.OpAveragePool2D, 1, pool(same, 2, 3, relu),
			[]ts{f32(1, 7, 7, 3)}, f32(1, 4, 4, 3))},
		{Name: "maxpool_f32_valid", Build: cvModel(schema.OpMaxPool2D, 1, pool(valid, 1, 2, none0),
			[]ts{f32(2, 4, 5, 2)}, f32(2, 3, 4, 2))},
		{Name: "l2pool_f32_same", Build: cvModel(schema.OpL2Pool2D, 1, pool(same, 2, 2, none0),
			[]ts{f32(1, 5, 5, 3)}, f32(1, 3, 3, 3))},
		{Name: "avgpool_i8_same_stride2", Build: cvModel(schema.OpAveragePool2D, 2, pool(same, 2, 3, none0),
			[]ts{i8(0.05, -3, 1, 7, 7, 4)}, i8(0.05, -3, 1, 4, 4, 4))},
		{Name: "maxpool_i8_valid_relu6", Build: cvModel(schema.OpMaxPool2D, 2, pool(valid, 2, 2, relu6),
			[]ts{i8(0.05, 0, 1, 6, 6, 3)}, i8(0.05, 0, 1, 3, 3, 3))},
		{Name: "avgpool_i16_valid", Build: cvModel(schema.OpAveragePool2D, 3, pool(valid, 1, 2, none0),
			[]ts{i16(in16, 1, 4, 4, 3)}, i16(in16, 1, 3, 3, 3))},
		{Name: "maxpool_i16_same_stride2", Build: cvModel(schema.OpMaxPool2D, 3, pool(same, 2, 3, none0),
			[]ts{i16(in16, 1, 5, 5, 2)}, i16(in16, 1, 3, 3, 2))},
		// Quantized SOFTMAX
		{Name: "softmax_i8_beta1", Build: cvModel(schema.OpSoftmax, 2, write.SoftmaxOptions{Beta: 1},
			[]ts{i8(0.1, 5, 3, 10)}, i8(1.0/256, -128, 3, 10)), Tol: lutTolerance},
		{Name: "softmax_i8_beta_half_rank3", Build: cvModel(schema.OpSoftmax, 2, write.SoftmaxOptions{Beta: 0.5},
			[]ts{i8(0.05, 0, 2, 3, 7)}, i8(1.0/256, -128, 2, 3, 7)), Tol: lutTolerance},
	}
	for i := range cases {
		cases[i].Resolver = r
	}
	return cases
}

// lutTolerance: full TFLite's int8 SOFTMAX uses a float lookup table (optimized_ops::
// SoftmaxInt8LUT), not the reference fixed-point arithmetic that TFLite Micro and this kernel
// use, so the oracle may be one LSB away. Exactness against the reference is tested by
// TestSoftmaxInt8Reference.
func lutTolerance(dt tensor.DType) oracletest.Tolerance {
	if dt == tensor.Int8 {
		return oracletest.Tolerance{LSB: 1}
	}
	return oracletest.Exact(dt)
}

// xnnTolerance is for int8 cases whose node the oracle hands to XNNPACK (its --profile lists
// no CONV_2D node for them): XNNPACK requantizes differently and may be one LSB away from the
// reference arithmetic, which this kernel reproduces (the non-delegated int8 cases are exact).
func xnnTolerance(dt tensor.DType) oracletest.Tolerance {
	if dt == tensor.Int8 {
		return oracletest.Tolerance{LSB: 1}
	}
	return oracletest.Exact(dt)
}

func TestConvOps(t *testing.T) {
	oracletest.RunOpCases(t, convDir, convCases())
}

// TestConvRejects: bad shapes and parameters are refused at NewInterpreter with one clear
// line, never a panic.
func TestConvRejects(t *testing.T) {
	conv := write.Conv2DOptions{Padding: schema.PaddingSame, StrideW: 1, StrideH: 1}
	pool := write.Pool2DOptions{Padding: schema.PaddingValid, StrideW: 1, StrideH: 1, FilterWidth: 2, FilterHeight: 2}
	runRejects(t, []rejectCase{
		{"conv rank 3 input", cvModel(schema.OpConv2D, 1, conv, []ts{f32(5, 5, 3), constF32(1, 4, 3, 3, 3)}, f32(1, 5, 5, 4)), "rank 3"},
		{"conv channel mismatch", cvModel(schema.OpConv2D, 1, conv, []ts{f32(1, 5, 5, 2), constF32(1, 4, 3, 3, 3)}, f32(1, 5, 5, 4)), "input channels"},
		{"conv zero stride", cvModel(schema.OpConv2D, 1, write.Conv2DOptions{Padding: schema.PaddingSame}, []ts{f32(1, 5, 5, 3), constF32(1, 4, 3, 3, 3)}, f32(1, 5, 5, 4)), "stride 0x0"},
		{"conv wrong output shape", cvModel(schema.OpConv2D, 1, conv, []ts{f32(1, 5, 5, 3), constF32(1, 4, 3, 3, 3)}, f32(1, 4, 5, 4)), "want [1 5 5 4]"},
		{"conv filter larger than input", cvModel(schema.OpConv2D, 1, write.Conv2DOptions{Padding: schema.PaddingValid, StrideW: 1, StrideH: 1}, []ts{f32(1, 2, 2, 3), constF32(1, 4, 3, 3, 3)}, f32(1, 1, 1, 4)), "larger than input"},
		{"conv bias length", cvModel(schema.OpConv2D, 1, conv, []ts{f32(1, 5, 5, 3), constF32(1, 4, 3, 3, 3), constF32(2, 3)}, f32(1, 5, 5, 4)), "bias"},
		{"conv int8 per-channel on wrong dimension", cvModel(schema.OpConv2D, 3, conv, []ts{i8(0.1, 0, 1, 4, 4, 2), constI8(1, scales(2, 0.01), 3, 4, 1, 1, 2)}, i8(0.1, 0, 1, 4, 4, 4)), "2 scales on dimension 3"},
		{"conv int8 float bias", cvModel(schema.OpConv2D, 3, conv, []ts{i8(0.1, 0, 1, 4, 4, 2), constI8(1, []float32{0.01}, 0, 4, 1, 1, 2), constF32(3, 4)}, i8(0.1, 0, 1, 4, 4, 4)), "bias"},
		{"conv int16 zero point", cvModel(schema.OpConv2D, 4, conv, []ts{{typ: schema.TensorTypeInt16, shape: []int32{1, 4, 4, 2}, q: &write.Quant{Scale: []float32{0.1}, ZeroPoint: []int64{3}}}, constI8(1, []float32{0.01}, 0, 4, 1, 1, 2)}, i16(0.1, 1, 4, 4, 4)), "zero point 3"},
		{"conv int8 input float output", cvModel(schema.OpConv2D, 3, conv, []ts{i8(0.1, 0, 1, 4, 4, 2), constI8(1, []float32{0.01}, 0, 4, 1, 1, 2)}, f32(1, 4, 4, 4)), "output"},
		{"dw multiplier mismatch", cvModel(schema.OpDepthwiseConv2D, 1, write.DepthwiseConv2DOptions{Padding: schema.PaddingSame, StrideW: 1, StrideH: 1, DepthMultiplier: 3}, []ts{f32(1, 4, 4, 2), constF32(1, 1, 3, 3, 4)}, f32(1, 4, 4, 4)), "depth_multiplier 3"},
		{"dw channels not multiple", cvModel(schema.OpDepthwiseConv2D, 1, write.DepthwiseConv2DOptions{Padding: schema.PaddingSame, StrideW: 1, StrideH: 1}, []ts{f32(1, 4, 4, 3), constF32(1, 1, 3, 3, 4)}, f32(1, 4, 4, 4)), "not a multiple"},
		{"tconv output_shape mismatch", cvModel(schema.OpTransposeConv, 1, write.TransposeConvOptions{Padding: schema.PaddingSame, StrideW: 2, StrideH: 2}, []ts{constShape(1, 5, 6, 3), constF32(1, 3, 3, 3, 2), f32(1, 3, 3, 2)}, f32(1, 6, 6, 3)), "output_shape"},
		{"tconv output_shape dtype", cvModel(schema.OpTransposeConv, 1, write.TransposeConvOptions{Padding: schema.PaddingSame, StrideW: 2, StrideH: 2}, []ts{constF32(1, 4), constF32(1, 3, 3, 3, 2), f32(1, 3, 3, 2)}, f32(1, 6, 6, 3)), "int32[4]"},
		{"pool zero filter", cvModel(schema.OpMaxPool2D, 1, write.Pool2DOptions{Padding: schema.PaddingValid, StrideW: 1, StrideH: 1}, []ts{f32(1, 4, 4, 1)}, f32(1, 4, 4, 1)), "filter 0x0"},
		{"pool output shape", cvModel(schema.OpMaxPool2D, 1, pool, []ts{f32(1, 4, 4, 1)}, f32(1, 4, 4, 1)), "want [1 3 3 1]"},
		{"l2pool int8", cvModel(schema.OpL2Pool2D, 1, pool, []ts{i8(0.1, 0, 1, 4, 4, 1)}, i8(0.1, 0, 1, 3, 3, 1)), "not supported"},
		{"pool dtype mismatch", cvModel(schema.OpAveragePool2D, 1, pool, []ts{i8(0.1, 0, 1, 4, 4, 1)}, i16(0.1, 1, 3, 3, 1)), "output"},
		{"softmax int8 output scale", cvModel(schema.OpSoftmax, 2, write.SoftmaxOptions{Beta: 1}, []ts{i8(0.1, 0, 1, 4)}, i8(0.1, -128, 1, 4)), "want 1/256"},
		{"softmax int8 scalar", cvModel(schema.OpSoftmax, 2, write.SoftmaxOptions{Beta: 1}, []ts{i8(0.1, 0, []int32{}...)}, i8(1.0/256, -128, []int32{}...)), "scalar"},
	})
}
