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

// Single-op and multi-subgraph models of the sequence, matrix, control-flow and resource family
// (LSTM, SVDF, BATCH_MATMUL, IF, WHILE, CALL_ONCE, VAR_HANDLE, ASSIGN_VARIABLE, READ_VARIABLE),
// checked against the official runtime's output committed in testdata/ops/sequence (see
// oracletest.OpCase for the workflow). The integer LSTM is covered by the corpus model
// mnist_lstm_int8 instead: the official runtime only runs int8 LSTMs carrying the five
// intermediate tensors of full TFLite's 8x8_16 kernel, which the writer does not emit.

const sequenceDir = "testdata/ops/sequence"

// sqT is a tensor of a test model: a graph input when Data is nil (and it is not Variable),
// else a constant.
type sqT = write.Tensor

func sqQ(scale float32, zp int64) *write.Quant {
	return &write.Quant{Scale: []float32{scale}, ZeroPoint: []int64{zp}}
}

func sqF32(name string, shape ...int32) sqT {
	return sqT{Name: name, Type: schema.TensorTypeFloat32, Shape: shape}
}

// sqOpModel builds a one-op model: ins feed the op (omitted inputs given as the Tensor
// omitted), outs are its outputs and the model's outputs.
func sqOpModel(op schema.BuiltinOperator, version int32, opts write.Options, ins []sqT, outs ...sqT) func() ([]byte, error) {
	return oneOpModel("outpost sequence test: ", op, version, opts, ins, outs)
}

func bmmCase(name string, adjX, adjY bool, lhs, rhs, out sqT) oracletest.OpCase {
	return oracletest.OpCase{Name: name, Resolver: kernels.Builtins(),
		Build: sqOpModel(schema.OpBatchMatmul, 1, write.BatchMatMulOptions{AdjX: adjX, AdjY: adjY}, []sqT{lhs, rhs}, out)}
}

func svdfFloatCase(name string, batch, nIn, filters, memory, rank int32, act schema.Activation, bias bool) oracletest.OpCase {
	r := xorshift(uint32(7 + filters*memory))
	units := filters / rank
	b := omitted
	if bias {
		b = sqT{Name: "bias", Type: schema.TensorTypeFloat32, Shape: []int32{units}, Data: r.f32s(int(units), 0.5)}
	}
	return oracletest.OpCase{Name: name, Resolver: kernels.Builtins(),
		Build: sqOpModel(schema.OpSvdf, 1, write.SVDFOptions{Rank: rank, Activation: act}, []sqT{
			sqF32("input", batch, nIn),
			{Name: "weights_feature", Type: schema.TensorTypeFloat32, Shape: []int32{filters, nIn}, Data: r.f32s(int(filters*nIn), 0.7)},
			{Name: "weights_time", Type: schema.TensorTypeFloat32, Shape: []int32{filters, memory}, Data: r.f32s(int(filters*memory), 0.7)},
			b,
			{Name: "state", Type: schema.TensorTypeFloat32, Shape: []int32{batch, memory * filters}, Variable: true},
		}, sqF32("output", batch, units))}
}

// svdfInt8Case is the int8 x int16-state SVDF of keyword-spotting models; the bias scale is
// state scale x time-weights scale, as TFLM requires.
func svdfInt8Case(name string, batch, nIn, filters, memory, rank int32, inZP, outZP int64) oracletest.OpCase {
	r := xorshift(uint32(11 + filters*nIn))
	units := filters / rank
	const inS, wfS, stS, wtS, outS = 0.02, 0.01, 0.004, 0.0002, 0.003
	return oracletest.OpCase{Name: name, Resolver: kernels.Builtins(),
		Build: sqOpModel(schema.OpSvdf, 1, write.SVDFOptions{Rank: rank, Activation: schema.ActivationRelu}, []sqT{
			{Name: "input", Type: schema.TensorTypeInt8, Shape: []int32{batch, nIn}, Quant: sqQ(inS, inZP)},
			{Name: "weights_feature", Type: schema.TensorTypeInt8, Shape: []int32{filters, nIn}, Quant: sqQ(wfS, 0), Data: r.i8s(int(filters * nIn))},
			{Name: "weights_time", Type: schema.TensorTypeInt16, Shape: []int32{filters, memory}, Quant: sqQ(wtS, 0), Data: r.i16s(int(filters*memory), 20000)},
			{Name: "bias", Type: schema.TensorTypeInt32, Shape: []int32{units}, Quant: sqQ(stS*wtS, 0), Data: r.i32s(int(units), 5000)},
			{Name: "state", Type: schema.TensorTypeInt16, Shape: []int32{batch, memory * filters}, Quant: sqQ(stS, 0), Variable: true},
		}, sqT{Name: "output", Type: schema.TensorTypeInt8, Shape: []int32{batch, units}, Quant: sqQ(outS, outZP)})}
}

