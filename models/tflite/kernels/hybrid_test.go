package kernels_test

import (
	"math"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Single-op oracle cases for dynamic-range ("hybrid") quantization, float32 activations with
// int8 weights, and float16 weights through DEQUANTIZE. TFLite Micro does not run these; the
// judge is the full runtime, within the float tolerance of docs/tflite.md (its hybrid kernels
// are not delegated to XNNPACK in the oracle's TFLite).

const hybridDir = "testdata/ops/hybrid"

func hybridModel(op schema.BuiltinOperator, version int32, opts write.Options, ins []ts, outs ...ts) func() ([]byte, error) {
	return oneOpModel("outpost hybrid op test: ", op, version, opts, named("in", ins, func(t ts) bool { return t.shape == nil }), named("out", outs, nil))
}

// w8 is constant symmetric int8 weights with one scale, or one per index of dimension dim.
func w8(rng *xorshift, dim int32, scales []float32, shape ...int32) ts {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return ts{typ: schema.TensorTypeInt8, shape: shape, q: &write.Quant{Scale: scales, ZeroPoint: make([]int64, len(scales)), Dim: dim}, data: rng.i8s(n)}
}

// noBias is an omitted optional input (the only description without a shape).
var noBias = ts{}

// halves is n random float16 values (finite, normal and subnormal) as raw bytes.
func (r *xorshift) halves(n int) []byte {
	b := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		h := uint16(r.next() >> 16)
		if h&0x7c00 == 0x7c00 { // Inf/NaN exponent: fold into the finite range
			h &^= 0x4000
		}
		b[2*i], b[2*i+1] = byte(h), byte(h>>8)
	}
	return b
}

