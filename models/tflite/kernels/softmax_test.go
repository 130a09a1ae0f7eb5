package kernels_test

import (
	"math"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Single-op SOFTMAX and LOG_SOFTMAX models in every supported dtype, checked against the
// official runtime's outputs committed in testdata/ops/softmax (workflow: oracletest.OpCase).
// The int8-input SOFTMAX cases with int8 output live in conv_test.go (testdata/ops/conv).

const softmaxDir = "testdata/ops/softmax"

// cvQ is a quantized tensor with any zero point (i16 fixes it at 0).
func cvQ(typ schema.TensorType, scale float32, zp int64, shape ...int32) ts {
	return ts{typ: typ, shape: shape, q: &write.Quant{Scale: []float32{scale}, ZeroPoint: []int64{zp}}}
}

func softmaxCases() []oracletest.OpCase {
	sm := func(beta float32) write.Options { return write.SoftmaxOptions{Beta: beta} }
	logSM := write.Empty(schema.BuiltinOptionsLogSoftmax)
	out16 := func(shape ...int32) ts { return i16(1.0/32768, shape...) }      // [0, 1) in Q0.15
	outLog8 := func(shape ...int32) ts { return i8(16.0/256, 127, shape...) } // [-16, 0] in 1/16 steps
	t16 := schema.TensorTypeInt16
	cases := []oracletest.OpCase{
		// float32 SOFTMAX: beta, rank 1 to 5, a size-1 softmax axis (all ones).
		{Name: "softmax_f32_rank1", Build: cvModel(schema.OpSoftmax, 1, sm(1), []ts{f32(10)}, f32(10))},
		{Name: "softmax_f32_beta2_rank4", Build: cvModel(schema.OpSoftmax, 1, sm(2), []ts{f32(2, 2, 3, 5)}, f32(2, 2, 3, 5))},
		{Name: "softmax_f32_axis1", Build: cvModel(schema.OpSoftmax, 1, sm(1), []ts{f32(3, 1)}, f32(3, 1))},
		{Name: "softmax_f32_rank5", Build: cvModel(schema.OpSoftmax, 1, sm(0.5), []ts{f32(1, 2, 1, 3, 4)}, f32(1, 2, 1, 3, 4))},
		// int16 SOFTMAX (16x8 scheme, exp and 1/(1+x) tables): exact. Input scales chosen so
		// that differences span less than, about, and far more than the exp table's [-10, 0].
		{Name: "softmax_i16_beta1", Build: cvModel(schema.OpSoftmax, 3, sm(1), []ts{i16(1.0/4096, 3, 10)}, out16(3, 10))},
		{Name: "softmax_i16_wide_scale", Build: cvModel(schema.OpSoftmax, 3, sm(1), []ts{i16(0.01, 4, 16)}, out16(4, 16))},
		{Name: "softmax_i16_narrow_scale_beta3", Build: cvModel(schema.OpSoftmax, 3, sm(3), []ts{i16(1.0/32768, 2, 12)}, out16(2, 12))},
		{Name: "softmax_i16_beta_half_rank3", Build: cvModel(schema.OpSoftmax, 3, sm(0.5), []ts{i16(10.0/32768, 2, 3, 7)}, out16(2, 3, 7))},
		// Rank 4 at most: full TFLite refuses int16 SOFTMAX above 4D at Invoke (TFLite Micro
		// and this kernel accept any rank).
		{Name: "softmax_i16_rank4", Build: cvModel(schema.OpSoftmax, 3, sm(1), []ts{i16(1.0/2048, 1, 2, 3, 4)}, out16(1, 2, 3, 4))},
		{Name: "softmax_i16_rank1", Build: cvModel(schema.OpSoftmax, 3, sm(1), []ts{i16(1.0/1024, 40)}, out16(40))},
		{Name: "softmax_i16_axis1", Build: cvModel(schema.OpSoftmax, 3, sm(1), []ts{i16(1.0/1024, 4, 1)}, out16(4, 1))},
		{Name: "softmax_i16_zero_point", Build: cvModel(schema.OpSoftmax, 3, sm(1), []ts{cvQ(t16, 1.0/4096, 0, 2, 9)}, out16(2, 9))},
		// int8 input, int16 output (scale 1/65536, zero point -32768): exact too.
		{Name: "softmax_i8_to_i16", Build: cvModel(schema.OpSoftmax, 2, sm(1), []ts{i8(0.1, 3, 3, 10)}, cvQ(t16, 1.0/65536, -32768, 3, 10))},
		// float32 LOG_SOFTMAX.
		{Name: "logsoftmax_f32", Build: cvModel(schema.OpLogSoftmax, 1, logSM, []ts{f32(3, 10)}, f32(3, 10))},
		{Name: "logsoftmax_f32_rank4", Build: cvModel(schema.OpLogSoftmax, 1, logSM, []ts{f32(1, 2, 3, 4)}, f32(1, 2, 3, 4))},
		{Name: "logsoftmax_f32_axis1", Build: cvModel(schema.OpLogSoftmax, 1, logSM, []ts{f32(2, 1)}, f32(2, 1))},
		// int8 LOG_SOFTMAX: input scales from fine to coarse (coarse ones saturate at -16),
		// non-zero input zero points, rank 1 to 5.
		{Name: "logsoftmax_i8", Build: cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(0.1, 5, 3, 10)}, outLog8(3, 10))},
		{Name: "logsoftmax_i8_fine_rank3", Build: cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(0.02, -4, 2, 3, 7)}, outLog8(2, 3, 7))},
		{Name: "logsoftmax_i8_coarse", Build: cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(0.5, 0, 4, 8)}, outLog8(4, 8))},
		{Name: "logsoftmax_i8_rank1", Build: cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(0.05, 0, 64)}, outLog8(64))},
		{Name: "logsoftmax_i8_rank5", Build: cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(0.07, 10, 1, 2, 1, 3, 5)}, outLog8(1, 2, 1, 3, 5))},
		{Name: "logsoftmax_i8_axis1", Build: cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(0.1, 0, 5, 1)}, outLog8(5, 1))},
	}
	r := kernels.Builtins()
	for i := range cases {
		cases[i].Resolver = r
	}
	return cases
}

