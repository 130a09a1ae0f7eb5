package kernels

import (
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

func init() {
	register(func(r *Resolver) {
		// SOFTMAX v1 float32, v2 int8 (int8 or int16 output), v3 int16; LOG_SOFTMAX v1 float32,
		// v2 int8.
		r.AddBuiltin(schema.OpSoftmax, 1, 3, tflite.KernelFuncs{PrepareFn: prepareSoftmax, EvalFn: evalSoftmax})
		r.AddBuiltin(schema.OpLogSoftmax, 1, 2, tflite.KernelFuncs{PrepareFn: prepareLogSoftmax, EvalFn: evalLogSoftmax})
	})
}

type softmaxData struct {
	beta  float32
	depth int
}

// prepareSoftmax: softmax over the last dimension, scaled by beta (reference_ops::Softmax).
func prepareSoftmax(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if in.Rank() < 1 {
		return fmt.Errorf("input %q is a scalar, want rank >= 1", in.Name())
	}
	beta := float32(1)
	if o, ok := n.Options.(*tflite.SoftmaxOptions); ok {
		beta = o.Beta
	}
	if math.IsNaN(float64(beta)) || math.IsInf(float64(beta), 0) {
		return fmt.Errorf("beta %g is not finite", beta)
	}
	switch in.DType() {
	case tensor.Int8, tensor.Int16, tensor.Uint8:
		// The quantized kernels derive a positive fixed-point multiplier from beta (TFLite
		// checks it is greater than one for int8; a beta <= 0 is never produced by converters).
		if beta <= 0 {
			return fmt.Errorf("beta %g, want > 0 for quantized %s input %q", beta, in.DType(), in.Name())
		}
		if !slices.Equal(in.Shape(), out.Shape()) {
			return fmt.Errorf("input %q has shape %v, output %q has %v", in.Name(), in.Shape(), out.Name(), out.Shape())
		}
		if in.DType() == tensor.Int16 {
			return prepareSoftmaxInt16(n, beta)
		}
		return prepareSoftmaxInt8(n, beta)
	case tensor.Float32:
	default:
		return fmt.Errorf("input %q is %s, want float32, int8, int16 or uint8", in.Name(), in.DType())
	}
	if err := sameFloatShape(in, out); err != nil {
		return err
	}
	n.Data = &softmaxData{beta: beta, depth: in.Dim(-1)}
	return nil
}

func evalSoftmax(n *tflite.Node) error {
	switch d := n.Data.(type) {
	case *softmaxQuantData:
		evalSoftmaxInt8(n)
		return nil
	case *softmaxInt16Data:
		evalSoftmaxInt16(n, d)
		return nil
	}
	d := n.Data.(*softmaxData)
	x, y := n.Input(0).Float32(), n.Output(0).Float32()
	if d.depth == 0 {
		return nil
	}
	for start := 0; start+d.depth <= len(x); start += d.depth {
		row, dst := x[start:start+d.depth], y[start:start+d.depth]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var sum float32
		for i, v := range row {
			e := float32(math.Exp(float64((v - mx) * d.beta)))
			dst[i] = e
			sum += e
		}
		for i := range dst {
			dst[i] /= sum
		}
	}
	return nil
}

// Quantized SOFTMAX (int8 input, int8 or int16 output) follows TFLite Micro, i.e.
// reference_ops::Softmax with gemmlowp fixed point: the input differences from the row maximum
// are rescaled by beta*input_scale into Q5.26 (PreprocessSoftmaxScaling), exponentiated with
// exp_on_negative_values, summed in Q12.19, and each exp is multiplied by the sum's reciprocal
// (GetReciprocal). Full TFLite uses a float lookup table for int8 instead, so the official
// runtime may differ from this by one LSB.

const (
	softmaxScaledDiffIntegerBits = 5  // Q5.26 input differences
	softmaxAccumIntegerBits      = 12 // Q12.19 sum of exps
)

type softmaxQuantData struct {
	depth      int
	mult       int32
	leftShift  int
	diffMin    int32
	outInt16   bool
	outMin     int32
	outMax     int32
	outBitsAdj int // 31 - output bits

	// The input is 8-bit, so a row's differences from its maximum are 0..255 below it: exp
	// holds exp of each (Q0.31, softmaxExp) and expSum the same rescaled to the sum's Q12.19,
	// both 0 where the difference is below diffMin. Filled at Prepare.
	exp, expSum [256]int32
}

func prepareSoftmaxInt8(n *tflite.Node, beta float32) error {
	in, out := n.Input(0), n.Output(0)
	inScale, _, err := perTensor(in)
	if err != nil {
		return err
	}
	outScale, outZP, err := perTensor(out)
	if err != nil {
		return err
	}
	d := &softmaxQuantData{depth: in.Dim(-1)}
	switch out.DType() {
	case tensor.Int8:
		// TFLite Micro requires the output to cover [0, 1) exactly: scale 1/256, zero point -128.
		if outZP != -128 || outScale != 1.0/256 {
			return fmt.Errorf("output %q scale %g zero point %d, want 1/256 and -128", out.Name(), outScale, outZP)
		}
		d.outMin, d.outMax, d.outBitsAdj = math.MinInt8, math.MaxInt8, 31-8
	case tensor.Uint8:
		// reference_ops::Softmax for uint8: the same arithmetic, output zero point 0.
		if in.DType() != tensor.Uint8 || outZP != 0 || outScale != 1.0/256 {
			return fmt.Errorf("%s input %q, uint8 output %q scale %g zero point %d, want uint8 input, 1/256 and 0", in.DType(), in.Name(), out.Name(), outScale, outZP)
		}
		d.outMin, d.outMax, d.outBitsAdj = 0, math.MaxUint8, 31-8
	case tensor.Int16:
		if outZP != -32768 || math.Abs(float64(outScale)-1.0/65536) > 0.001/65536 {
			return fmt.Errorf("output %q scale %g zero point %d, want 1/65536 and -32768", out.Name(), outScale, outZP)
		}
		d.outInt16 = true
		d.outMin, d.outMax, d.outBitsAdj = math.MinInt16, math.MaxInt16, 31-16
	default:
		return fmt.Errorf("%s input %q with %s output %q not supported (int8 or int16)", in.DType(), in.Name(), out.DType(), out.Name())
	}
	// PreprocessSoftmaxScaling: beta * input_scale in Q(5).(26), capped at 2^31-1, as a
	// multiplier greater than one.
	real := min(float64(beta)*float64(inScale)*float64(int64(1)<<(31-softmaxScaledDiffIntegerBits)), float64(int64(1)<<31)-1)
	q, shift := QuantizeMultiplier(real)
	if shift < 0 {
		return fmt.Errorf("beta %g with input scale %g gives a multiplier below one", beta, inScale)
	}
	d.mult, d.leftShift = q, shift
	// CalculateInputRadius: differences below -radius have exp() that rounds to zero.
	radius := float64((int64(1)<<softmaxScaledDiffIntegerBits)-1) * float64(int64(1)<<(31-softmaxScaledDiffIntegerBits)) / float64(int64(1)<<shift)
	d.diffMin = -int32(math.Floor(radius))
	for k := range d.exp {
		if diff := -int32(k); diff >= d.diffMin {
			d.exp[k] = softmaxExp(d, diff)
			d.expSum[k] = RoundingDivideByPOT(d.exp[k], softmaxAccumIntegerBits) // Q0.31 -> Q12.19
		}
	}
	n.Data = d
	return nil
}

// softmaxExp is exp(beta * input_scale * diff) in Q0.31 for a difference diff <= 0 from the
// row maximum (at least diffMin): the difference rescaled into Q5.26 by
// MultiplyByQuantizedMultiplierGreaterThanOne, then exp_on_negative_values.
func softmaxExp(d *softmaxQuantData, diff int32) int32 {
	return expOnNegativeValues(SaturatingRoundingDoublingHighMul(diff*(int32(1)<<d.leftShift), d.mult), softmaxScaledDiffIntegerBits)
}

func evalSoftmaxInt8(n *tflite.Node) {
	d := n.Data.(*softmaxQuantData)
	if d.depth == 0 {
		return // an empty softmax axis: nothing to do (and the row loop would not advance)
	}
	x, y := n.Input(0), n.Output(0)
	switch {
	case x.DType() == tensor.Uint8:
		softmaxQuant(d, x.Uint8(), y.Uint8())
	case d.outInt16:
		softmaxQuant(d, x.Int8(), y.Int16())
	default:
		softmaxQuant(d, x.Int8(), y.Int8())
	}
}

// softmaxQuant is reference_ops::Softmax for 8-bit input over the rows of x, with the exps
// looked up in d.exp and d.expSum (the same integers as computing them: a difference below
// diffMin has exp 0 there, whose output is outMin as the reference's).
func softmaxQuant[T int8 | uint8, U int8 | int16 | uint8](d *softmaxQuantData, x []T, y []U) {
	for start := 0; start+d.depth <= len(x); start += d.depth {
		row, dst := x[start:start+d.depth], y[start:start+d.depth]
		mx := int32(row[0])
		for _, v := range row {
			mx = max(mx, int32(v))
		}
		var sum int32 // Q12.19
		for _, v := range row {
			sum += d.expSum[uint8(mx-int32(v))]
		}
		recip, bitsOverUnit := reciprocal(sum, softmaxAccumIntegerBits)
		shift := bitsOverUnit + d.outBitsAdj
		if recip < 0 || shift < 1 || shift > 31 {
			// Only with a sum that wrapped (more than 4095 elements near the maximum).
			for i, v := range row {
				e := d.exp[uint8(mx-int32(v))]
				u := RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(recip, e), shift)
				dst[i] = U(min(max(u+d.outMin, d.outMin), d.outMax))
			}
			continue
		}
		// recip and every exp are >= 0, so SaturatingRoundingDoublingHighMul is the product
		// plus 2^30 shifted right by 31, and RoundingDivideByPOT adds half and shifts.
		round := int64(1) << (shift - 1)
		for i, v := range row {
			p := (int64(recip)*int64(d.exp[uint8(mx-int32(v))]) + 1<<30) >> 31
			u := int32((p + round) >> shift)
			dst[i] = U(min(max(u+d.outMin, d.outMin), d.outMax))
		}
	}
}