// lstmFloatCase is a float32 UNIDIRECTIONAL_SEQUENCE_LSTM with all 24 inputs, the unused
// peephole, projection and layer-norm slots omitted.
func lstmFloatCase(name string, timeMajor bool, d0, d1, nIn, nState int32, clip float32) oracletest.OpCase {
	r := xorshift(uint32(3 + nIn*nState + d0))
	batch := d0
	if timeMajor {
		batch = d1
	}
	ins := make([]sqT, 24)
	for i := range ins {
		ins[i] = omitted
	}
	ins[0] = sqF32("input", d0, d1, nIn)
	for i := 1; i <= 4; i++ {
		ins[i] = sqT{Name: "w_in" + string(rune('0'+i)), Type: schema.TensorTypeFloat32, Shape: []int32{nState, nIn}, Data: r.f32s(int(nState*nIn), 0.8)}
		ins[i+4] = sqT{Name: "w_rec" + string(rune('0'+i)), Type: schema.TensorTypeFloat32, Shape: []int32{nState, nState}, Data: r.f32s(int(nState*nState), 0.8)}
		ins[i+11] = sqT{Name: "bias" + string(rune('0'+i)), Type: schema.TensorTypeFloat32, Shape: []int32{nState}, Data: r.f32s(int(nState), 0.3)}
	}
	ins[18] = sqT{Name: "output_state", Type: schema.TensorTypeFloat32, Shape: []int32{batch, nState}, Variable: true}
	ins[19] = sqT{Name: "cell_state", Type: schema.TensorTypeFloat32, Shape: []int32{batch, nState}, Variable: true}
	opts := write.UnidirectionalSequenceLSTMOptions{Activation: schema.ActivationTanh, CellClip: clip, TimeMajor: timeMajor}
	return oracletest.OpCase{Name: name, Resolver: kernels.Builtins(),
		Build: sqOpModel(schema.OpUnidirectionalSequenceLstm, 1, opts, ins, sqF32("output", d0, d1, nState))}
}

// lstmInt16Case is the 16x8 integer UNIDIRECTIONAL_SEQUENCE_LSTM (int16 activations and
// state, int8 weights, int64 biases, a power-of-two int16 cell state) that TFLite Micro runs;
// the official runtime refuses it (its integer LSTM wants the converter's intermediate
// tensors), so TFLite Micro is the judge.
func lstmInt16Case(name string, timeMajor bool, d0, d1, nIn, nState int32, clip float32, inZP int64) oracletest.OpCase {
	r := xorshift(uint32(5 + nIn*nState + d0))
	batch := d0
	if timeMajor {
		batch = d1
	}
	const inS, wS, hS, rS, cS = 1.0 / 16384, 0.01, 1.0 / 32768, 0.006, 1.0 / 2048
	i64s := func(n int, lim int64) []byte {
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(r.next()%uint32(2*lim+1)) - lim
		}
		return write.Int64s(v)
	}
	ins := make([]sqT, 24)
	for i := range ins {
		ins[i] = omitted
	}
	i16 := func(name string, s float32, zp int64, variable bool, shape ...int32) sqT {
		return sqT{Name: name, Type: schema.TensorTypeInt16, Shape: shape, Quant: sqQ(s, zp), Variable: variable}
	}
	ins[0] = i16("input", inS, inZP, false, d0, d1, nIn)
	for i := 1; i <= 4; i++ {
		ins[i] = sqT{Name: "w_in" + string(rune('0'+i)), Type: schema.TensorTypeInt8, Shape: []int32{nState, nIn}, Quant: sqQ(wS, 0), Data: r.i8s(int(nState * nIn))}
		ins[i+4] = sqT{Name: "w_rec" + string(rune('0'+i)), Type: schema.TensorTypeInt8, Shape: []int32{nState, nState}, Quant: sqQ(rS, 0), Data: r.i8s(int(nState * nState))}
		// ±0.6 in real terms: the bias scale is input scale x weight scale.
		ins[i+11] = sqT{Name: "bias" + string(rune('0'+i)), Type: schema.TensorTypeInt64, Shape: []int32{nState}, Quant: sqQ(inS*wS, 0), Data: i64s(int(nState), int64(0.6/(inS*wS)))}
	}
	ins[18] = i16("output_state", hS, 0, true, batch, nState)
	ins[19] = i16("cell_state", cS, 0, true, batch, nState)
	opts := write.UnidirectionalSequenceLSTMOptions{Activation: schema.ActivationTanh, CellClip: clip, TimeMajor: timeMajor}
	return oracletest.OpCase{Name: name, Resolver: kernels.Builtins(), MicroOnly: true,
		Build: sqOpModel(schema.OpUnidirectionalSequenceLstm, 1, opts, ins, i16("output", hS, 0, false, d0, d1, nState))}
}

