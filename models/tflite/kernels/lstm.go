package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// UNIDIRECTIONAL_SEQUENCE_LSTM as TFLite Micro's kernel (unidirectional_sequence_lstm.cc,
// lstm_eval.h, lstm_eval_common.cc): the standard Keras LSTM without CIFG, peepholes,
// projection or layer norm. float32 runs in float32; int8 activations with int8 weights, int32
// biases and an int16 cell state run TFLM's integer path bit for bit (gate pre-activations in
// Q3.12, gate outputs in Q0.15, the sigmoid/tanh LUT of reference_integer_ops). int16
// activations (the 16x8 scheme: int8 weights, int64 biases, int16 cell state) run the same
// steps, with TFLM's int16 x int8 FullyConnected (int64 accumulator and its 64-bit rescale)
// and the hidden state clamped to int16.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpUnidirectionalSequenceLstm, 1, 4, tflite.KernelFuncs{PrepareFn: prepareLSTM, EvalFn: evalLSTM})
	})
}

// Input slots of the op (lstm_shared.h).
const (
	lstmInput              = 0
	lstmInputToInput       = 1
	lstmInputToForget      = 2
	lstmInputToCell        = 3
	lstmInputToOutput      = 4
	lstmRecurrentToInput   = 5
	lstmRecurrentToForget  = 6
	lstmRecurrentToCell    = 7
	lstmRecurrentToOutput  = 8
	lstmInputGateBias      = 12
	lstmForgetGateBias     = 13
	lstmCellGateBias       = 14
	lstmOutputGateBias     = 15
	lstmOutputState        = 18
	lstmCellState          = 19
	lstmNumInputs          = 24
	lstmSigmoid            = schema.Activation(6) // TfLiteFusedActivation kTfLiteActSigmoid; not in the file schema
	lstmGateInputScaleQ12  = 1.0 / 4096           // gate pre-activations are Q3.12 (2^-12)
	lstmGateOutputScaleQ15 = 1.0 / 32768          // gate outputs are Q0.15 (2^-15)
)

// lstmFC is one fully connected half of a gate: int8 input (or hidden state) times int8 weights
// into Q3.12 int16 (FullyConnectedParamsQuantized of CalculateOpDataFullyConnected).
type lstmFC struct {
	inOff, wOff int32
	mult        int32
	shift       int
}

// lstmMul is an elementwise int16 x int16 multiply (CreateInterGateMulParams).
type lstmMul struct {
	mult     int32
	shift    int
	outOff   int32
	min, max int32
}

type lstmGate struct {
	in, rec   lstmFC
	wIn, wRec int // input slots of the weights
	bias      int
	act       schema.Activation // sigmoid, or the cell gate's activation
}

type lstmData struct {
	batch, steps, nIn, nState int
	timeMajor                 bool
	cellAct                   schema.Activation
	cellClip                  float32
	quantized                 bool
	act16                     bool // int16 activations (16x8); int8 otherwise

	gates [4]lstmGate // forget, input, cell, output: TFLM's evaluation order

	// integer path
	forgetCellMul, inputMul, outputMul lstmMul
	cellScalePower                     int
	quantCellClip                      int16

	bufs [4]int // scratch handles: batch x state cells each

	hybrid *lstmHybrid // float32 activations with int8 weights (hybrid.go); nil otherwise
}

func lstmErr(format string, a ...any) error { return fmt.Errorf(format, a...) }