// gemmlowp fixed point on int32 raw values. A value with I integer bits has 31-I fractional
// bits; multiplying Qa by Qb gives Q(a+b) via SaturatingRoundingDoublingHighMul.

// saturatingShiftLeft is gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent.
func saturatingShiftLeft(x int32, e uint) int32 {
	if x > math.MaxInt32>>e {
		return math.MaxInt32
	}
	if x < math.MinInt32>>e {
		return math.MinInt32
	}
	return x << e
}

// expOnIntervalNegQuarterTo0 is gemmlowp's exp_on_interval_between_negative_one_quarter_and_0_excl:
// a Taylor expansion around -1/8, input and output Q0.31.
func expOnIntervalNegQuarterTo0(a int32) int32 {
	const constantTerm = 1895147668 // exp(-1/8)
	const oneThird = 715827883
	x := a + 1<<28 // x = a + 1/8
	x2 := SaturatingRoundingDoublingHighMul(x, x)
	x3 := SaturatingRoundingDoublingHighMul(x2, x)
	x4 := SaturatingRoundingDoublingHighMul(x2, x2)
	x4Over4 := RoundingDivideByPOT(x4, 2)
	poly := RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x4Over4+x3, oneThird)+x2, 1)
	return constantTerm + SaturatingRoundingDoublingHighMul(constantTerm, x+poly)
}