func hybridCases() []oracletest.OpCase {
	r := kernels.Builtins()
	rng := xorshift(0x9E3779B9)
	fc := func(a schema.Activation, asym bool) write.FullyConnectedOptions {
		return write.FullyConnectedOptions{Activation: a, AsymmetricQuantizeInputs: asym}
	}
	conv := func(p schema.Padding, s, dil int32, a schema.Activation) write.Conv2DOptions {
		return write.Conv2DOptions{Padding: p, StrideW: s, StrideH: s, Activation: a, DilationW: dil, DilationH: dil}
	}
	dw := func(p schema.Padding, s, m int32, a schema.Activation) write.DepthwiseConv2DOptions {
		return write.DepthwiseConv2DOptions{Padding: p, StrideW: s, StrideH: s, DepthMultiplier: m, Activation: a}
	}
	cases := []oracletest.OpCase{
		{Name: "fc_hybrid_sym_relu", Build: hybridModel(schema.OpFullyConnected, 3, fc(schema.ActivationRelu, false),
			[]ts{f32(2, 16), w8(&rng, 0, []float32{0.02}, 6, 16), f32(6).konst(rng.f32s(6, 0.5))}, f32(2, 6))},
		{Name: "fc_hybrid_asym", Build: hybridModel(schema.OpFullyConnected, 9, fc(schema.ActivationNone, true),
			[]ts{f32(3, 12), w8(&rng, 0, []float32{0.015}, 5, 12), f32(5).konst(rng.f32s(5, 0.5))}, f32(3, 5))},
		{Name: "fc_hybrid_nobias", Build: hybridModel(schema.OpFullyConnected, 3, fc(schema.ActivationNone, false),
			[]ts{f32(1, 20), w8(&rng, 0, []float32{0.01}, 3, 20), noBias}, f32(1, 3))},
		{Name: "conv_hybrid_pertensor_same_relu", Build: hybridModel(schema.OpConv2D, 2, conv(schema.PaddingSame, 1, 1, schema.ActivationRelu),
			[]ts{f32(1, 5, 5, 3), w8(&rng, 0, []float32{0.03}, 4, 3, 3, 3), f32(4).konst(rng.f32s(4, 0.5))}, f32(1, 5, 5, 4))},
		{Name: "conv_hybrid_pertensor_valid_stride2_batch2", Build: hybridModel(schema.OpConv2D, 2, conv(schema.PaddingValid, 2, 1, schema.ActivationNone),
			[]ts{f32(2, 7, 6, 2), w8(&rng, 0, []float32{0.04}, 3, 3, 2, 2), f32(3).konst(rng.f32s(3, 0.5))}, f32(2, 3, 3, 3))},
		{Name: "conv_hybrid_perchannel_same", Build: hybridModel(schema.OpConv2D, 5, conv(schema.PaddingSame, 1, 1, schema.ActivationNone),
			[]ts{f32(1, 4, 5, 3), w8(&rng, 0, scales(5, 0.03), 5, 3, 3, 3), f32(5).konst(rng.f32s(5, 0.5))}, f32(1, 4, 5, 5))},
		{Name: "conv_hybrid_perchannel_stride2_dilation2_batch2", Build: hybridModel(schema.OpConv2D, 5, conv(schema.PaddingSame, 2, 2, schema.ActivationRelu6),
			[]ts{f32(2, 6, 6, 2), w8(&rng, 0, scales(3, 0.05), 3, 3, 3, 2), f32(3).konst(rng.f32s(3, 1))}, f32(2, 3, 3, 3))},
		{Name: "dw_hybrid_perchannel_same_mult2", Build: hybridModel(schema.OpDepthwiseConv2D, 4, dw(schema.PaddingSame, 1, 2, schema.ActivationNone),
			[]ts{f32(1, 5, 5, 2), w8(&rng, 3, scales(4, 0.03), 1, 3, 3, 4), f32(4).konst(rng.f32s(4, 0.5))}, f32(1, 5, 5, 4))},
		{Name: "dw_hybrid_perchannel_valid_stride2_batch2_relu", Build: hybridModel(schema.OpDepthwiseConv2D, 4, dw(schema.PaddingValid, 2, 1, schema.ActivationRelu),
			[]ts{f32(2, 7, 7, 3), w8(&rng, 3, scales(3, 0.04), 1, 3, 3, 3), f32(3).konst(rng.f32s(3, 0.5))}, f32(2, 3, 3, 3))},
		{Name: "embedding_hybrid_pertensor", Build: hybridModel(schema.OpEmbeddingLookup, 3, nil,
			[]ts{constI32([]int32{2, 0, 3, 2}), w8(&rng, 0, []float32{0.07}, 4, 3, 2)}, f32(4, 3, 2))},
		// float16 weights as the converter writes them: DEQUANTIZE of a constant feeding the op.
		{Name: "dequantize_f16_fc", Build: f16FCModel(rng.halves(32), rng.f32s(4, 0.5))},
	}
	cases = append(cases,
		svdfHybridCase("svdf_hybrid_sym_relu", 2, 6, 4, 3, 1, schema.ActivationRelu, false, true),
		svdfHybridCase("svdf_hybrid_asym_rank2_nobias", 1, 8, 6, 4, 2, schema.ActivationNone, true, false),
		bmmHybridCase("bmm_hybrid_sym", false, false, false, []int32{3, 8}, []int32{8, 5}, []int32{3, 5}),
		bmmHybridCase("bmm_hybrid_asym_batch2", false, false, true, []int32{2, 3, 6}, []int32{6, 4}, []int32{2, 3, 4}),
		bmmHybridCase("bmm_hybrid_adjx_adjy_batch_weights", true, true, false, []int32{2, 7, 3}, []int32{2, 4, 7}, []int32{2, 3, 4}),
		bmmHybridCase("bmm_hybrid_asym_adjy_broadcast_lhs", false, true, true, []int32{4, 5}, []int32{3, 6, 5}, []int32{3, 4, 6}),
		lstmHybridCase("lstm_hybrid_sym", false, 2, 3, 4, 5, 0, false),
		lstmHybridCase("lstm_hybrid_asym_time_major_clip", true, 3, 2, 3, 4, 0.5, true),
		lstmHybridCase("lstm_hybrid_asym_one_step", false, 1, 1, 6, 3, 0, true),
	)
	for i := range cases {
		cases[i].Resolver = r
		// Hybrid models follow the full runtime's reference arithmetic (issue 14): TFLite
		// Micro has no hybrid kernels; for LSTM it runs and prints NaN.
		cases[i].NotMicro = "TFLite Micro has no hybrid (float activations, int8 weights) kernels"
	}
	return cases
}