// prepareLSTM checks the op like TFLM's UnidirectionalSequenceLstmPrepare and precomputes the
// fixed-point parameters.
func prepareLSTM(n *tflite.Node) error {
	if len(n.Inputs) != lstmNumInputs || len(n.Outputs) != 1 {
		return lstmErr("%d inputs and %d outputs, want %d and 1", len(n.Inputs), len(n.Outputs), lstmNumInputs)
	}
	opts, _ := n.Options.(*tflite.UnidirectionalSequenceLSTMOptions)
	if opts == nil {
		return lstmErr("missing UnidirectionalSequenceLSTMOptions")
	}
	in, out := n.Input(lstmInput), n.Output(0)
	hidden, cell := n.Input(lstmOutputState), n.Input(lstmCellState)
	for _, s := range []int{lstmInput, lstmOutputState, lstmCellState} {
		if n.Input(s) == nil {
			return lstmErr("required input %d is omitted", s)
		}
	}
	for s := lstmInputToInput; s <= lstmRecurrentToOutput; s++ {
		if n.Input(s) == nil {
			// TFLM supports only the standard LSTM: CIFG (no input gate) is rejected.
			return lstmErr("weights input %d is omitted (CIFG LSTM is not supported)", s)
		}
	}
	for s := lstmInputGateBias; s <= lstmOutputGateBias; s++ {
		if n.Input(s) == nil {
			return lstmErr("bias input %d is omitted", s)
		}
	}
	for _, s := range []int{9, 10, 11, 16, 17, 20, 21, 22, 23} {
		if n.Input(s) != nil {
			// Peepholes (9-11), projection (16-17) and layer norm (20-23) are LSTM variants
			// TFLM's kernel rejects.
			return lstmErr("input %d (peephole, projection or layer norm) is not supported", s)
		}
	}
	if !hidden.Variable() || !cell.Variable() {
		return lstmErr("output state %q and cell state %q must be variable tensors", hidden.Name(), cell.Name())
	}
	if in.Rank() != 3 {
		return lstmErr("input %q has rank %d, want 3", in.Name(), in.Rank())
	}
	if opts.CellClip < 0 || math.IsNaN(float64(opts.CellClip)) {
		return lstmErr("cell_clip %v must be >= 0", opts.CellClip)
	}
	d := &lstmData{timeMajor: opts.TimeMajor, cellAct: opts.Activation, cellClip: opts.CellClip}
	if d.timeMajor {
		d.steps, d.batch = in.Dim(0), in.Dim(1)
	} else {
		d.batch, d.steps = in.Dim(0), in.Dim(1)
	}
	d.nIn = in.Dim(2)
	if hidden.Rank() < 1 {
		return lstmErr("output state %q is a scalar", hidden.Name())
	}
	d.nState = hidden.Dim(-1)
	if hidden.Rank() == 2 {
		d.nState = hidden.Dim(1)
	}
	if d.nState == 0 || d.nIn == 0 {
		return lstmErr("input %q and output state %q must have non-zero feature sizes", in.Name(), hidden.Name())
	}
	switch d.cellAct {
	case schema.ActivationTanh:
	default:
		// CalculateLstmGate only implements sigmoid (the other gates) and tanh.
		return lstmErr("cell activation %d not supported (tanh only)", d.cellAct)
	}
	weight := func(s, rows, cols int) error {
		w := n.Input(s)
		if w.Rank() != 2 || w.Dim(0) != rows || w.Dim(1) != cols {
			return lstmErr("weights %q (input %d) have shape %v, want [%d %d]", w.Name(), s, w.Shape(), rows, cols)
		}
		return nil
	}
	for s := lstmInputToInput; s <= lstmInputToOutput; s++ {
		if err := weight(s, d.nState, d.nIn); err != nil {
			return err
		}
	}
	for s := lstmRecurrentToInput; s <= lstmRecurrentToOutput; s++ {
		if err := weight(s, d.nState, d.nState); err != nil {
			return err
		}
	}
	for s := lstmInputGateBias; s <= lstmOutputGateBias; s++ {
		b := n.Input(s)
		if b.Rank() != 1 || b.Dim(0) != d.nState {
			return lstmErr("bias %q (input %d) has shape %v, want [%d]", b.Name(), s, b.Shape(), d.nState)
		}
	}
	if hidden.NumElements() != d.batch*d.nState || cell.NumElements() != d.batch*d.nState {
		return lstmErr("output state %q and cell state %q must have %d x %d elements", hidden.Name(), cell.Name(), d.batch, d.nState)
	}
	if out.Rank() != 3 || out.Dim(0) != in.Dim(0) || out.Dim(1) != in.Dim(1) || out.Dim(2) != d.nState {
		return lstmErr("output %q has shape %v, want [%d %d %d]", out.Name(), out.Shape(), in.Dim(0), in.Dim(1), d.nState)
	}
	d.gates = [4]lstmGate{
		{wIn: lstmInputToForget, wRec: lstmRecurrentToForget, bias: lstmForgetGateBias, act: lstmSigmoid},
		{wIn: lstmInputToInput, wRec: lstmRecurrentToInput, bias: lstmInputGateBias, act: lstmSigmoid},
		{wIn: lstmInputToCell, wRec: lstmRecurrentToCell, bias: lstmCellGateBias, act: d.cellAct},
		{wIn: lstmInputToOutput, wRec: lstmRecurrentToOutput, bias: lstmOutputGateBias, act: lstmSigmoid},
	}
	wType, bType := n.Input(lstmInputToForget).DType(), n.Input(lstmForgetGateBias).DType()
	for s := lstmInputToInput; s <= lstmRecurrentToOutput; s++ {
		if w := n.Input(s); w.DType() != wType {
			return lstmErr("weights %q are %s, others %s", w.Name(), w.DType(), wType)
		}
	}
	for s := lstmInputGateBias; s <= lstmOutputGateBias; s++ {
		if b := n.Input(s); b.DType() != bType {
			return lstmErr("bias %q is %s, others %s", b.Name(), b.DType(), bType)
		}
	}
	if hidden.DType() != in.DType() || out.DType() != in.DType() {
		return lstmErr("input %s, output state %s, output %s must have one type", in.DType(), hidden.DType(), out.DType())
	}
	cellSize := 4
	switch {
	case in.DType() == tensor.Float32 && wType == tensor.Float32 && bType == tensor.Float32 && cell.DType() == tensor.Float32:
	case in.DType() == tensor.Float32 && wType == tensor.Int8 && bType == tensor.Float32 && cell.DType() == tensor.Float32:
		if err := prepareLSTMHybrid(n, d, opts); err != nil {
			return err
		}
	case in.DType() == tensor.Int8 && wType == tensor.Int8 && bType == tensor.Int32 && cell.DType() == tensor.Int16,
		in.DType() == tensor.Int16 && wType == tensor.Int8 && bType == tensor.Int64 && cell.DType() == tensor.Int16:
		d.quantized = true
		d.act16 = in.DType() == tensor.Int16
		cellSize = 2
		if err := prepareLSTMInt8(n, d); err != nil {
			return err
		}
	default:
		return lstmErr("input %s, weights %s, bias %s, cell state %s not supported (float32, int8/int8/int32 or int16/int8/int64 with int16 cell state)",
			in.DType(), wType, bType, cell.DType())
	}
	for i := range d.bufs {
		h, err := n.RequestScratch(d.batch * d.nState * cellSize)
		if err != nil {
			return err
		}
		d.bufs[i] = h
	}
	n.Data = d
	return nil
}