// expOnNegativeValues is gemmlowp's exp_on_negative_values for an input with intBits integer
// bits (a <= 0); the result is Q0.31. The input is split into a remainder in [-1/4, 0) handled
// by the Taylor expansion and a multiple of 1/4 applied bit by bit with constant factors
// exp(-2^k).
func expOnNegativeValues(a int32, intBits int) int32 {
	fracBits := 31 - intBits
	oneQuarter := int32(1) << (fracBits - 2)
	mask := oneQuarter - 1
	aModQuarterMinusQuarter := (a & mask) - oneQuarter
	result := expOnIntervalNegQuarterTo0(saturatingShiftLeft(aModQuarterMinusQuarter, uint(intBits)))
	remainder := aModQuarterMinusQuarter - a
	for _, s := range [...]struct {
		exp  int
		mult int32
	}{{-2, 1672461947}, {-1, 1302514674}, {0, 790015084}, {1, 290630308}, {2, 39332535}, {3, 720401}, {4, 242}} {
		if intBits > s.exp && remainder&(int32(1)<<(fracBits+s.exp)) != 0 {
			result = SaturatingRoundingDoublingHighMul(result, s.mult)
		}
	}
	if intBits > 5 && a < -(int32(1)<<(fracBits+5)) {
		// Below -32 the result is 0 (only reachable with more than 5 integer bits).
		result = 0
	}
	if a == 0 {
		result = math.MaxInt32
	}
	return result
}