func TestSoftmaxOps(t *testing.T) {
	oracletest.RunOpCases(t, softmaxDir, softmaxCases())
}

// TestSoftmaxAllocs holds every softmax case's Invoke at zero allocations.
func TestSoftmaxAllocs(t *testing.T) {
	oracletest.RunAllocCases(t, softmaxCases(), nil)
}

// TestSoftmaxEmptyAxis: a zero-sized softmax axis runs (and ends) without touching memory.
func TestSoftmaxEmptyAxis(t *testing.T) {
	logSM := write.Empty(schema.BuiltinOptionsLogSoftmax)
	for _, tc := range []struct {
		name  string
		build func() ([]byte, error)
	}{
		{"softmax f32", cvModel(schema.OpSoftmax, 1, write.SoftmaxOptions{Beta: 1}, []ts{f32(2, 0)}, f32(2, 0))},
		{"softmax i8", cvModel(schema.OpSoftmax, 2, write.SoftmaxOptions{Beta: 1}, []ts{i8(0.1, 0, 2, 0)}, i8(1.0/256, -128, 2, 0))},
		{"softmax i16", cvModel(schema.OpSoftmax, 3, write.SoftmaxOptions{Beta: 1}, []ts{i16(0.001, 2, 0)}, i16(1.0/32768, 2, 0))},
		{"log_softmax f32", cvModel(schema.OpLogSoftmax, 1, logSM, []ts{f32(2, 0)}, f32(2, 0))},
		{"log_softmax i8", cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(0.1, 0, 2, 0)}, i8(16.0/256, 127, 2, 0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			m, err := tflite.Load(data)
			if err != nil {
				t.Skipf("the loader refuses an empty tensor: %v", err)
			}
			ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
			if err != nil {
				t.Fatalf("NewInterpreter: %v", err)
			}
			if err := ip.Invoke(); err != nil {
				t.Fatalf("Invoke: %v", err)
			}
		})
	}
}