func TestSequenceOps(t *testing.T) {
	r := xorshift(99)
	i8t := func(name string, s float32, zp int64, shape ...int32) sqT {
		return sqT{Name: name, Type: schema.TensorTypeInt8, Shape: shape, Quant: sqQ(s, zp)}
	}
	i16t := func(name string, s float32, shape ...int32) sqT {
		return sqT{Name: name, Type: schema.TensorTypeInt16, Shape: shape, Quant: sqQ(s, 0)}
	}
	constRHS := sqF32("rhs", 4, 5)
	constRHS.Data = r.f32s(20, 1)
	constI8 := i8t("rhs", 0.02, 3, 2, 4, 3)
	constI8.Data = r.i8s(24)
	cases := []oracletest.OpCase{
		bmmCase("batch_matmul_f32", false, false, sqF32("lhs", 2, 3, 4), sqF32("rhs", 2, 4, 5), sqF32("out", 2, 3, 5)),
		bmmCase("batch_matmul_f32_rank2", false, false, sqF32("lhs", 3, 4), sqF32("rhs", 4, 2), sqF32("out", 3, 2)),
		bmmCase("batch_matmul_f32_broadcast_const", false, false, sqF32("lhs", 2, 1, 3, 4), constRHS, sqF32("out", 2, 1, 3, 5)),
		bmmCase("batch_matmul_f32_adj", true, true, sqF32("lhs", 2, 4, 3), sqF32("rhs", 1, 5, 4), sqF32("out", 2, 3, 5)),
		bmmCase("batch_matmul_f32_rank5", false, true, sqF32("lhs", 2, 1, 2, 2, 3), sqF32("rhs", 1, 3, 1, 4, 3), sqF32("out", 2, 3, 2, 2, 4)),
		bmmCase("batch_matmul_i8", false, false, i8t("lhs", 0.05, -7, 2, 3, 4), constI8, i8t("out", 0.1, 2, 2, 3, 3)),
		bmmCase("batch_matmul_i8_adj_broadcast", true, false, i8t("lhs", 0.03, 5, 1, 4, 3), i8t("rhs", 0.04, -3, 3, 4, 2), i8t("out", 0.2, -10, 3, 3, 2)),
		bmmCase("batch_matmul_i16", false, false, i16t("lhs", 0.001, 2, 3, 4), i16t("rhs", 0.002, 4, 5), i16t("out", 0.5, 2, 3, 5)),
		bmmCase("batch_matmul_i16_adj", false, true, i16t("lhs", 0.0005, 1, 2, 6), i16t("rhs", 0.0007, 3, 6), i16t("out", 0.02, 1, 2, 3)),
		svdfFloatCase("svdf_f32", 2, 4, 6, 5, 2, schema.ActivationRelu, true),
		svdfFloatCase("svdf_f32_nobias_rank1", 1, 3, 4, 3, 1, schema.ActivationNone, false),
		svdfInt8Case("svdf_i8_i16state", 1, 8, 4, 5, 1, 3, -5),
		svdfInt8Case("svdf_i8_i16state_rank2_batch2", 2, 6, 6, 4, 2, -20, 7),
		lstmFloatCase("lstm_f32", false, 2, 3, 4, 5, 0),
		lstmFloatCase("lstm_f32_time_major_clip", true, 3, 2, 3, 4, 0.5),
		lstmFloatCase("lstm_f32_one_step", false, 1, 1, 2, 3, 0),
		lstmInt16Case("lstm_i16", false, 2, 4, 5, 6, 0, 0),
		lstmInt16Case("lstm_i16_time_major_clip", true, 3, 2, 7, 5, 1.5, 0),
		lstmInt16Case("lstm_i16_in_zp_long", false, 1, 12, 3, 9, 0, 37),
	}
	cases = append(cases, controlFlowCases()...)
	oracletest.RunOpCases(t, sequenceDir, cases)
}

