package kernels_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Single-op models of the elementwise family, checked against the official runtime's output
// committed in testdata/ops/elementwise (see oracletest.OpCase for the workflow).

const elementwiseDir = "testdata/ops/elementwise"

// opModel builds a one-op model: ins feed op, outs are its outputs and the model's outputs.
func opModel(op schema.BuiltinOperator, version int32, opts write.Options, ins []ts, outs ...ts) func() ([]byte, error) {
	return oneOpModel("outpost elementwise test: ", op, version, opts, named("in", ins, nil), named("out", outs, nil))
}

func unary(op schema.BuiltinOperator, in, out ts) func() ([]byte, error) {
	return opModel(op, 1, nil, []ts{in}, out)
}

func bin(op schema.BuiltinOperator, opts write.Options, a, b, out ts) func() ([]byte, error) {
	return opModel(op, 1, opts, []ts{a, b}, out)
}

// addSubOpts writes ADD/SUB options with an explicit pot_scale_int16 (slot 1, default true).
func addSubOpts(tag schema.BuiltinOptions, act schema.Activation, pot bool) write.Table {
	return write.Table{Type: tag, Fields: []write.Field{write.Int8Field(0, int8(act)), write.BoolField(1, pot)}}
}

// int8Delegated marks cases whose int8 node XNNPACK takes inside the oracle: XNNPACK
// requantizes in float, so the oracle may be ±1 LSB from the reference arithmetic we implement
// (see ../shared/oracle/README.md); those cases use oracletest.Default (Int8LSB).
func int8Delegated(dt tensor.DType) oracletest.Tolerance { return oracletest.Default(dt) }