func prepareLSTMInt8(n *tflite.Node, d *lstmData) error {
	in, hidden, cell := n.Input(lstmInput), n.Input(lstmOutputState), n.Input(lstmCellState)
	inScale, inZP, err := perTensor(in)
	if err != nil {
		return err
	}
	hScale, hZP, err := perTensor(hidden)
	if err != nil {
		return err
	}
	cScale, cZP, err := perTensor(cell)
	if err != nil {
		return err
	}
	if cZP != 0 {
		return lstmErr("cell state %q has zero point %d, want 0", cell.Name(), cZP)
	}
	if outScale, outZP, err := perTensor(n.Output(0)); err != nil {
		return err
	} else if outScale != hScale || outZP != hZP {
		// The output is a copy of the hidden state, so it must share its quantization.
		return lstmErr("output %q quantization (%v, %d) differs from output state %q (%v, %d)", n.Output(0).Name(), outScale, outZP, hidden.Name(), hScale, hZP)
	}
	fc := func(xScale float32, xZP int32, s int) (lstmFC, error) {
		w := n.Input(s)
		wScale, wZP, err := perTensor(w)
		if err != nil {
			return lstmFC{}, err
		}
		// GetQuantizedConvolutionMultipler: float32 product, float64 division.
		q, sh := QuantizeMultiplier(float64(xScale*wScale) / lstmGateInputScaleQ12)
		return lstmFC{inOff: -xZP, wOff: -wZP, mult: q, shift: sh}, nil
	}
	for i := range d.gates {
		g := &d.gates[i]
		if g.in, err = fc(inScale, inZP, g.wIn); err != nil {
			return err
		}
		if g.rec, err = fc(hScale, hZP, g.wRec); err != nil {
			return err
		}
	}
	mul := func(s1, s2, so float64, outZP int32, lo, hi int32) lstmMul {
		q, sh := QuantizeMultiplier(s1 * s2 / so)
		return lstmMul{mult: q, shift: sh, outOff: outZP, min: lo, max: hi}
	}
	c := float64(cScale)
	d.forgetCellMul = mul(lstmGateOutputScaleQ15, c, c, 0, math.MinInt16, math.MaxInt16)
	d.inputMul = mul(lstmGateOutputScaleQ15, lstmGateOutputScaleQ15, c, 0, math.MinInt16, math.MaxInt16)
	// CreateInterGateMulParams clamps the hidden state to the activation type's range.
	hMin, hMax := int32(math.MinInt8), int32(math.MaxInt8)
	if d.act16 {
		hMin, hMax = math.MinInt16, math.MaxInt16
	}
	d.outputMul = mul(lstmGateOutputScaleQ15, lstmGateOutputScaleQ15, float64(hScale), hZP, hMin, hMax)
	// CheckedLog2: the cell state scale must be a power of two; the tanh of the hidden state
	// update shifts by its exponent.
	l2 := float32(math.Log(float64(cScale))) * float32(1/math.Log(2))
	rounded := float32(math.Round(float64(l2)))
	if math.Abs(float64(l2-rounded)) >= 1e-3 {
		return lstmErr("cell state %q scale %v is not a power of two", cell.Name(), cScale)
	}
	d.cellScalePower = int(rounded)
	if d.cellScalePower < -30 || d.cellScalePower > 0 {
		return lstmErr("cell state %q scale 2^%d out of range", cell.Name(), d.cellScalePower)
	}
	clip := math.Min(math.Max(float64(d.cellClip)/c, -32768), 32767)
	d.quantCellClip = int16(clip)
	return nil
}