// oneOverOnePlusX is gemmlowp's one_over_one_plus_x_for_x_in_0_1: Newton-Raphson division,
// input and output Q0.31, three iterations in Q2.29.
func oneOverOnePlusX(a int32) int32 {
	// RoundingHalfSum(a, One): (a + 2^31-1 + sign) / 2 in 64 bits.
	sum := int64(a) + math.MaxInt32
	sign := int64(1)
	if sum < 0 {
		sign = -1
	}
	halfDen := int32((sum + sign) / 2)
	const c48Over17, cNeg32Over17 = 1515870810, -1010580540 // Q2.29
	x := c48Over17 + SaturatingRoundingDoublingHighMul(halfDen, cNeg32Over17)
	for i := 0; i < 3; i++ {
		hdx := SaturatingRoundingDoublingHighMul(halfDen, x)
		oneMinus := int32(1<<29) - hdx
		x += saturatingShiftLeft(SaturatingRoundingDoublingHighMul(x, oneMinus), 2)
	}
	// ExactMulByPot<-1> reinterprets Q2.29 as Q1.30; Rescale<0> shifts left by one.
	return saturatingShiftLeft(x, 1)
}

// reciprocal is TFLite's GetReciprocal: 1/x for x with intBits integer bits, as a Q0.31 value
// and the number of bits the result must be shifted right by.
func reciprocal(x int32, intBits int) (int32, int) {
	headroomPlusOne := bits.LeadingZeros32(uint32(x))
	bitsOverUnit := intBits - headroomPlusOne
	shiftedMinusOne := int32((uint32(x) << headroomPlusOne) - (uint32(1) << 31))
	return oneOverOnePlusX(shiftedMinusOne), bitsOverUnit
}

// int16 SOFTMAX (the 16x8 scheme) follows TFLite Micro's softmax_common.cc and
// reference_ops::SoftmaxInt16: input differences from the row maximum are rescaled so that
// [-65535, 0] covers [-10, 0], exp comes from a 513-entry interpolated table over [-10, 0], the
// sum of exps is normalised and inverted with a second table of 1/(1+x) over [0, 1], and the
// output is Q0.15 (scale 1/32768, zero point 0).

const int16LUTSize = 513