func elementwiseCases() []oracletest.OpCase {
	r := kernels.Builtins()
	none, relu, relu6, n1 := schema.ActivationNone, schema.ActivationRelu, schema.ActivationRelu6, schema.ActivationReluN1To1
	c := func(name string, b func() ([]byte, error)) oracletest.OpCase {
		return oracletest.OpCase{Name: name, Build: b, Resolver: r}
	}
	d := func(name string, b func() ([]byte, error)) oracletest.OpCase {
		return oracletest.OpCase{Name: name, Build: b, Resolver: r, Tol: int8Delegated}
	}
	// pot: int16 ADD/SUB with pot_scale_int16 and power-of-two scales. The full runtime takes
	// its power-of-two path; TFLite Micro, which rules (docs/tflite.md), the general one: up
	// to 1 LSB apart, exact against TFLite Micro.
	pot := func(name string, b func() ([]byte, error)) oracletest.OpCase {
		return oracletest.OpCase{Name: name, Build: b, Resolver: r, Tol: func(dt tensor.DType) oracletest.Tolerance {
			if dt == tensor.Int16 {
				return oracletest.Tolerance{LSB: 1}
			}
			return oracletest.Exact(dt)
		}}
	}
	return []oracletest.OpCase{
		// float32 arithmetic, broadcasting across ranks 0-5 and fused activations.
		c("add_f32_bcast_relu", bin(schema.OpAdd, write.AddOptions(relu), f32(2, 3, 4), f32(4), f32(2, 3, 4))),
		c("add_f32_rank5", bin(schema.OpAdd, write.AddOptions(none), f32(2, 1, 3, 1, 2), f32(1, 2, 1, 4, 1), f32(2, 2, 3, 4, 2))),
		c("add_f32_scalar", bin(schema.OpAdd, write.AddOptions(none), f32(), f32(3, 5), f32(3, 5))),
		c("sub_f32_bcast_relu6", bin(schema.OpSub, write.SubOptions(relu6), f32(1, 4), f32(3, 1), f32(3, 4))),
		c("mul_f32_n1", bin(schema.OpMul, write.MulOptions(n1), f32(4, 1, 5), f32(1, 6, 1), f32(4, 6, 5))),
		c("div_f32", bin(schema.OpDiv, write.DivOptions(none), f32(3, 4), f32(3, 4), f32(3, 4))),
		c("div_f32_bcast_relu", bin(schema.OpDiv, write.DivOptions(relu), f32(2, 3), f32(3), f32(2, 3))),
		c("sqdiff_f32", bin(schema.OpSquaredDifference, nil, f32(2, 5), f32(5), f32(2, 5))),
		c("max_f32", bin(schema.OpMaximum, nil, f32(3, 4), f32(1, 4), f32(3, 4))),
		c("min_f32", bin(schema.OpMinimum, nil, f32(3, 4), f32(3, 1), f32(3, 4))),
		c("floordiv_f32", bin(schema.OpFloorDiv, nil, f32(4, 5), f32(4, 5).withF32(seq(20, -2.5, 0.25, true)...), f32(4, 5))),
		c("floormod_f32", bin(schema.OpFloorMod, nil, f32(4, 5), f32(5).withF32(0.3, -0.7, 0.5, -0.25, 1.5), f32(4, 5))),
		c("add_n_f32", opModel(schema.OpAddN, 1, nil, []ts{f32(2, 3), f32(2, 3), f32(2, 3)}, f32(2, 3))),

		// int32 arithmetic (never delegated: exact).
		c("add_i32_bcast", bin(schema.OpAdd, write.AddOptions(none), i32(2, 3), i32(3), i32(2, 3))),
		c("sub_i32_relu", bin(schema.OpSub, write.SubOptions(relu), i32(4, 4), i32(4, 4), i32(4, 4))),
		c("mul_i32", bin(schema.OpMul, write.MulOptions(none), i32(3, 4), i32(1, 4), i32(3, 4))),
		c("div_i32", bin(schema.OpDiv, write.DivOptions(none), i32(3, 4), i32(3, 4), i32(3, 4))),
		c("floordiv_i32", bin(schema.OpFloorDiv, nil, i32(5, 4), i32(5, 4), i32(5, 4))),
		c("floormod_i32", bin(schema.OpFloorMod, nil, i32(5, 4), i32(4), i32(5, 4))),
		c("max_i32", bin(schema.OpMaximum, nil, i32(2, 3, 2), i32(2), i32(2, 3, 2))),
		c("min_i32", bin(schema.OpMinimum, nil, i32(6), i32(), i32(6))),
		c("sqdiff_i32", bin(schema.OpSquaredDifference, nil, i32(3, 3), i32(3, 3), i32(3, 3))),
		c("add_n_i32", opModel(schema.OpAddN, 1, nil, []ts{i32(7), i32(7)}, i32(7))),

		// int8: general rescaling paths. XNNPACK takes ADD/SUB/MUL int8 nodes in the oracle
		// (--profile), so they use the ±LSB tolerance; MAXIMUM/MINIMUM run TFLite's own kernel.
		d("add_i8_bcast_relu", bin(schema.OpAdd, write.AddOptions(relu), i8(0.05, -3, 2, 3, 8), i8(0.02, 5, 8), i8(0.06, -10, 2, 3, 8))),
		d("add_i8_same", bin(schema.OpAdd, write.AddOptions(none), i8(0.1, 0, 64), i8(0.1, 0, 64), i8(0.2, 1, 64))),
		d("sub_i8_bcast", bin(schema.OpSub, write.SubOptions(none), i8(0.03, 2, 4, 6), i8(0.05, -1, 6), i8(0.07, 3, 4, 6))),
		d("mul_i8_bcast_relu6", bin(schema.OpMul, write.MulOptions(relu6), i8(0.04, 1, 3, 8), i8(0.03, -2, 1, 8), i8(0.01, -5, 3, 8))),
		c("max_i8", bin(schema.OpMaximum, nil, i8(0.1, 2, 4, 5), i8(0.1, 2, 5), i8(0.1, 2, 4, 5))),
		c("min_i8", bin(schema.OpMinimum, nil, i8(0.1, 2, 4, 5), i8(0.1, 2, 4, 1), i8(0.1, 2, 4, 5))),

		// int16 (never delegated: exact).
		c("add_i16_general", bin(schema.OpAdd, addSubOpts(schema.BuiltinOptionsAdd, none, false), i16(0.0003, 4, 32), i16(0.0005, 4, 32), i16(0.0007, 4, 32))),
		c("add_i16_general_bcast_relu", bin(schema.OpAdd, addSubOpts(schema.BuiltinOptionsAdd, relu, false), i16(0.0002, 2, 3, 16), i16(0.0004, 16), i16(0.0005, 2, 3, 16))),
		pot("add_i16_pot", bin(schema.OpAdd, addSubOpts(schema.BuiltinOptionsAdd, none, true), i16(1.0/4096, 4, 32), i16(1.0/1024, 4, 32), i16(1.0/1024, 4, 32))),
		c("add_i16_pot_fallback", bin(schema.OpAdd, addSubOpts(schema.BuiltinOptionsAdd, none, true), i16(0.0003, 64), i16(0.0005, 64), i16(0.0007, 64))),
		c("sub_i16_general_bcast", bin(schema.OpSub, addSubOpts(schema.BuiltinOptionsSub, none, false), i16(0.0003, 3, 4, 8), i16(0.0002, 8), i16(0.0006, 3, 4, 8))),
		pot("sub_i16_pot", bin(schema.OpSub, addSubOpts(schema.BuiltinOptionsSub, relu6, true), i16(1.0/2048, 100), i16(1.0/8192, 100), i16(1.0/2048, 100))),
		c("mul_i16", bin(schema.OpMul, write.MulOptions(none), i16(0.001, 4, 16), i16(0.002, 16), i16(0.05, 4, 16))),
		c("max_i16", bin(schema.OpMaximum, nil, i16(0.001, 40), i16(0.001, 40), i16(0.001, 40))),

		// comparisons and logic.
		c("equal_f32_bcast", bin(schema.OpEqual, nil, f32(3, 4), f32(4).withF32(0, 0.5, -0.5, 1), boolT(3, 4))),
		c("greater_f32", bin(schema.OpGreater, nil, f32(2, 3, 4), f32(3, 1), boolT(2, 3, 4))),
		c("less_i32_bcast", bin(schema.OpLess, nil, i32(4, 5), i32(5), boolT(4, 5))),
		c("greater_equal_i8_requant", bin(schema.OpGreaterEqual, nil, i8(0.05, 3, 6, 8), i8(0.1, -4, 8), boolT(6, 8))),
		c("not_equal_bool", bin(schema.OpNotEqual, nil, boolT(4, 6), boolT(6), boolT(4, 6))),
		c("equal_i8_scalar", bin(schema.OpEqual, nil, i8(0.5, 0, 300), i8(0.5, 0, 1), boolT(300))),
		c("logical_and_bcast", bin(schema.OpLogicalAnd, nil, boolT(3, 8), boolT(8), boolT(3, 8))),
		c("logical_or", bin(schema.OpLogicalOr, nil, boolT(24), boolT(24), boolT(24))),
		c("logical_not", unary(schema.OpLogicalNot, boolT(5, 5), boolT(5, 5))),
		c("select_f32", opModel(schema.OpSelect, 1, nil, []ts{boolT(4, 5), f32(4, 5), f32(4, 5)}, f32(4, 5))),
		c("select_i32_rank1_cond", opModel(schema.OpSelect, 1, nil, []ts{boolT(3), i32(3, 4), i32(3, 4)}, i32(3, 4))),
		c("select_v2_i16_bcast", opModel(schema.OpSelectV2, 1, nil, []ts{boolT(4, 1), i16(0.01, 1, 6), i16(0.01, 4, 6)}, i16(0.01, 4, 6))),

		// unary float math.
		c("abs_f32", unary(schema.OpAbs, f32(3, 7), f32(3, 7))),
		c("neg_f32", unary(schema.OpNeg, f32(21), f32(21))),
		c("sin_f32", unary(schema.OpSin, f32(21), f32(21))),
		c("cos_f32", unary(schema.OpCos, f32(21), f32(21))),
		c("exp_f32", unary(schema.OpExp, f32(21), f32(21))),
		c("log_f32", unary(schema.OpLog, f32(2, 20), f32(2, 20))),
		c("sqrt_f32", unary(schema.OpSqrt, f32(2, 20), f32(2, 20))),
		c("rsqrt_f32", unary(schema.OpRsqrt, f32(2, 20), f32(2, 20))),
		c("square_f32", unary(schema.OpSquare, f32(21), f32(21))),
		c("ceil_f32", unary(schema.OpCeil, f32(21), f32(21))),
		c("floor_f32", unary(schema.OpFloor, f32(21), f32(21))),
		c("round_f32_ties", opModel(schema.OpRound, 1, nil, []ts{f32(12).withF32(seq(12, -2.5, 0.5, false)...)}, f32(12))),
		c("neg_i32", unary(schema.OpNeg, i32(30), i32(30))),
		c("cast_f32_i32", unary(schema.OpCast, f32(30), i32(30))),
		c("cast_i32_f32", unary(schema.OpCast, i32(30), f32(30))),
		c("cast_i16_i32", unary(schema.OpCast, i16(1, 30), i32(30))),
		c("cast_i8_f32", unary(schema.OpCast, i8(1, 0, 30), f32(30))),
		c("cast_bool_f32", unary(schema.OpCast, boolT(30), f32(30))),
		c("cast_i32_bool", unary(schema.OpCast, i32(30), boolT(30))),

		// activations.
		c("relu_f32", unary(schema.OpRelu, f32(3, 10), f32(3, 10))),
		c("relu6_f32_scaled", opModel(schema.OpRelu6, 1, nil, []ts{f32(16).withF32(seq(16, -8, 1, false)...)}, f32(16))),
		c("relu_n1_f32", unary(schema.OpReluN1To1, f32(30), f32(30))),
		c("relu_i8_requant", unary(schema.OpRelu, i8(0.02, -10, 256), i8(0.01, -128, 256))),
		c("relu6_i8", unary(schema.OpRelu6, i8(0.05, 5, 256), i8(0.05, 5, 256))),
		c("relu_n1_i8", unary(schema.OpReluN1To1, i8(0.01, 0, 256), i8(0.008, 2, 256))),
		c("relu_i16", unary(schema.OpRelu, i16(0.0004, 200), i16(0.0002, 200))),
		c("relu6_i16", unary(schema.OpRelu6, i16(0.0003, 200), i16(0.0003, 200))),
		// LEAKY_RELU and ELU int8 are taken by XNNPACK in the oracle (±1 LSB on 44 and 39 of
		// 256 values): tolerance. RELU/RELU6/RELU_N1_TO_1 and PRELU int8 are not: exact.
		c("leaky_relu_f32", opModel(schema.OpLeakyRelu, 1, write.LeakyReluOptions{Alpha: 0.2}, []ts{f32(4, 10)}, f32(4, 10))),
		d("leaky_relu_i8", opModel(schema.OpLeakyRelu, 1, write.LeakyReluOptions{Alpha: 0.1}, []ts{i8(0.05, -3, 256)}, i8(0.04, 7, 256))),
		c("leaky_relu_i16", opModel(schema.OpLeakyRelu, 2, write.LeakyReluOptions{Alpha: 0.3}, []ts{i16(0.0003, 300)}, i16(0.0002, 300))),
		c("prelu_f32_bcast", bin(schema.OpPrelu, nil, f32(2, 3, 4), f32(4).withF32(0.1, -0.5, 2, 0), f32(2, 3, 4))),
		c("prelu_i8", bin(schema.OpPrelu, nil, i8(0.05, 2, 2, 4, 8), i8(0.01, 0, 8).withI8(10, -20, 30, 40, 50, 60, -70, 0), i8(0.03, -1, 2, 4, 8))),
		c("elu_f32", unary(schema.OpElu, f32(30), f32(30))),
		d("elu_i8", unary(schema.OpElu, i8(0.03, 0, 256), i8(0.02, -50, 256))),
		c("tanh_f32", unary(schema.OpTanh, f32(30), f32(30))),
		c("logistic_f32", unary(schema.OpLogistic, f32(30), f32(30))),
		c("hard_swish_f32", opModel(schema.OpHardSwish, 1, nil, []ts{f32(24).withF32(seq(24, -4, 0.375, false)...)}, f32(24))),
	}
}