func evalLSTM(n *tflite.Node) error {
	d := n.Data.(*lstmData)
	if d.quantized && d.act16 {
		evalLSTMQuant(n, d, n.Input(lstmInput).Int16(), n.Output(0).Int16(), n.Input(lstmOutputState).Int16(), lstmFCInt16)
		return nil
	}
	if d.quantized {
		evalLSTMQuant(n, d, n.Input(lstmInput).Int8(), n.Output(0).Int8(), n.Input(lstmOutputState).Int8(), lstmFCInt8)
		return nil
	}
	if d.hybrid != nil {
		evalLSTMHybrid(n, d)
		return nil
	}
	evalLSTMFloat(n, d)
	return nil
}

// lstmSteps walks the sequence like TFLM's LstmStepManager: time-major inputs run all batches
// per step; batch-major inputs run one batch at a time through all steps.
func lstmSteps(d *lstmData, step func(inOff, outOff, stateOff, rows int)) {
	if d.timeMajor {
		for t := 0; t < d.steps; t++ {
			off := t * d.batch
			step(off*d.nIn, off*d.nState, 0, d.batch)
		}
		return
	}
	for b := 0; b < d.batch; b++ {
		for t := 0; t < d.steps; t++ {
			off := b*d.steps + t
			step(off*d.nIn, off*d.nState, b*d.nState, 1)
		}
	}
}