type softmaxInt16Data struct {
	depth    int
	mult     int32
	shift    int
	expLUT   [int16LUTSize]int16 // exp(x), x in [-10, 0], values in [-1, 1)
	recipLUT [int16LUTSize]int16 // 1/(1+x), x in [0, 1], values in [-1, 1)
}

// maxInt16SoftmaxDepth keeps the int32 sum of up to depth Q0.15 exps (each at most 32767) from
// overflowing; TFLite leaves that case undefined.
const maxInt16SoftmaxDepth = math.MaxInt32 / math.MaxInt16

func prepareSoftmaxInt16(n *tflite.Node, beta float32) error {
	in, out := n.Input(0), n.Output(0)
	if out.DType() != tensor.Int16 {
		return fmt.Errorf("int16 input %q with %s output %q not supported (int16 only)", in.Name(), out.DType(), out.Name())
	}
	inScale, _, err := perTensor(in)
	if err != nil {
		return err
	}
	outScale, outZP, err := perTensor(out)
	if err != nil {
		return err
	}
	// TFLite Micro: output zero point 0 and scale 1/32768 within 0.1%.
	if outZP != 0 || math.Abs(float64(outScale)-1.0/32768) > 0.001/32768 {
		return fmt.Errorf("output %q scale %g zero point %d, want 1/32768 and 0", out.Name(), outScale, outZP)
	}
	d := &softmaxInt16Data{depth: in.Dim(-1)}
	if d.depth > maxInt16SoftmaxDepth {
		return fmt.Errorf("input %q: %d elements on the softmax axis overflow the int32 sum of exps (at most %d)", in.Name(), d.depth, maxInt16SoftmaxDepth)
	}
	// Rescale input differences so that [-65535, 0] maps to [-10, 0], the exp table's domain.
	d.mult, d.shift = QuantizeMultiplier(float64(inScale) * float64(beta) / (10.0 / 65535.0))
	genLUTInt16(func(x float32) float32 { return float32(math.Exp(float64(x))) }, -10, 0, -1, 1, &d.expLUT)
	genLUTInt16(func(x float32) float32 { return 1 / (1 + x) }, 0, 1, -1, 1, &d.recipLUT)
	n.Data = d
	return nil
}

func evalSoftmaxInt16(n *tflite.Node, d *softmaxInt16Data) {
	x, y := n.Input(0).Int16(), n.Output(0).Int16()
	if d.depth == 0 {
		return
	}
	for start := 0; start+d.depth <= len(x); start += d.depth {
		row, dst := x[start:start+d.depth], y[start:start+d.depth]
		mx := int32(math.MinInt16)
		for _, v := range row {
			mx = max(mx, int32(v))
		}
		// The exps (Q0.15) are cached in the output row, as TFLite does.
		var sum int32
		for i, v := range row {
			scaled := MultiplyByQuantizedMultiplier(int32(v)-mx, d.mult, d.shift)
			// Recentre [-65535, 0] on the table's symmetric int16 domain.
			e := lutLookupInt16(int16(min(max(scaled+32767, math.MinInt16), math.MaxInt16)), &d.expLUT)
			dst[i] = e
			sum += int32(e)
		}
		// sum >= the row maximum's exp(0) ≈ 32767, so headroomPlusOne <= 17.
		headroomPlusOne := bits.LeadingZeros32(uint32(sum))
		// Normalise the sum to [1, 2) in Q1.15 (rounded), then x = sum-1 recentred from
		// [0, 65535] to [-32768, 32767] for the 1/(1+x) table.
		shifted := int32((int64(sum)<<(headroomPlusOne-1) + 1<<13) >> 14)
		sym := min(max(shifted-(1<<15+1<<16), math.MinInt16), math.MaxInt16)
		recip := int64(lutLookupInt16(int16(sym), &d.recipLUT))
		rs := 31 - headroomPlusOne
		round := int64(1) << (rs - 1)
		for i, e := range dst {
			r := int32((int64(e)*recip + round) >> rs)
			dst[i] = int16(min(max(r, 0), math.MaxInt16)) // [0, 32767] is [0, 1]
		}
	}
}