// seq returns n values start, start+step, …, skipping zero when nonzero is set (divisors).
func seq(n int, start, step float32, nonzero bool) []float32 {
	var out []float32
	for v := start; len(out) < n; v += step {
		if nonzero && v == 0 {
			continue
		}
		out = append(out, v)
	}
	return out
}

func TestElementwiseOracle(t *testing.T) {
	oracletest.RunOpCases(t, elementwiseDir, elementwiseCases())
}

// TestElementwiseAllocs holds Invoke at zero allocations for every elementwise case.
func TestElementwiseAllocs(t *testing.T) {
	oracletest.RunAllocCases(t, elementwiseCases(), func(ip *tflite.Interpreter) {
		// Inputs stay zero except divisors, which must not be 0 for integer division.
		for i := 0; i < ip.NumInputs(); i++ {
			in := ip.Input(i)
			for j := range in.Int32() {
				in.Int32()[j] = 3
			}
		}
	})
}

// TestElementwiseRejects checks that bad models fail in NewInterpreter with one clear line
// naming the problem, never a panic.
func TestElementwiseRejects(t *testing.T) {
	none := schema.ActivationNone
	runRejects(t, []rejectCase{
		{"add shapes", bin(schema.OpAdd, write.AddOptions(none), f32(2, 3), f32(4), f32(2, 3)), "do not broadcast"},
		{"add types", bin(schema.OpAdd, write.AddOptions(none), f32(3), i32(3), f32(3)), "types must match"},
		{"add rank 7", bin(schema.OpAdd, write.AddOptions(none), f32(1, 1, 1, 1, 1, 1, 2), f32(2), f32(1, 1, 1, 1, 1, 1, 2)), "rank 7"},
		{"add i8 unquantized", bin(schema.OpAdd, write.AddOptions(none), ts{typ: schema.TensorTypeInt8, shape: []int32{3}}, i8(0.1, 0, 3), i8(0.1, 0, 3)), "no quantization"},
		{"add i8 tiny output scale", bin(schema.OpAdd, write.AddOptions(none), i8(1, 0, 3), i8(1, 0, 3), i8(1e-9, 0, 3)), "too small"},
		{"sqdiff activation", bin(schema.OpSquaredDifference, write.AddOptions(schema.ActivationRelu), f32(3), f32(3), f32(3)), "fused activation"},
		{"div i8", bin(schema.OpDiv, write.DivOptions(none), i8(0.1, 0, 3), i8(0.1, 0, 3), i8(0.1, 0, 3)), "int8 not supported"},
		{"floordiv bool", bin(schema.OpFloorDiv, nil, boolT(3), boolT(3), boolT(3)), "not supported"},
		{"compare output type", bin(schema.OpLess, nil, f32(3), f32(3), f32(3)), "want bool"},
		{"greater bool", bin(schema.OpGreater, nil, boolT(3), boolT(3), boolT(3)), "bool inputs"},
		{"compare i8 scale ≥ 1", bin(schema.OpEqual, nil, i8(2, 0, 3), i8(0.5, 0, 3), boolT(3)), "outside [0, 1)"},
		{"logical f32", bin(schema.OpLogicalAnd, nil, f32(3), boolT(3), boolT(3)), "want bool"},
		{"select cond type", opModel(schema.OpSelect, 1, nil, []ts{f32(3), f32(3), f32(3)}, f32(3)), "want bool"},
		{"select v1 shapes", opModel(schema.OpSelect, 1, nil, []ts{boolT(3), f32(3), f32(1)}, f32(3)), "same shape"},
		{"select v1 cond", opModel(schema.OpSelect, 1, nil, []ts{boolT(2), f32(3, 2), f32(3, 2)}, f32(3, 2)), "vector over their first dimension"},
		{"add_n shapes", opModel(schema.OpAddN, 1, nil, []ts{f32(3), f32(4)}, f32(3)), "shape"},
		{"sin int32", unary(schema.OpSin, i32(3), i32(3)), "float32 only"},
		{"unary elements", unary(schema.OpExp, f32(3), f32(4)), "elements"},
		{"abs int32", unary(schema.OpAbs, i32(3), i32(3)), "float32 only"},
		{"less_equal int16", bin(schema.OpLessEqual, nil, i16(0.001, 5), i16(0.001, 5), boolT(5)), "not supported"},
		{"relu i16 zero point", unary(schema.OpRelu, ts{typ: schema.TensorTypeInt16, shape: []int32{3}, q: &write.Quant{Scale: []float32{0.1}, ZeroPoint: []int64{4}}}, i16(0.1, 3)), "zero points"},
		{"leaky type mismatch", opModel(schema.OpLeakyRelu, 1, write.LeakyReluOptions{Alpha: 0.1}, []ts{f32(3)}, i32(3)), "output"},
		{"prelu bcast", bin(schema.OpPrelu, nil, f32(2, 3), f32(2), f32(2, 3)), "do not broadcast"},
		{"elu i16", unary(schema.OpElu, i16(0.1, 3), i16(0.1, 3)), "not supported"},
		{"cast string", unary(schema.OpCast, f32(3), ts{typ: schema.TensorTypeComplex64, shape: []int32{3}}), "not supported"},
		{"relu6 i8 no quant", unary(schema.OpRelu6, ts{typ: schema.TensorTypeInt8, shape: []int32{3}}, i8(0.1, 0, 3)), "no quantization"},
	})
}