// TestSoftmaxRejects: bad dtypes, shapes and quantization are refused at NewInterpreter with
// one clear line, never a panic.
func TestSoftmaxRejects(t *testing.T) {
	sm := write.SoftmaxOptions{Beta: 1}
	logSM := write.Empty(schema.BuiltinOptionsLogSoftmax)
	boolT := ts{typ: schema.TensorTypeBool, shape: []int32{2, 3}}
	runRejects(t, []rejectCase{
		{"softmax int16 output scale", cvModel(schema.OpSoftmax, 3, sm, []ts{i16(0.001, 2, 4)}, i16(1.0/256, 2, 4)), "want 1/32768"},
		{"softmax int16 output zero point", cvModel(schema.OpSoftmax, 3, sm, []ts{i16(0.001, 2, 4)}, cvQ(schema.TensorTypeInt16, 1.0/32768, 5, 2, 4)), "want 1/32768"},
		{"softmax int16 to int8", cvModel(schema.OpSoftmax, 3, sm, []ts{i16(0.001, 2, 4)}, i8(1.0/256, -128, 2, 4)), "int16 only"},
		{"softmax int16 shape", cvModel(schema.OpSoftmax, 3, sm, []ts{i16(0.001, 2, 4)}, i16(1.0/32768, 2, 5)), "has shape"},
		{"softmax int16 unquantized", cvModel(schema.OpSoftmax, 3, sm, []ts{{typ: schema.TensorTypeInt16, shape: []int32{2, 4}}}, i16(1.0/32768, 2, 4)), "no quantization"},
		{"softmax int16 axis too long", cvModel(schema.OpSoftmax, 3, sm, []ts{i16(0.001, 1, 70000)}, i16(1.0/32768, 1, 70000)), "overflow"},
		{"softmax int8 to int16 scale", cvModel(schema.OpSoftmax, 2, sm, []ts{i8(0.1, 0, 2, 4)}, cvQ(schema.TensorTypeInt16, 1.0/32768, 0, 2, 4)), "want 1/65536"},
		{"softmax beta NaN", cvModel(schema.OpSoftmax, 1, write.SoftmaxOptions{Beta: float32(math.NaN())}, []ts{f32(2, 4)}, f32(2, 4)), "not finite"},
		{"softmax int8 beta 0", cvModel(schema.OpSoftmax, 2, write.SoftmaxOptions{Beta: -1}, []ts{i8(0.1, 0, 2, 4)}, i8(1.0/256, -128, 2, 4)), "want > 0"},
		{"softmax bool", cvModel(schema.OpSoftmax, 1, sm, []ts{boolT}, boolT), "want float32, int8, int16 or uint8"},
		{"log_softmax int8 output scale", cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(0.1, 0, 2, 4)}, i8(1.0/256, -128, 2, 4)), "want 16/256 and 127"},
		{"log_softmax int8 to int16", cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(0.1, 0, 2, 4)}, i16(1.0/32768, 2, 4)), "want int8"},
		{"log_softmax int8 shape", cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(0.1, 0, 2, 4)}, i8(16.0/256, 127, 4, 2)), "has shape"},
		{"log_softmax int8 tiny scale", cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i8(1e-9, 0, 2, 4)}, i8(16.0/256, 127, 2, 4)), "too small"},
		{"log_softmax int16", cvModel(schema.OpLogSoftmax, 2, logSM, []ts{i16(0.001, 2, 4)}, i16(0.001, 2, 4)), "want float32 or int8"},
		{"log_softmax float shape", cvModel(schema.OpLogSoftmax, 1, logSM, []ts{f32(2, 4)}, f32(2, 5)), "elements"},
		{"log_softmax scalar", cvModel(schema.OpLogSoftmax, 1, logSM, []ts{f32([]int32{}...)}, f32([]int32{}...)), "scalar"},
		{"log_softmax two inputs", cvModel(schema.OpLogSoftmax, 1, logSM, []ts{f32(2, 4), f32(2, 4)}, f32(2, 4)), "2 inputs"},
	})
}