// genLUTInt16 is TFLite's gen_lut<float, int16_t, int16_t> (LUTPopulate for int16): 512 samples
// of f over [inMin, inMax] plus one extra for the last slope, scaled so [outMin, outMax] spans
// the int16 range, each sample biased by half the interpolation error at the step's midpoint.
// The arithmetic is float32 as in TFLite Micro; every product is converted explicitly so the
// compiler never fuses a multiply-add, which would round differently.
func genLUTInt16(f func(float32) float32, inMin, inMax, outMin, outMax float32, lut *[int16LUTSize]int16) {
	const steps = int16LUTSize - 1
	step := (inMax - inMin) / steps
	halfStep := step / 2
	scaleInv := float32(65536) / (outMax - outMin)
	round := func(v float32) float32 { return float32(math.Round(float64(v))) } // std::round
	clamp := func(v float32) int16 { return int16(min(max(v, math.MinInt16), math.MaxInt16)) }
	for i := 0; i < steps; i++ {
		x := inMin + float32(float32(i)*step)
		val := f(x)
		mid := f(x + halfStep)
		next := f(inMin + float32(float32(i+1)*step))
		sample := round(float32(val * scaleInv))
		midInterp := round((float32(next*scaleInv) + sample) / 2)
		midVal := round(float32(mid * scaleInv))
		bias := round((midInterp - midVal) / 2)
		lut[i] = clamp(sample - bias)
	}
	lut[steps] = clamp(round(float32(f(inMax) * scaleInv)))
}

// lutLookupInt16 is TFLite's LUTLookup for int16: the top 9 bits index the table, the low 7
// bits interpolate linearly to the next entry (rounded).
func lutLookupInt16(v int16, lut *[int16LUTSize]int16) int16 {
	idx := 256 + int(v>>7)
	off := int32(v & 0x7f)
	base := int32(lut[idx])
	slope := int32(lut[idx+1] - lut[idx]) // int16 arithmetic, as in TFLite
	return int16(base + (slope*off+64)>>7)
}

// LOG_SOFTMAX follows reference_ops::LogSoftmax: float32 as exp/sum/log in float32; int8 with
// TFLite Micro's log_softmax.cc parameters (output scale 16/256, zero point 127, beta 1) and the
// gemmlowp fixed point of LogSoftmaxQuantized: exps of Q5.26 differences summed in Q12.19, the
// log of the sum by log_x_for_x_greater_than_or_equal_to_1, and the output in Q4 steps of 1/16.

type logSoftmaxFloatData struct{ depth int }

type logSoftmaxInt8Data struct {
	depth   int
	mult    int32 // beta*input_scale in Q5.26, a multiplier >= 1
	shift   int
	revMult int32 // its inverse, a multiplier < 1 (shift <= 0)
	revExp  int
	diffMin int32
}