// TestElementwiseDivByZero checks integer division by zero is an Invoke error, not a panic.
func TestElementwiseDivByZero(t *testing.T) {
	for _, op := range []schema.BuiltinOperator{schema.OpDiv, schema.OpFloorDiv, schema.OpFloorMod} {
		t.Run(op.String(), func(t *testing.T) {
			ip := opInterpreter(t, bin(op, nil, i32(3), i32(3), i32(3)))
			copy(ip.Input(0).Int32(), []int32{1, 2, 3})
			copy(ip.Input(1).Int32(), []int32{1, 0, 3})
			if err := ip.Invoke(); err == nil || !strings.Contains(err.Error(), "division by zero") {
				t.Errorf("Invoke = %v, want division by zero", err)
			}
		})
	}
}

// TestBroadcast checks the index walk against a direct computation for assorted shapes.
func TestBroadcast(t *testing.T) {
	tests := []struct {
		a, b, want []int
	}{
		{[]int{2, 3}, []int{3}, []int{2, 3}},
		{[]int{}, []int{4}, []int{4}},
		{[]int{2, 1, 3}, []int{4, 1}, []int{2, 4, 3}},
		{[]int{1, 2, 1, 3, 1, 2}, []int{2, 1, 3, 2, 1}, []int{1, 2, 1, 3, 2, 2}},
		{[]int{0, 3}, []int{3}, []int{0, 3}},
		{[]int{5}, []int{5}, []int{5}},
	}
	for _, tc := range tests {
		got, err := kernels.BroadcastShape(tc.a, tc.b)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Fatalf("BroadcastShape(%v, %v) = %v, %v; want %v", tc.a, tc.b, got, err, tc.want)
		}
		bc, err := kernels.NewBroadcast(got, tc.a, tc.b)
		if err != nil {
			t.Fatal(err)
		}
		var seen int
		bc.Each2(func(o, i0, i1 int) {
			// Recompute the input indices from the output index.
			idx := unravel(o, got)
			if w := ravel(idx, tc.a); w != i0 {
				t.Fatalf("%v+%v: output %d input0 index %d, want %d", tc.a, tc.b, o, i0, w)
			}
			if w := ravel(idx, tc.b); w != i1 {
				t.Fatalf("%v+%v: output %d input1 index %d, want %d", tc.a, tc.b, o, i1, w)
			}
			seen++
		})
		if seen != bc.N {
			t.Errorf("%v+%v: walked %d of %d", tc.a, tc.b, seen, bc.N)
		}
	}
	if _, err := kernels.BroadcastShape([]int{2, 3}, []int{2}); err == nil {
		t.Error("BroadcastShape([2 3], [2]) accepted")
	}
}

func unravel(o int, shape []int) []int {
	idx := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = o % shape[d]
		o /= shape[d]
	}
	return idx
}

// ravel maps an output index to the flat index of a (right-aligned, broadcast) input shape.
func ravel(idx, shape []int) int {
	off := len(idx) - len(shape)
	flat := 0
	for d, n := range shape {
		i := idx[off+d]
		if n == 1 {
			i = 0
		}
		flat = flat*n + i
	}
	return flat
}