// bmmHybridCase is BATCH_MATMUL of a float32 lhs and constant int8 rhs (one scale).
func bmmHybridCase(name string, adjX, adjY, asym bool, lhs, rhs, out []int32) oracletest.OpCase {
	rng := xorshift(uint32(53 + len(name)))
	return oracletest.OpCase{Name: name, Build: hybridModel(schema.OpBatchMatmul, 4, write.BatchMatMulOptions{AdjX: adjX, AdjY: adjY, AsymmetricQuantizeInputs: asym},
		[]ts{f32(lhs...), w8(&rng, 0, []float32{0.03}, rhs...)}, f32(out...))}
}

// lstmHybridCase is UNIDIRECTIONAL_SEQUENCE_LSTM with float32 input, states and biases and
// int8 weights (one scale per matrix), the unused peephole, projection and layer-norm slots
// omitted.
func lstmHybridCase(name string, timeMajor bool, d0, d1, nIn, nState int32, clip float32, asym bool) oracletest.OpCase {
	rng := xorshift(uint32(17 + nIn*nState + d0))
	batch := d0
	if timeMajor {
		batch = d1
	}
	return oracletest.OpCase{Name: name, Build: func() ([]byte, error) {
		ins := make([]write.Tensor, 24)
		for i := range ins {
			ins[i] = omitted
		}
		ins[0] = f32(d0, d1, nIn).tensor("input")
		for i := 1; i <= 4; i++ {
			ins[i] = w8(&rng, 0, []float32{0.01 * float32(i)}, nState, nIn).tensor("w_in" + string(rune('0'+i)))
			ins[i+4] = w8(&rng, 0, []float32{0.008 * float32(i)}, nState, nState).tensor("w_rec" + string(rune('0'+i)))
			ins[i+11] = f32(nState).konst(rng.f32s(int(nState), 0.3)).tensor("bias" + string(rune('0'+i)))
		}
		for i, name := range map[int]string{18: "output_state", 19: "cell_state"} {
			ins[i] = f32(batch, nState).tensor(name)
			ins[i].Variable = true
		}
		opts := write.UnidirectionalSequenceLSTMOptions{Activation: schema.ActivationTanh, CellClip: clip, TimeMajor: timeMajor, AsymmetricQuantizeInputs: asym}
		return oneOpModel("outpost hybrid op test: ", schema.OpUnidirectionalSequenceLstm, 2, opts, ins, []write.Tensor{f32(d0, d1, nState).tensor("output")})()
	}}
}

// svdfHybridCase is SVDF with a float32 input and state, int8 feature and time weights.
func svdfHybridCase(name string, batch, nIn, filters, memory, rank int32, act schema.Activation, asym, bias bool) oracletest.OpCase {
	rng := xorshift(uint32(31 + filters*nIn))
	units := filters / rank
	b := noBias
	if bias {
		b = f32(units).konst(rng.f32s(int(units), 0.5))
	}
	state := f32(batch, memory*filters)
	return oracletest.OpCase{Name: name, Build: func() ([]byte, error) {
		ins := named("in", []ts{f32(batch, nIn), w8(&rng, 0, []float32{0.02}, filters, nIn), w8(&rng, 0, []float32{0.01}, filters, memory), b}, func(t ts) bool { return t.shape == nil })
		st := state.tensor("state")
		st.Variable = true
		return oneOpModel("outpost hybrid op test: ", schema.OpSvdf, 3, write.SVDFOptions{Rank: rank, Activation: act, AsymmetricQuantizeInputs: asym},
			append(ins, st), []write.Tensor{f32(batch, units).tensor("out0")})()
	}}
}