func prepareLogSoftmax(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if in.Rank() < 1 {
		return fmt.Errorf("input %q is a scalar, want rank >= 1", in.Name())
	}
	switch in.DType() {
	case tensor.Float32:
		if err := sameFloatShape(in, out); err != nil {
			return err
		}
		n.Data = &logSoftmaxFloatData{depth: in.Dim(-1)}
		return nil
	case tensor.Int8:
	default:
		return fmt.Errorf("input %q is %s, want float32 or int8", in.Name(), in.DType())
	}
	if out.DType() != tensor.Int8 {
		return fmt.Errorf("int8 input %q with %s output %q, want int8", in.Name(), out.DType(), out.Name())
	}
	if !slices.Equal(in.Shape(), out.Shape()) {
		return fmt.Errorf("input %q has shape %v, output %q has %v", in.Name(), in.Shape(), out.Name(), out.Shape())
	}
	inScale, _, err := perTensor(in)
	if err != nil {
		return err
	}
	outScale, outZP, err := perTensor(out)
	if err != nil {
		return err
	}
	// TFLite: the output covers [-16, 0] exactly, scale 16/256 and zero point 127.
	if outScale != 16.0/256 || outZP != 127 {
		return fmt.Errorf("output %q scale %g zero point %d, want 16/256 and 127", out.Name(), outScale, outZP)
	}
	d := &logSoftmaxInt8Data{depth: in.Dim(-1)}
	// PreprocessLogSoftmaxScalingExp with beta 1: the Q5.26 multiplier must be greater than
	// one (QuantizeMultiplierGreaterThanOne), and its inverse 2^(31-shift)/mult less than one.
	real := min(float64(inScale)*float64(int64(1)<<(31-softmaxScaledDiffIntegerBits)), float64(int64(1)<<31)-1)
	if !(real > 1) {
		return fmt.Errorf("input %q scale %g is too small for LOG_SOFTMAX (want > 2^-26)", in.Name(), inScale)
	}
	d.mult, d.shift = QuantizeMultiplier(real)
	rev := float64(int64(1)<<(31-d.shift)) / float64(d.mult)
	if !(rev > 0 && rev < 1) {
		return fmt.Errorf("input %q scale %g gives a reverse scaling divisor %g outside (0, 1)", in.Name(), inScale, rev)
	}
	d.revMult, d.revExp = QuantizeMultiplier(rev)
	// CalculateInputRadius: differences below -radius have exp() that rounds to zero.
	radius := float64((int64(1)<<softmaxScaledDiffIntegerBits)-1) * float64(int64(1)<<(31-softmaxScaledDiffIntegerBits)) / float64(int64(1)<<d.shift)
	d.diffMin = -int32(math.Floor(radius))
	n.Data = d
	return nil
}

func evalLogSoftmax(n *tflite.Node) error {
	switch d := n.Data.(type) {
	case *logSoftmaxFloatData:
		evalLogSoftmaxFloat(n, d)
	case *logSoftmaxInt8Data:
		evalLogSoftmaxInt8(n, d)
	}
	return nil
}

func evalLogSoftmaxFloat(n *tflite.Node, d *logSoftmaxFloatData) {
	x, y := n.Input(0).Float32(), n.Output(0).Float32()
	if d.depth == 0 {
		return
	}
	for start := 0; start+d.depth <= len(x); start += d.depth {
		row, dst := x[start:start+d.depth], y[start:start+d.depth]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var sum float32
		for _, v := range row {
			sum += float32(math.Exp(float64(v - mx)))
		}
		logSum := float32(math.Log(float64(sum)))
		for i, v := range row {
			dst[i] = v - mx - logSum
		}
	}
}

func evalLogSoftmaxInt8(n *tflite.Node, d *logSoftmaxInt8Data) {
	const outFracShift = 31 - softmaxScaledDiffIntegerBits - 4 // Q5.26 -> Q4 steps of 1/16
	x, y := n.Input(0).Int8(), n.Output(0).Int8()
	if d.depth == 0 {
		return
	}
	for start := 0; start+d.depth <= len(x); start += d.depth {
		row, dst := x[start:start+d.depth], y[start:start+d.depth]
		mx := int32(math.MinInt8)
		for _, v := range row {
			mx = max(mx, int32(v))
		}
		var sum int32 // Q12.19
		for _, v := range row {
			if diff := int32(v) - mx; diff >= d.diffMin {
				e := expOnNegativeValues(MultiplyByQuantizedMultiplier(diff, d.mult, d.shift), softmaxScaledDiffIntegerBits)
				sum += RoundingDivideByPOT(e, softmaxAccumIntegerBits)
			}
		}
		logSum := logXGE1(sum) // Q5.26
		// The smallest difference whose output does not underflow Q5.26 after subtracting
		// logSum; note > below where the sum used >=.
		adjusted := max(d.diffMin-1, MultiplyByQuantizedMultiplier(logSum+math.MinInt32, d.revMult, d.revExp))
		for i, v := range row {
			o := int32(math.MinInt8)
			if diff := int32(v) - mx; diff > adjusted {
				q5 := MultiplyByQuantizedMultiplier(diff, d.mult, d.shift)
				o = min(max(RoundingDivideByPOT(q5-logSum, outFracShift)+math.MaxInt8, math.MinInt8), math.MaxInt8)
			}
			dst[i] = int8(o)
		}
	}
}