func evalLSTMFloat(n *tflite.Node, d *lstmData) {
	x, y := n.Input(lstmInput).Float32(), n.Output(0).Float32()
	hAll, cAll := n.Input(lstmOutputState).Float32(), n.Input(lstmCellState).Float32()
	var buf [4][]float32
	for i := range buf {
		buf[i] = f32View(n.Scratch(d.bufs[i]))
	}
	lstmSteps(d, func(inOff, outOff, stateOff, rows int) {
		cells := rows * d.nState
		xt := x[inOff : inOff+rows*d.nIn]
		h := hAll[stateOff : stateOff+cells]
		c := cAll[stateOff : stateOff+cells]
		tmp := buf[3][:cells]
		gate := func(g *lstmGate, out []float32) {
			wIn, wRec, bias := n.Input(g.wIn).Float32(), n.Input(g.wRec).Float32(), n.Input(g.bias).Float32()
			lstmFCFloat(xt, wIn, bias, rows, d.nIn, d.nState, out)
			lstmFCFloat(h, wRec, nil, rows, d.nState, d.nState, tmp)
			for i := range out {
				out[i] += tmp[i]
			}
			lstmActFloat(g.act, out)
		}
		forget, input, cellGate := buf[0][:cells], buf[1][:cells], buf[2][:cells]
		gate(&d.gates[0], forget)
		gate(&d.gates[1], input)
		gate(&d.gates[2], cellGate)
		// UpdateLstmCell: c = f*c + i*g, then the optional clip.
		for i := range c {
			c[i] = forget[i] * c[i]
			input[i] = input[i] * cellGate[i]
			c[i] += input[i]
			if d.cellClip > 0 {
				c[i] = max(min(d.cellClip, c[i]), -d.cellClip)
			}
		}
		outGate := buf[1][:cells]
		gate(&d.gates[3], outGate)
		// UpdateLstmHidden: h = tanh(c) * o (TFLM always uses tanh here).
		for i := range h {
			h[i] = float32(math.Tanh(float64(c[i]))) * outGate[i]
		}
		copy(y[outOff:outOff+cells], h)
	})
}

// lstmFCFloat is reference_ops::FullyConnected without activation: out = x W^T + bias.
func lstmFCFloat(x, w, bias []float32, rows, depth, units int, out []float32) {
	for r := 0; r < rows; r++ {
		xr := x[r*depth : (r+1)*depth]
		for u := 0; u < units; u++ {
			wu := w[u*depth : (u+1)*depth]
			var acc float32
			for k, v := range xr {
				acc += v * wu[k]
			}
			if bias != nil {
				acc += bias[u]
			}
			out[r*units+u] = acc
		}
	}
}

func lstmActFloat(act schema.Activation, v []float32) {
	if act == schema.ActivationTanh {
		for i, x := range v {
			v[i] = float32(math.Tanh(float64(x)))
		}
		return
	}
	for i, x := range v {
		v[i] = logisticRef(x)
	}
}

// logisticRef is reference_ops::Logistic for float: exact exp-based sigmoid with TFLite's
// cut-offs (above 16.619 the result is 1, below -9 it is exp(x)).
func logisticRef(x float32) float32 {
	const upper, lower = 16.619047164916992188, -9.0
	switch {
	case x > upper:
		return 1
	case x < lower:
		return float32(math.Exp(float64(x)))
	}
	return 1 / (1 + float32(math.Exp(float64(-x))))
}

