package kernels_test

import (
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Single-op oracle cases for the ops no family file covers on its own: FULLY_CONNECTED and
// RESHAPE (the first-cut ops, otherwise proven through the sample models and the corpus),
// LESS_EQUAL and BROADCAST_ARGS.

const basicDir = "testdata/ops/basic"

func basicModel(op schema.BuiltinOperator, version int32, opts write.Options, ins []ts, outs ...ts) func() ([]byte, error) {
	return oneOpModel("outpost basic op test: ", op, version, opts, named("in", ins, nil), named("out", outs, nil))
}

func basicCases() []oracletest.OpCase {
	r := kernels.Builtins()
	rng := xorshift(0x2545F491)
	fc := func(a schema.Activation, keep bool) write.FullyConnectedOptions {
		return write.FullyConnectedOptions{Activation: a, KeepNumDims: keep}
	}
	// int8 FULLY_CONNECTED: per-tensor weights, int32 bias at scale in×w, as the converter writes.
	// XNNPACK takes these nodes inside the oracle (--profile), yet its outputs equal the
	// reference arithmetic on this data, so the cases stay exact.
	const inS, wS, outS = 0.05, 0.02, 0.1
	i8fc := []ts{
		i8(inS, -3, 2, 8),
		i8(wS, 0, 4, 8).konst(rng.i8s(32)),
		{typ: schema.TensorTypeInt32, shape: []int32{4}, q: &write.Quant{Scale: []float32{inS * wS}, ZeroPoint: []int64{0}}, data: rng.i32s(4, 2000)},
	}
	cases := []oracletest.OpCase{
		{Name: "fc_f32_relu", Build: basicModel(schema.OpFullyConnected, 1, fc(schema.ActivationRelu, false),
			[]ts{f32(2, 8), f32(4, 8).konst(rng.f32s(32, 1)), f32(4).konst(rng.f32s(4, 0.5))}, f32(2, 4))},
		{Name: "fc_f32_nobias_keepdims", Build: oneOpModel("outpost basic op test: ", schema.OpFullyConnected, 5, fc(schema.ActivationNone, true),
			[]write.Tensor{f32(1, 3, 8).tensor("in0"), f32(5, 8).konst(rng.f32s(40, 1)).tensor("in1"), omitted},
			[]write.Tensor{f32(1, 3, 5).tensor("out0")})},
		{Name: "fc_f32_relu6_batch", Build: basicModel(schema.OpFullyConnected, 1, fc(schema.ActivationRelu6, false),
			[]ts{f32(4, 6), f32(3, 6).konst(rng.f32s(18, 2)), f32(3).konst(rng.f32s(3, 1))}, f32(4, 3))},
		{Name: "fc_i8", Build: basicModel(schema.OpFullyConnected, 4, fc(schema.ActivationNone, false), i8fc, i8(outS, 5, 2, 4))},
		{Name: "fc_i8_relu", Build: basicModel(schema.OpFullyConnected, 4, fc(schema.ActivationRelu, false), i8fc, i8(outS, -128, 2, 4))},
		{Name: "reshape_f32_option", Build: basicModel(schema.OpReshape, 1, write.ReshapeOptions{NewShape: []int32{4, 6}},
			[]ts{f32(2, 3, 4)}, f32(4, 6))},
		{Name: "reshape_f32_shape_tensor", Build: basicModel(schema.OpReshape, 1, nil,
			[]ts{f32(2, 3, 4), constI32([]int32{3, -1})}, f32(3, 8))},
		{Name: "reshape_i8", Build: basicModel(schema.OpReshape, 1, nil,
			[]ts{i8(0.5, 1, 1, 12), constI32([]int32{2, 2, 3})}, i8(0.5, 1, 2, 2, 3))},
		{Name: "less_equal_f32_broadcast", Build: basicModel(schema.OpLessEqual, 1, nil,
			[]ts{f32(2, 3), f32(3)}, boolT(2, 3))},
		{Name: "less_equal_i32", Build: basicModel(schema.OpLessEqual, 1, nil,
			[]ts{i32(6), i32(6)}, boolT(6))},
		{Name: "broadcast_args_i32", Build: basicModel(schema.OpBroadcastArgs, 1, nil,
			[]ts{i32(3), constI32([]int32{3, 1})}, i32(3))},
	}
	for i := range cases {
		cases[i].Resolver = r
	}
	return cases
}

func TestBasicOpsOracle(t *testing.T) { oracletest.RunOpCases(t, basicDir, basicCases()) }

func TestBasicOpsAllocs(t *testing.T) {
	oracletest.RunAllocCases(t, basicCases(), func(ip *tflite.Interpreter) {
		// BROADCAST_ARGS reads its shape input: make it a valid shape.
		for i := 0; i < ip.NumInputs(); i++ {
			for j := range ip.Input(i).Int32() {
				ip.Input(i).Int32()[j] = 1
			}
		}
	})
}