// f16FCModel is DEQUANTIZE (float16 weights [4,8] → float32) then FULLY_CONNECTED of a float32
// input [2,8]. (The dequantized weights cannot be an output: XNNPACK folds them into its
// static weights, and the oracle then reads zeros there.)
func f16FCModel(weights, bias []byte) func() ([]byte, error) {
	return func() ([]byte, error) {
		m := write.NewModel("outpost hybrid op test: DEQUANTIZE float16 + FULLY_CONNECTED")
		sg := m.Subgraph()
		in := sg.AddTensor(f32(2, 8).tensor("in"))
		w16 := sg.AddTensor(write.Tensor{Name: "w16", Type: schema.TensorTypeFloat16, Shape: []int32{4, 8}, Data: weights})
		w := sg.AddTensor(f32(4, 8).tensor("w"))
		b := sg.AddTensor(f32(4).konst(bias).tensor("b"))
		out := sg.AddTensor(f32(2, 4).tensor("out"))
		sg.AddOp(schema.OpDequantize, 3, []int32{w16}, []int32{w}, nil)
		sg.AddOp(schema.OpFullyConnected, 1, []int32{in, w, b}, []int32{out}, write.FullyConnectedOptions{})
		sg.SetInputs(in)
		sg.SetOutputs(out)
		return m.Bytes()
	}
}

func TestHybridOracle(t *testing.T) { oracletest.RunOpCases(t, hybridDir, hybridCases()) }

// TestHybridPerChannelUnits: TFLite 2.12 (the oracle) has no per-channel hybrid
// FULLY_CONNECTED (it scales by the legacy per-tensor scale, 0 for per-channel weights, and
// prints the bias) and no per-row hybrid EMBEDDING_LOOKUP (zeros); later TFLite versions apply
// each unit's (row's) scale, and so does this interpreter. Checked here against the same
// weights with one scale: unit o of the per-channel model is unit o of the per-tensor one
// times its scale ratio.
func TestHybridPerChannelUnits(t *testing.T) {
	const units, depth = 5, 12
	for _, asym := range []bool{false, true} {
		rng := xorshift(77)
		w := rng.i8s(units * depth)
		x := []float32{0.3, -0.9, 0.1, 0.7, -0.2, 0.55, -0.61, 0.05, 0.99, -0.4, 0.2, 0.0}
		run := func(sc []float32) []float32 {
			wt := ts{typ: schema.TensorTypeInt8, shape: []int32{units, depth}, q: &write.Quant{Scale: sc, ZeroPoint: make([]int64, len(sc))}, data: w}
			ip := opInterpreter(t, hybridModel(schema.OpFullyConnected, 9, write.FullyConnectedOptions{AsymmetricQuantizeInputs: asym},
				[]ts{f32(1, depth), wt, noBias}, f32(1, units)))
			copy(ip.Input(0).Float32(), x)
			if err := ip.Invoke(); err != nil {
				t.Fatal(err)
			}
			return append([]float32(nil), ip.Output(0).Float32()...)
		}
		per := []float32{0.01, 0.02, 0.03, 0.04, 0.05}
		one, pc := run([]float32{0.01}), run(per)
		for o := range pc {
			want := float64(one[o]) * float64(per[o]/0.01)
			if math.Abs(float64(pc[o])-want) > 1e-5*math.Abs(want)+1e-6 {
				t.Errorf("asymmetric %v: unit %d = %v, want %v", asym, o, pc[o], want)
			}
		}
	}
	rng := xorshift(78)
	vals := rng.i8s(5 * 6)
	sc := scales(5, 0.01)
	ip := opInterpreter(t, hybridModel(schema.OpEmbeddingLookup, 3, nil,
		[]ts{constI32([]int32{1, 4, 0}), {typ: schema.TensorTypeInt8, shape: []int32{5, 6}, q: &write.Quant{Scale: sc, ZeroPoint: make([]int64, 5)}, data: vals}}, f32(3, 6)))
	if err := ip.Invoke(); err != nil {
		t.Fatal(err)
	}
	for i, id := range []int{1, 4, 0} {
		for j := 0; j < 6; j++ {
			want := float32(float64(int8(vals[id*6+j])) * float64(sc[id]))
			if got := ip.Output(0).Float32()[i*6+j]; got != want {
				t.Errorf("embedding row %d element %d = %v, want %v", id, j, got, want)
			}
		}
	}
}

func TestHybridZeroAllocs(t *testing.T) { oracletest.RunAllocCases(t, hybridCases(), nil) }