// ---- multi-subgraph models ----

func boolData(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

// ifModel: out = cond ? a+b : a*b, cond a constant.
func ifModel(cond bool) func() ([]byte, error) {
	return func() ([]byte, error) {
		m := write.NewModel("outpost sequence test: IF")
		main, then, els := m.Subgraph(), m.Subgraph(), m.Subgraph()
		c := main.AddTensor(sqT{Name: "cond", Type: schema.TensorTypeBool, Shape: []int32{1}, Data: boolData(cond)})
		a := main.AddTensor(sqF32("a", 2, 3))
		b := main.AddTensor(sqF32("b", 2, 3))
		o := main.AddTensor(sqF32("out", 2, 3))
		main.AddOp(schema.OpIf, 1, []int32{c, a, b}, []int32{o}, write.IfOptions{Then: 1, Else: 2})
		main.SetInputs(a, b)
		main.SetOutputs(o)
		for _, br := range []struct {
			sg *write.Subgraph
			op schema.BuiltinOperator
			o  write.Options
		}{{then, schema.OpAdd, write.AddOptions(schema.ActivationNone)}, {els, schema.OpMul, write.MulOptions(schema.ActivationNone)}} {
			x := br.sg.AddTensor(sqF32("x", 2, 3))
			y := br.sg.AddTensor(sqF32("y", 2, 3))
			z := br.sg.AddTensor(sqF32("z", 2, 3))
			br.sg.AddOp(br.op, 1, []int32{x, y}, []int32{z}, br.o)
			br.sg.SetInputs(x, y)
			br.sg.SetOutputs(z)
		}
		return m.Bytes()
	}
}

// whileModel: starting from i=0 and x, while i < n { i = i+1; x = x*x + x*0.5 } (the body
// also passes a third loop variable through unchanged).
func whileModel(n int32) func() ([]byte, error) {
	return func() ([]byte, error) {
		m := write.NewModel("outpost sequence test: WHILE")
		main, cond, body := m.Subgraph(), m.Subgraph(), m.Subgraph()
		i0 := main.AddTensor(sqT{Name: "i0", Type: schema.TensorTypeInt32, Shape: []int32{1}, Data: write.Int32s([]int32{0})})
		x0 := main.AddTensor(sqF32("x", 4))
		k0 := main.AddTensor(sqF32("k", 4))
		i1 := main.AddTensor(sqT{Name: "i_final", Type: schema.TensorTypeInt32, Shape: []int32{1}})
		x1 := main.AddTensor(sqF32("x_final", 4))
		k1 := main.AddTensor(sqF32("k_final", 4))
		main.AddOp(schema.OpWhile, 1, []int32{i0, x0, k0}, []int32{i1, x1, k1}, write.WhileOptions{Cond: 1, Body: 2})
		main.SetInputs(x0, k0)
		main.SetOutputs(i1, x1, k1)

		ci := cond.AddTensor(sqT{Name: "i", Type: schema.TensorTypeInt32, Shape: []int32{1}})
		cx := cond.AddTensor(sqF32("x", 4))
		ck := cond.AddTensor(sqF32("k", 4))
		cn := cond.AddTensor(sqT{Name: "n", Type: schema.TensorTypeInt32, Shape: []int32{1}, Data: write.Int32s([]int32{n})})
		cb := cond.AddTensor(sqT{Name: "more", Type: schema.TensorTypeBool, Shape: []int32{1}})
		cond.AddOp(schema.OpLess, 1, []int32{ci, cn}, []int32{cb}, nil)
		cond.SetInputs(ci, cx, ck)
		cond.SetOutputs(cb)

		bi := body.AddTensor(sqT{Name: "i", Type: schema.TensorTypeInt32, Shape: []int32{1}})
		bx := body.AddTensor(sqF32("x", 4))
		bk := body.AddTensor(sqF32("k", 4))
		one := body.AddTensor(sqT{Name: "one", Type: schema.TensorTypeInt32, Shape: []int32{1}, Data: write.Int32s([]int32{1})})
		half := body.AddTensor(sqT{Name: "half", Type: schema.TensorTypeFloat32, Shape: []int32{1}, Data: write.Float32s([]float32{0.5})})
		bi2 := body.AddTensor(sqT{Name: "i_next", Type: schema.TensorTypeInt32, Shape: []int32{1}})
		sq := body.AddTensor(sqF32("x_sq", 4))
		hx := body.AddTensor(sqF32("x_half", 4))
		bx2 := body.AddTensor(sqF32("x_next", 4))
		body.AddOp(schema.OpAdd, 1, []int32{bi, one}, []int32{bi2}, write.AddOptions(schema.ActivationNone))
		body.AddOp(schema.OpMul, 1, []int32{bx, bx}, []int32{sq}, write.MulOptions(schema.ActivationNone))
		body.AddOp(schema.OpMul, 1, []int32{bx, half}, []int32{hx}, write.MulOptions(schema.ActivationNone))
		body.AddOp(schema.OpAdd, 1, []int32{sq, hx}, []int32{bx2}, write.AddOptions(schema.ActivationNone))
		body.SetInputs(bi, bx, bk)
		body.SetOutputs(bi2, bx2, bk) // k passes through: an output that is also an input
		return m.Bytes()
	}
}

// varModel: CALL_ONCE initialises variable "acc" to c; each Invoke then computes
// y = read(acc) + x and assigns y back, so the output accumulates across Invokes. A second,
// differently named variable "scale" holds s and multiplies y.
func varModel() ([]byte, error) {
	m := write.NewModel("outpost sequence test: resource variables")
	main, init := m.Subgraph(), m.Subgraph()
	res := func(sg *write.Subgraph, name string) int32 {
		h := sg.AddTensor(sqT{Name: "handle_" + name, Type: schema.TensorTypeResource, Shape: []int32{}})
		sg.AddOp(schema.OpVarHandle, 1, nil, []int32{h}, write.VarHandleOptions{SharedName: name})
		return h
	}
	main.AddOp(schema.OpCallOnce, 1, nil, nil, write.CallOnceOptions{Init: 1})
	acc, scale := res(main, "acc"), res(main, "scale")
	x := main.AddTensor(sqF32("x", 2, 2))
	prev := main.AddTensor(sqF32("prev", 2, 2))
	s := main.AddTensor(sqF32("s", 2, 2))
	sum := main.AddTensor(sqF32("sum", 2, 2))
	y := main.AddTensor(sqF32("y", 2, 2))
	main.AddOp(schema.OpReadVariable, 1, []int32{acc}, []int32{prev}, nil)
	main.AddOp(schema.OpReadVariable, 1, []int32{scale}, []int32{s}, nil)
	main.AddOp(schema.OpAdd, 1, []int32{prev, x}, []int32{sum}, write.AddOptions(schema.ActivationNone))
	main.AddOp(schema.OpMul, 1, []int32{sum, s}, []int32{y}, write.MulOptions(schema.ActivationNone))
	main.AddOp(schema.OpAssignVariable, 1, []int32{acc, sum}, nil, nil)
	main.SetInputs(x)
	main.SetOutputs(y)

	ia, is := res(init, "acc"), res(init, "scale")
	c := init.AddTensor(sqT{Name: "c", Type: schema.TensorTypeFloat32, Shape: []int32{2, 2}, Data: write.Float32s([]float32{1, -2, 3, 0.25})})
	sc := init.AddTensor(sqT{Name: "s0", Type: schema.TensorTypeFloat32, Shape: []int32{2, 2}, Data: write.Float32s([]float32{2, 2, -1, 10})})
	init.AddOp(schema.OpAssignVariable, 1, []int32{ia, c}, nil, nil)
	init.AddOp(schema.OpAssignVariable, 1, []int32{is, sc}, nil, nil)
	return m.Bytes()
}

func controlFlowCases() []oracletest.OpCase {
	b := kernels.Builtins()
	return []oracletest.OpCase{
		{Name: "if_then", Build: ifModel(true), Resolver: b},
		{Name: "if_else", Build: ifModel(false), Resolver: b},
		{Name: "while_3", Build: whileModel(3), Resolver: b},
		{Name: "while_0", Build: whileModel(0), Resolver: b},
		{Name: "call_once_vars", Build: varModel, Resolver: b},
	}
}

// TestResourceVariablesPersist checks state across Invokes (which the single-run oracle
// goldens cannot): the accumulator keeps growing, ResetVariables re-runs CALL_ONCE.
func TestResourceVariablesPersist(t *testing.T) {
	ip := opInterpreter(t, varModel)
	x := []float32{1, 2, 3, 4}
	c := []float32{1, -2, 3, 0.25}
	s := []float32{2, 2, -1, 10}
	for k := 1; k <= 3; k++ {
		// Inputs must be written before every Invoke: their memory is reused after last use.
		copy(ip.Input(0).Float32(), x)
		if err := ip.Invoke(); err != nil {
			t.Fatal(err)
		}
		for i, got := range ip.Output(0).Float32() {
			want := (c[i] + float32(k)*x[i]) * s[i]
			if got != want {
				t.Fatalf("invoke %d: y[%d] = %v, want %v", k, i, got, want)
			}
		}
	}
	ip.ResetVariables()
	copy(ip.Input(0).Float32(), x)
	if err := ip.Invoke(); err != nil {
		t.Fatal(err)
	}
	if got, want := ip.Output(0).Float32()[0], (c[0]+x[0])*s[0]; got != want {
		t.Fatalf("after ResetVariables: y[0] = %v, want %v (CALL_ONCE must run again)", got, want)
	}
}

// TestLSTMStatePersists runs the float LSTM twice: the second run starts from the first run's
// state, so outputs differ, and ResetVariables brings back the first run's outputs exactly.
func TestLSTMStatePersists(t *testing.T) {
	ip := opInterpreter(t, lstmFloatCase("x", false, 2, 3, 4, 5, 0).Build)
	run := func() []float32 {
		in := ip.Input(0).Float32()
		for i := range in {
			in[i] = float32(i%7)/7 - 0.4
		}
		if err := ip.Invoke(); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), ip.Output(0).Float32()...)
	}
	first, second := run(), run()
	same := true
	for i := range first {
		same = same && first[i] == second[i]
	}
	if same {
		t.Fatal("second Invoke gave the first one's outputs: the LSTM state did not persist")
	}
	ip.ResetVariables()
	for i, v := range run() {
		if v != first[i] {
			t.Fatalf("after ResetVariables output[%d] = %v, want %v", i, v, first[i])
		}
	}
}

