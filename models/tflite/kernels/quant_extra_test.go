package kernels_test

import (
	"testing"

	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Single-op models of the quantized kernels added in round 2 (int8 RSQRT, int8 CUMSUM), in
// testdata/ops/quant2. RSQRT is judged by both runtimes; int8 CUMSUM exists only in TFLite
// Micro, which judges it alone.

const quant2Dir = "testdata/ops/quant2"

func quant2Cases() []oracletest.OpCase {
	r := kernels.Builtins()
	cumsum := func(excl, rev bool) write.Options {
		return write.Table{Type: schema.BuiltinOptionsCumsum, Fields: []write.Field{write.BoolField(0, excl), write.BoolField(1, rev)}}
	}
	m := func(op schema.BuiltinOperator, opts write.Options, ins []ts, out ts) func() ([]byte, error) {
		return oneOpModel("outpost quant2 test: ", op, 1, opts, named("in", ins, nil), named("out", []ts{out}, nil))
	}
	return []oracletest.OpCase{
		// Zero point -128: every int8 value is at or above it (RSQRT refuses negative reals).
		{Name: "rsqrt_i8", Build: m(schema.OpRsqrt, nil, []ts{i8(0.05, -128, 4, 64)}, i8(0.02, -100, 4, 64)), Resolver: r},
		{Name: "rsqrt_i8_fine", Build: m(schema.OpRsqrt, nil, []ts{i8(0.002, -128, 256)}, i8(0.2, -128, 256)), Resolver: r},
		{Name: "reduce_prod_i8", Build: m(schema.OpReduceProd, write.ReducerOptions{}, []ts{i8(0.02, 3, 3, 4), constI32([]int32{1})}, i8(0.1, -2, 3)), Resolver: r},
		{Name: "reduce_prod_i8_keep", Build: m(schema.OpReduceProd, write.ReducerOptions{KeepDims: true}, []ts{i8(0.03, -5, 2, 3, 2), constI32([]int32{0, 2})}, i8(0.01, 0, 1, 3, 1)), Resolver: r},
		{Name: "quantize_f32_i8_per_channel", Build: m(schema.OpQuantize, nil, []ts{f32(3, 4)}, ts{typ: schema.TensorTypeInt8, shape: []int32{3, 4},
			q: &write.Quant{Scale: []float32{0.01, 0.02, 0.005}, ZeroPoint: []int64{0, 3, -4}, Dim: 0}}), Resolver: r},
		{Name: "cumsum_i8", Build: m(schema.OpCumsum, cumsum(false, false), []ts{i8(0.05, -3, 3, 8), constI32([]int32{1}, 1)}, i8(0.2, 5, 3, 8)), Resolver: r, MicroOnly: true},
		{Name: "cumsum_i8_excl_rev", Build: m(schema.OpCumsum, cumsum(true, true), []ts{i8(0.03, 10, 4, 5, 2), constI32([]int32{1}, 1)}, i8(0.1, -20, 4, 5, 2)), Resolver: r, MicroOnly: true},
	}
}

func TestQuant2Oracle(t *testing.T) {
	oracletest.RunOpCases(t, quant2Dir, quant2Cases())
}

func TestQuant2Allocs(t *testing.T) {
	oracletest.RunAllocCases(t, quant2Cases(), nil)
}