// evalLSTMQuant is TFLM's integer LstmStep for int8 or int16 activations T; fc is the gate's
// FullyConnected for T (bias nil for the recurrent half, as TFLM passes it).
func evalLSTMQuant[T int8 | int16](n *tflite.Node, d *lstmData, x, y, hAll []T,
	fc func(p *lstmFC, x []T, w []int8, bias *tensor.Tensor, rows, depth, units int, out []int16)) {
	cAll := n.Input(lstmCellState).Int16()
	var buf [4][]int16
	for i := range buf {
		buf[i] = i16View(n.Scratch(d.bufs[i]))
	}
	lstmSteps(d, func(inOff, outOff, stateOff, rows int) {
		cells := rows * d.nState
		xt := x[inOff : inOff+rows*d.nIn]
		h := hAll[stateOff : stateOff+cells]
		c := cAll[stateOff : stateOff+cells]
		tmp := buf[3][:cells]
		gate := func(g *lstmGate, out []int16) {
			wIn, wRec := n.Input(g.wIn).Int8(), n.Input(g.wRec).Int8()
			fc(&g.in, xt, wIn, n.Input(g.bias), rows, d.nIn, d.nState, out)
			fc(&g.rec, h, wRec, nil, rows, d.nState, d.nState, tmp)
			for i := range out {
				out[i] = int16(min(max(int32(out[i])+int32(tmp[i]), math.MinInt16), math.MaxInt16))
			}
			if g.act == schema.ActivationTanh {
				// CalculateLstmGate calls Tanh with cell_state_scale_power -12 (Q3.12 input).
				tanhInt16(-12, out, out)
			} else {
				sigmoidInt16(out)
			}
		}
		forget, input, cellGate := buf[0][:cells], buf[1][:cells], buf[2][:cells]
		gate(&d.gates[0], forget)
		gate(&d.gates[1], input)
		gate(&d.gates[2], cellGate)
		m1, m2 := &d.forgetCellMul, &d.inputMul
		for i := range c {
			// UpdateLstmCell: f*c and i*g as int16 Muls, a saturating add, the optional clip.
			fc := m1.apply(int32(forget[i]) * int32(c[i]))
			ig := m2.apply(int32(input[i]) * int32(cellGate[i]))
			v := int16(min(max(fc+ig, math.MinInt16), math.MaxInt16))
			if d.cellClip > 0 {
				v = max(min(d.quantCellClip, v), -d.quantCellClip)
			}
			c[i] = v
		}
		outGate := buf[1][:cells]
		gate(&d.gates[3], outGate)
		tanhC := buf[0][:cells]
		tanhInt16(d.cellScalePower, c, tanhC)
		m3 := &d.outputMul
		for i := range h {
			h[i] = T(m3.apply(int32(tanhC[i]) * int32(outGate[i])))
		}
		copy(y[outOff:outOff+cells], h)
	})
}

// apply is MulElementwise after the product: rescale, add the output offset, clamp.
func (m *lstmMul) apply(prod int32) int32 {
	return min(max(MultiplyByQuantizedMultiplier(prod, m.mult, m.shift)+m.outOff, m.min), m.max)
}

// lstmFCInt8 is reference_integer_ops::FullyConnected, int8 in, int16 out, no activation.
func lstmFCInt8(p *lstmFC, x, w []int8, b *tensor.Tensor, rows, depth, units int, out []int16) {
	var bias []int32
	if b != nil {
		bias = b.Int32()
	}
	for r := 0; r < rows; r++ {
		xr := x[r*depth : (r+1)*depth]
		for u := 0; u < units; u++ {
			wu := w[u*depth : (u+1)*depth]
			var acc int32
			for k, v := range xr {
				acc += (int32(wu[k]) + p.wOff) * (int32(v) + p.inOff)
			}
			if bias != nil {
				acc += bias[u]
			}
			acc = MultiplyByQuantizedMultiplier(acc, p.mult, p.shift)
			out[r*units+u] = int16(min(max(acc, math.MinInt16), math.MaxInt16))
		}
	}
}

// lstmFCInt16 is reference_integer_ops::FullyConnected<int16_t, int8_t, int16_t, int64_t> as
// TFLM's 16x8 LSTM calls it: int32 products summed in an int64 accumulator with the int64
// bias, rescaled by the 64-bit MultiplyByQuantizedMultiplier, clamped to int16.
func lstmFCInt16(p *lstmFC, x []int16, w []int8, b *tensor.Tensor, rows, depth, units int, out []int16) {
	var bias []int64
	if b != nil {
		bias = b.Int64()
	}
	for r := 0; r < rows; r++ {
		xr := x[r*depth : (r+1)*depth]
		for u := 0; u < units; u++ {
			wu := w[u*depth : (u+1)*depth]
			var acc int64
			for k, v := range xr {
				acc += int64((int32(wu[k]) + p.wOff) * (int32(v) + p.inOff))
			}
			if bias != nil {
				acc += bias[u]
			}
			v := MultiplyByQuantizedMultiplier64(acc, p.mult, p.shift)
			out[r*units+u] = int16(min(max(v, math.MinInt16), math.MaxInt16))
		}
	}
}