func TestSequenceZeroAllocs(t *testing.T) {
	oracletest.RunAllocCases(t, []oracletest.OpCase{
		lstmFloatCase("lstm", false, 2, 3, 4, 5, 0),
		svdfInt8Case("svdf", 1, 8, 4, 5, 1, 3, -5),
		bmmCase("bmm", false, true, sqF32("lhs", 2, 3, 4), sqF32("rhs", 2, 5, 4), sqF32("out", 2, 3, 5)),
		bmmCase("bmm16", false, false, sqT{Name: "l", Type: schema.TensorTypeInt16, Shape: []int32{2, 3}, Quant: sqQ(0.01, 0)},
			sqT{Name: "r", Type: schema.TensorTypeInt16, Shape: []int32{3, 2}, Quant: sqQ(0.01, 0)}, sqT{Name: "o", Type: schema.TensorTypeInt16, Shape: []int32{2, 2}, Quant: sqQ(0.1, 0)}),
		{Name: "while", Build: whileModel(4), Resolver: kernels.Builtins()},
		{Name: "if", Build: ifModel(true), Resolver: kernels.Builtins()},
		{Name: "vars", Build: varModel, Resolver: kernels.Builtins()},
	}, nil)
}

// TestSequenceRejects: bad models fail NewInterpreter (or Load) with a one-line error naming
// the problem, never a panic.
func TestSequenceRejects(t *testing.T) {
	recursive := func() ([]byte, error) {
		m := write.NewModel("recursive IF")
		main, sub := m.Subgraph(), m.Subgraph()
		c := main.AddTensor(sqT{Name: "cond", Type: schema.TensorTypeBool, Shape: []int32{1}, Data: boolData(true)})
		a := main.AddTensor(sqF32("a", 2))
		o := main.AddTensor(sqF32("o", 2))
		main.AddOp(schema.OpIf, 1, []int32{c, a}, []int32{o}, write.IfOptions{Then: 1, Else: 1})
		main.SetInputs(a)
		main.SetOutputs(o)
		sc := sub.AddTensor(sqT{Name: "cond", Type: schema.TensorTypeBool, Shape: []int32{1}, Data: boolData(true)})
		sa := sub.AddTensor(sqF32("a", 2))
		so := sub.AddTensor(sqF32("o", 2))
		sub.AddOp(schema.OpIf, 1, []int32{sc, sa}, []int32{so}, write.IfOptions{Then: 0, Else: 1})
		sub.SetInputs(sa)
		sub.SetOutputs(so)
		return m.Bytes()
	}
	deep := func() ([]byte, error) {
		m := write.NewModel("deep CALL_ONCE chain")
		for i := 0; i <= tflite.MaxSubgraphDepth+1; i++ {
			sg := m.Subgraph()
			if i <= tflite.MaxSubgraphDepth {
				sg.AddOp(schema.OpCallOnce, 1, nil, nil, write.CallOnceOptions{Init: int32(i + 1)})
			}
		}
		return m.Bytes()
	}
	ifMismatch := func() ([]byte, error) {
		m := write.NewModel("IF branch mismatch")
		main, sub := m.Subgraph(), m.Subgraph()
		c := main.AddTensor(sqT{Name: "cond", Type: schema.TensorTypeBool, Shape: []int32{1}, Data: boolData(true)})
		a := main.AddTensor(sqF32("a", 2))
		o := main.AddTensor(sqF32("o", 3))
		main.AddOp(schema.OpIf, 1, []int32{c, a}, []int32{o}, write.IfOptions{Then: 1, Else: 1})
		main.SetInputs(a)
		main.SetOutputs(o)
		x := sub.AddTensor(sqF32("x", 2))
		sub.SetInputs(x)
		sub.SetOutputs(x)
		return m.Bytes()
	}
	runRejects(t, []rejectCase{
		{"recursive_if", recursive, "recursive subgraph call"},
		{"deep_call_chain", deep, "nest deeper than"},
		{"if_branch_shape", ifMismatch, "does not match"},
		{"bmm_contracted_dims", bmmCase("x", false, false, sqF32("l", 2, 3), sqF32("r", 4, 2), sqF32("o", 2, 2)).Build, "contracted dimensions"},
		{"bmm_output_shape", bmmCase("x", false, false, sqF32("l", 2, 3), sqF32("r", 3, 2), sqF32("o", 2, 3)).Build, "want [2 2]"},
		{"bmm_batch_broadcast", bmmCase("x", false, false, sqF32("l", 2, 2, 3), sqF32("r", 3, 3, 2), sqF32("o", 3, 2, 2)).Build, "do not broadcast"},
		{"svdf_rank", svdfFloatCase("x", 1, 3, 4, 3, 3, schema.ActivationNone, false).Build, "rank 3 does not divide"},
	})
}

// TestSigmoidTanhInt16 pins the int16 LUT activations against their float definitions: the
// reference kernels are within a few LSB of exact over the whole Q3.12 range.
func TestSigmoidTanhInt16(t *testing.T) {
	v := make([]int16, 0, 65536)
	for x := math.MinInt16; x <= math.MaxInt16; x++ {
		v = append(v, int16(x))
	}
	sig := append([]int16(nil), v...)
	kernels.SigmoidInt16ForTest(sig)
	th := make([]int16, len(v))
	kernels.TanhInt16ForTest(-12, v, th)
	for i, x := range v {
		f := float64(x) / 4096
		if d := math.Abs(float64(sig[i]) - 32768/(1+math.Exp(-f))); d > 8 {
			t.Fatalf("sigmoid(%d) = %d, off by %.1f LSB", x, sig[i], d)
		}
		if d := math.Abs(float64(th[i]) - 32768*math.Tanh(f)); d > 16 {
			t.Fatalf("tanh(%d) = %d, off by %.1f LSB", x, th[i], d)
		}
	}
}