// logXGE1 is TFLite's log_x_for_x_greater_than_or_equal_to_1<5>(x) for x in Q12.19 (the sum
// of exps), result Q5.26: log(x) = z*log(2) + log(r) with x = r*2^z, r in [sqrt(1/2), sqrt(2)),
// log(r) from a rational approximation around 2^(-1/4), accumulated in Q6.25.
func logXGE1(x int32) int32 {
	const (
		inBits       = softmaxAccumIntegerBits
		accBits      = 6                     // output integer bits + 1
		log2         = 1488522236            // log(2), Q0.31
		sqrtSqrtHalf = 1805811301            // 2^(-1/4)
		sqrtHalf     = 1518500250            // 2^(-1/2)
		oneQuarter   = 536870912             // 1/4
		alphaN       = 117049297             // 11/240 * 2^(1/4)
		alphaD       = 127690142             // 1/20 * 2^(1/4)
		alphaI       = 1057819769            // 2/2^(1/4) - 2^(1/4)
		alphaF       = 638450708             // 1/4 * 2^(1/4)
		quarterAcc   = oneQuarter >> accBits // Rescale<6>(1/4), exact
	)
	mul := SaturatingRoundingDoublingHighMul
	// x reinterpreted as Q0.31; the exponent is worked out from its leading zeros.
	zaHeadroomPlusOne := bits.LeadingZeros32(uint32(x))
	raTmp := saturatingShiftLeft(x, uint(zaHeadroomPlusOne-1))
	ra := saturatingShiftLeft(mul(raTmp, sqrtHalf), 1)
	zaPow2Adj := saturatingAdd32(saturatingShiftLeft(int32(inBits-zaHeadroomPlusOne), 31-accBits), quarterAcc)
	zb := mul(x, sqrtHalf)
	zbHeadroom := bits.LeadingZeros32(uint32(zb)) - 1
	rb := saturatingShiftLeft(x, uint(zbHeadroom))
	zbPow2Adj := saturatingSub32(saturatingShiftLeft(int32(inBits-zbHeadroom), 31-accBits), quarterAcc)
	r := min(ra, rb)
	zPow2Adj := max(zaPow2Adj, zbPow2Adj)

	p := roundingHalfSum(r, sqrtSqrtHalf)
	q := r - sqrtSqrtHalf
	q += q
	commonSq := mul(q, q)
	num := mul(q, r) + mul(mul(q, commonSq), alphaN)
	denomMinusOne := mul(p, alphaI+q+mul(alphaD, commonSq)) + mul(alphaF, q)
	recipDenom := oneOverOnePlusX(denomMinusOne)
	numScaled := RoundingDivideByPOT(num, accBits) // Rescale<6>
	// Rescale<5> of a Q6 value: a saturating doubling.
	return saturatingShiftLeft(mul(zPow2Adj, log2)+mul(numScaled, recipDenom), 1)
}

func roundingHalfSum(a, b int32) int32 {
	sum := int64(a) + int64(b)
	sign := int64(1)
	if sum < 0 {
		sign = -1
	}
	return int32((sum + sign) / 2)
}

func saturatingAdd32(a, b int32) int32 {
	return int32(min(max(int64(a)+int64(b), math.MinInt32), math.MaxInt32))
}

func saturatingSub32(a, b int32) int32 {
	return int32(min(max(int64(a)-int64(b), math.MinInt32), math.MaxInt32))
}