// TestHalfToFloat32 checks the float16 conversion at its edges against known values.
func TestHalfToFloat32(t *testing.T) {
	tests := []struct {
		bits uint16
		want float32
	}{
		{0x0000, 0}, {0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0400, float32(math.Ldexp(1, -14))},
		{0x0001, float32(math.Ldexp(1, -24))}, {0x03ff, float32(math.Ldexp(1023, -24))},
		{0x7c00, float32(math.Inf(1))}, {0xfc00, float32(math.Inf(-1))}, {0x3555, 0.333251953125},
	}
	for _, tc := range tests {
		if got := kernels.HalfToFloat32(tc.bits); got != tc.want {
			t.Errorf("HalfToFloat32(%#04x) = %v, want %v", tc.bits, got, tc.want)
		}
	}
	if got := kernels.HalfToFloat32(0x7e00); !math.IsNaN(float64(got)) {
		t.Errorf("HalfToFloat32(0x7e00) = %v, want NaN", got)
	}
}

func TestHybridRejects(t *testing.T) {
	rng := xorshift(5)
	asymW := w8(&rng, 0, []float32{0.02}, 3, 4)
	asymW.q.ZeroPoint = []int64{5}
	runRejects(t, []rejectCase{
		{"fc asymmetric weights", hybridModel(schema.OpFullyConnected, 3, write.FullyConnectedOptions{},
			[]ts{f32(1, 4), asymW, f32(3).konst(rng.f32s(3, 1))}, f32(1, 3)), "hybrid ops need symmetric weights"},
		{"fc int32 bias", hybridModel(schema.OpFullyConnected, 3, write.FullyConnectedOptions{},
			[]ts{f32(1, 4), w8(&rng, 0, []float32{0.02}, 3, 4), constI32([]int32{1, 2, 3})}, f32(1, 3)), "want float32 with 3 elements"},
		{"fc weights not constant", hybridModel(schema.OpFullyConnected, 3, write.FullyConnectedOptions{},
			[]ts{f32(1, 4), i8(0.02, 0, 3, 4), f32(3).konst(rng.f32s(3, 1))}, f32(1, 3)), "must be a constant matrix"},
		{"dw per-tensor weights", hybridModel(schema.OpDepthwiseConv2D, 4, write.DepthwiseConv2DOptions{Padding: schema.PaddingValid, StrideW: 1, StrideH: 1, DepthMultiplier: 1},
			[]ts{f32(1, 3, 3, 2), w8(&rng, 3, []float32{0.02}, 1, 3, 3, 2), f32(2).konst(rng.f32s(2, 1))}, f32(1, 1, 1, 2)), "one per output channel"},
		{"conv per-tensor dilation", hybridModel(schema.OpConv2D, 2, write.Conv2DOptions{Padding: schema.PaddingSame, StrideW: 1, StrideH: 1, DilationW: 2, DilationH: 2},
			[]ts{f32(1, 5, 5, 1), w8(&rng, 0, []float32{0.02}, 1, 3, 3, 1), f32(1).konst(rng.f32s(1, 1))}, f32(1, 5, 5, 1)), "no dilation"},
		{"bmm rank 4", hybridModel(schema.OpBatchMatmul, 4, write.BatchMatMulOptions{},
			[]ts{f32(2, 2, 3, 4), w8(&rng, 0, []float32{0.02}, 4, 5)}, f32(2, 2, 3, 5)), "want 2 or 3"},
		{"bmm per-channel", hybridModel(schema.OpBatchMatmul, 4, write.BatchMatMulOptions{},
			[]ts{f32(3, 4), w8(&rng, 0, scales(4, 0.02), 4, 5)}, f32(3, 5)), "takes one per tensor"},
		{"bmm lhs and weights batches", hybridModel(schema.OpBatchMatmul, 4, write.BatchMatMulOptions{},
			[]ts{f32(2, 3, 4), w8(&rng, 0, []float32{0.02}, 3, 4, 5)}, f32(3, 3, 5)), "do not broadcast"},
		{"embedding per-column scales", hybridModel(schema.OpEmbeddingLookup, 3, nil,
			[]ts{constI32([]int32{0}), w8(&rng, 1, scales(4, 0.1), 3, 4)}, f32(1, 4)), "one scale or one per row"},
	})
}
