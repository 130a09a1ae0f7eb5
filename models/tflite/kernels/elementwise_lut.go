package kernels

import (
	"fmt"
	"math"
	"slices"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
)

// Quantized elementwise kernels with TFLite Micro's reference arithmetic: LOGISTIC and TANH
// (int8 through gemmlowp's fixed-point logistic/tanh, int16 through the 256-entry sigmoid
// table with linear interpolation), HARD_SWISH int8 (reference/hard_swish.h), ABS int8/int16
// (micro/kernels/elementwise.cc), SQUARED_DIFFERENCE int8/int16 (micro/kernels/
// squared_difference.cc) and ADD_N int8 (micro/kernels/add_n.cc, reference/add_n.h).
// Everything a node needs is computed in Prepare; Eval only reads it.

// LOGISTIC and TANH.

type transcData struct {
	// int8 (logistic_common.cc, tanh.cc): x - inZP is rescaled to Q4.27 by mult·2^shift
	// unless it lies outside ±radius, where the result saturates.
	inZP, radius int32
	// int8: Q31 multiplier and exponent; int16: integer multiplier and right shift of the
	// table index computation (mult 3<<shift in the power-of-two case, as Eval rewrites it).
	mult  int32
	shift int
}

// transcKernel is LOGISTIC (tanh false) or TANH: f in float32, TFLite Micro's integer paths
// for int8 and int16.
func transcKernel(name string, tanh bool, f func(float32) float32) tflite.Kernel {
	return tflite.KernelFuncs{
		PrepareFn: func(n *tflite.Node) error {
			in, out, err := unaryIO(n, name)
			if err != nil {
				return err
			}
			d := &transcData{}
			switch in.DType() {
			case tensor.Float32:
				return nil
			case tensor.Int8, tensor.Uint8:
				err = prepareTranscInt8(d, in, out, tanh)
			case tensor.Int16:
				err = prepareTranscInt16(d, in, out, tanh)
			default:
				err = fmt.Errorf("type %s not supported (float32, int8, int16)", in.DType())
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			n.Data = d
			return nil
		},
		EvalFn: func(n *tflite.Node) error {
			in, out := n.Input(0), n.Output(0)
			switch in.DType() {
			case tensor.Float32:
				y := out.Float32()
				for i, v := range in.Float32() {
					y[i] = f(v)
				}
			case tensor.Int8:
				d := n.Data.(*transcData)
				if tanh {
					tanhInt8(d, in.Int8(), out.Int8(), 0)
				} else {
					logisticInt8(d, in.Int8(), out.Int8(), 0)
				}
			case tensor.Uint8:
				// reference_ops::Logistic/Tanh for uint8: the int8 arithmetic on the centred
				// input, the result offset by 128 (255 where int8 saturates at 127).
				d := n.Data.(*transcData)
				if tanh {
					tanhInt8(d, in.Uint8(), out.Uint8(), 128)
				} else {
					logisticInt8(d, in.Uint8(), out.Uint8(), 128)
				}
			case tensor.Int16:
				d := n.Data.(*transcData)
				if tanh {
					tanhLUT16(d.mult, d.shift, in.Int16(), out.Int16())
				} else {
					logisticLUT16(d.mult, d.shift, in.Int16(), out.Int16())
				}
			}
			return nil
		},
	}
}

// prepareTranscInt8 follows CalculateArithmeticOpDataLogistic / tanh.cc for int8: the input
// scale times 2^27 (4 integer bits) split by frexp into a Q31 multiplier and a left shift, and
// the input radius beyond which the function saturates.
func prepareTranscInt8(d *transcData, in, out *tensor.Tensor, tanh bool) error {
	si, zi, so, zo, err := ioQuantParams(in, out)
	if err != nil {
		return err
	}
	// The reference kernels write sigmoid in Q0.8 offset by -128 and tanh in Q0.7: the output
	// must be quantized that way (TFLite Micro checks the logistic zero point, full TFLite the
	// scales too).
	wantZP, wantLog2 := int32(-128), -8
	if tanh {
		wantZP, wantLog2 = 0, -7
	}
	if in.DType() == tensor.Uint8 {
		wantZP += 128
	}
	if l, ok := checkedLog2(so); zo != wantZP || !ok || l != wantLog2 {
		return fmt.Errorf("output %q must have scale 2^%d and zero point %d, has %g and %d", out.Name(), wantLog2, wantZP, so, zo)
	}
	const inputIntegerBits = 4
	frac, exp := math.Frexp(float64(si) * (1 << (31 - inputIntegerBits)))
	q := math.Round(frac * (1 << 31)) // TfLiteRound: half away from zero
	if q == 1<<31 {
		// frac just below 1 rounded up: TFLite's QuantizeMultiplier halves it the same way.
		q /= 2
		exp++
	}
	if exp < 0 {
		// CalculateInputRadius shifts by a negative amount (undefined in C++) and the radius
		// overflows int: only reachable with an input scale below 2^-28.
		return fmt.Errorf("input %q scale %g too small", in.Name(), si)
	}
	d.inZP = zi
	d.mult, d.shift = int32(q), exp
	// CalculateInputRadius(4, shift, 31): floor((2^4-1) * 2^27 / 2^shift) in double.
	d.radius = int32(math.Floor(15 * math.Ldexp(1, 31-inputIntegerBits-exp)))
	return nil
}

// prepareTranscInt16 follows TFLite Micro's int16 Prepare for LOGISTIC and TANH: symmetric
// tensors, output scale 2^-15, and either a power-of-two input scale (2^-12, or 2^-11 for TANH)
// handled by a fixed multiplier of 3, or a general scale rescaled to 1/(3·4096) with an integer
// multiplier below 2^15 and a right shift.
func prepareTranscInt16(d *transcData, in, out *tensor.Tensor, tanh bool) error {
	si, zi, so, zo, err := ioQuantParams(in, out)
	if err != nil {
		return err
	}
	if zi != 0 || zo != 0 {
		return fmt.Errorf("int16 zero points must be 0 (input %d, output %d)", zi, zo)
	}
	if l, ok := checkedLog2(so); !ok || l != -15 {
		return fmt.Errorf("output %q must have scale 2^-15, has %g", out.Name(), so)
	}
	const inputIntegerBits = 3
	l2, pot := checkedLog2(si)
	shift := 15 - inputIntegerBits + l2
	if tanh {
		pot = pot && (shift == 0 || shift == 1)
	} else {
		pot = pot && shift == 0
	}
	if pot {
		// input_multiplier 0 in TFLite; the reference Eval then uses 3 << shift and shift 0.
		d.mult, d.shift = 3<<shift, 0
		return nil
	}
	m := float64(si) * 4096 * 3
	shift = 0
	for m <= 32767.0/2 && shift <= 30 {
		shift++
		m *= 2
	}
	if m > 32767 {
		// TFLITE_DCHECK_LE(input_multiplier, 32767): a larger one overflows the int32 product.
		return fmt.Errorf("input %q scale %g too large (multiplier %g > 32767)", in.Name(), si, m)
	}
	d.mult, d.shift = int32(m), shift // static_cast<int32_t>: truncation
	return nil
}

// logisticInt8 is reference_integer_ops::Logistic for int8 (off 0), and reference_ops::
// Logistic for uint8 (off 128: the same result shifted to the unsigned range).
func logisticInt8[T int8 | uint8](d *transcData, x, y []T, off int32) {
	for i, v := range x {
		in := int32(v) - d.inZP
		switch {
		case in <= -d.radius:
			y[i] = T(math.MinInt8 + off)
		case in >= d.radius:
			y[i] = T(math.MaxInt8 + off)
		default:
			q4 := MultiplyByQuantizedMultiplier(in, d.mult, d.shift)
			// Q0.31 to Q0.8 with rounding, then the output zero point -128.
			r := RoundingDivideByPOT(fixedLogistic(q4, 4), 31-8) - 128
			y[i] = T(clamp32(r, math.MinInt8, math.MaxInt8) + off)
		}
	}
}

// tanhInt8 is reference_integer_ops::Tanh for int8 (output Q0.7, zero point 0; off 0), and
// reference_ops::Tanh for uint8 (zero point 128; off 128).
func tanhInt8[T int8 | uint8](d *transcData, x, y []T, off int32) {
	for i, v := range x {
		in := int32(v) - d.inZP
		switch {
		case in <= -d.radius:
			y[i] = T(math.MinInt8 + off)
		case in >= d.radius:
			y[i] = T(math.MaxInt8 + off)
		default:
			q4 := MultiplyByQuantizedMultiplier(in, d.mult, d.shift)
			r := RoundingDivideByPOT(fixedTanh(q4, 4), 31-7)
			y[i] = T(clamp32(r, math.MinInt8, math.MaxInt8) + off)
		}
	}
}

// fixedLogistic is gemmlowp's logistic on a raw int32 with intBits integer bits; the result
// is Q0.31. 1/(1+e^-|a|) comes from exp_on_negative_values and the Newton-Raphson reciprocal;
// negative inputs use 1 - f(|a|), and zero gives exactly one half.
func fixedLogistic(a int32, intBits int) int32 {
	if a == 0 {
		return 1 << 30
	}
	abs := a
	if a < 0 {
		abs = -a
	}
	pos := oneOverOnePlusX(expOnNegativeValues(-abs, intBits))
	if a > 0 {
		return pos
	}
	return math.MaxInt32 - pos // ResultF::One() - result_if_positive
}

// fixedTanh is gemmlowp's tanh on a raw int32 with intBits integer bits; the result is Q0.31.
// For n = -|a|, -tanh(n) = (1 - e^{2n}) / (1 + e^{2n}); doubling n is ExactMulByPot<1>, which
// keeps the raw value and adds an integer bit.
func fixedTanh(a int32, intBits int) int32 {
	if a == 0 {
		return 0
	}
	n := a
	if a > 0 {
		n = -a
	}
	t := oneMinusXOverOnePlusX(expOnNegativeValues(n, intBits+1))
	if a < 0 {
		return -t
	}
	return t
}

// oneMinusXOverOnePlusX is gemmlowp's one_minus_x_over_one_plus_x_for_x_in_0_1: the same
// Newton-Raphson iteration as oneOverOnePlusX (Q2.29), returning 2·(1/(1+x)) - 1 in Q0.31.
func oneMinusXOverOnePlusX(a int32) int32 {
	sum := int64(a) + math.MaxInt32 // RoundingHalfSum(a, One())
	sign := int64(1)
	if sum < 0 {
		sign = -1
	}
	halfDen := int32((sum + sign) / 2)
	const c48Over17, cNeg32Over17 = 1515870810, -1010580540 // Q2.29
	x := c48Over17 + SaturatingRoundingDoublingHighMul(halfDen, cNeg32Over17)
	for i := 0; i < 3; i++ {
		hdx := SaturatingRoundingDoublingHighMul(halfDen, x)
		x += saturatingShiftLeft(SaturatingRoundingDoublingHighMul(x, int32(1<<29)-hdx), 2)
	}
	return saturatingShiftLeft(x-1<<29, 2) // Rescale<0>(x - F2::One())
}

// logisticLUT16 is reference_integer_ops::Logistic for int16: the input rescaled so that the
// table's 9 fractional index bits cover [-10.7, 10.7], linear interpolation between entries of
// sigmoid_table_uint16 (unsigned arithmetic as in C++), mirrored for negative inputs, output
// Q0.15.
func logisticLUT16(mult int32, shift int, x, y []int16) {
	round := int32(0)
	if shift > 0 {
		round = 1 << (shift - 1)
	}
	for i, v := range x {
		in := (int32(v)*mult + round) >> shift
		abs := absI32(in)
		uh := abs >> 9
		var r uint32
		if uh >= 255 {
			r = 0x7FFF << 10 // saturate
		} else {
			ua, ub := uint32(seqSigmoidLUT[uh]), uint32(seqSigmoidLUT[uh+1])
			r = ua<<9 + (abs&0x1ff)*(ub-ua)
		}
		if in >= 0 {
			r += 1 << 9
		} else {
			r = 1<<(16+9) - r + 1<<9 - 1
		}
		y[i] = int16(r >> 10)
	}
}

// tanhLUT16 is reference_integer_ops::Tanh for int16: tanh(x) = 2·sigmoid(2x) - 1 on the same
// table with 8 fractional index bits, output Q0.15.
func tanhLUT16(mult int32, shift int, x, y []int16) {
	round := int32(0)
	if shift > 0 {
		round = 1 << (shift - 1)
	}
	for i, v := range x {
		in := (int32(v)*mult + round) >> shift
		abs := absI32(in)
		uh := abs >> 8
		var r int32
		if uh >= 255 {
			r = 0xFFFF << 8 // saturate
		} else {
			ua, ub := uint32(seqSigmoidLUT[uh]), uint32(seqSigmoidLUT[uh+1])
			r = int32(ua<<8 + (abs&0xFF)*(ub-ua))
		}
		if in >= 0 {
			r = r - 1<<(14+9) + 1<<(9-2)
		} else {
			r = -r + 1<<(14+9) + 1<<(9-2) - 1
		}
		y[i] = int16(r >> (9 - 1)) // arithmetic shift of a signed value
	}
}

// HARD_SWISH int8: x·relu6(x+3)/6 in 16-bit fixed point (reference_ops::HardSwish with the
// parameters of TFLite Micro's hard_swish_common.cc).

type hardSwishData struct {
	inZP, outZP int32
	outMult     int16 // output_multiplier_fixedpoint_int16
	outExp      int   // output_multiplier_exponent, <= 0
	reluMult    int16 // reluish_multiplier_fixedpoint_int16
	reluExp     int   // reluish_multiplier_exponent
	qMin, qMax  int32
	floatOnly   bool
}

func prepareHardSwish(n *tflite.Node) error {
	in, out, err := unaryIO(n, "HARD_SWISH")
	if err != nil {
		return err
	}
	switch in.DType() {
	case tensor.Float32:
		n.Data = &hardSwishData{floatOnly: true}
		return nil
	case tensor.Int8:
	default:
		return fmt.Errorf("HARD_SWISH: type %s not supported (float32, int8)", in.DType())
	}
	si, zi, so, zo, err := ioQuantParams(in, out)
	if err != nil {
		return fmt.Errorf("HARD_SWISH: %w", err)
	}
	d := &hardSwishData{inZP: zi, outZP: zo, qMin: math.MinInt8, qMax: math.MaxInt8}
	// The scales are float32 products and quotients, widened only for QuantizeMultiplier.
	hires := (1.0 / 128.0) * si
	const reluish = float32(3.0 / 32768.0)
	om, ok := finiteRatio(hires, so)
	if !ok {
		return fmt.Errorf("HARD_SWISH: input %q scale %g and output %q scale %g give no usable multiplier", in.Name(), si, out.Name(), so)
	}
	q, e := QuantizeMultiplier(om)
	if e > 0 {
		// TF_LITE_ENSURE(output_multiplier_exponent <= 0).
		return fmt.Errorf("HARD_SWISH: output %q scale %g too small for input scale %g", out.Name(), so, si)
	}
	d.outMult, d.outExp = downScaleMultiplier16(q), e
	rm, _ := finiteRatio(hires, reluish)
	q, e = QuantizeMultiplier(rm)
	d.reluMult, d.reluExp = downScaleMultiplier16(q), e
	n.Data = d
	return nil
}

// finiteRatio is a/b in float32, widened, and whether it is finite.
func finiteRatio(a, b float32) (float64, bool) {
	r := float64(a / b)
	return r, !math.IsNaN(r) && !math.IsInf(r, 0)
}

// downScaleMultiplier16 is DownScaleInt32ToInt16Multiplier: a Q31 multiplier rounded to Q15.
func downScaleMultiplier16(q int32) int16 {
	const roundingOffset = 1 << 15
	if q >= math.MaxInt32-roundingOffset {
		return math.MaxInt16
	}
	return int16((q + roundingOffset) >> 16)
}

func evalHardSwish(n *tflite.Node) error {
	d := n.Data.(*hardSwishData)
	in, out := n.Input(0), n.Output(0)
	if d.floatOnly {
		y := out.Float32()
		for i, v := range in.Float32() {
			y[i] = hardSwishF32(v)
		}
		return nil
	}
	y := out.Int8()
	for i, v := range in.Int8() {
		y[i] = int8(d.quant(int32(v)))
	}
	return nil
}

// hardSwishF32 is reference_ops::HardSwish in float32: x * min(6, max(0, x + 3)) / 6.
func hardSwishF32(v float32) float32 { return v * min(6, max(0, v+3)) / 6 }

// quant computes one element in int16 arithmetic, as reference_ops::HardSwish does.
func (d *hardSwishData) quant(x int32) int32 {
	inV := int16(x - d.inZP)
	hires := inV * (1 << 7) // |x - zp| <= 255, so this fits int16
	preshiftOut := srdhm16(hires, d.outMult)
	relu := hires
	if d.reluExp > 0 {
		relu = saturatingLeftShift16(relu, d.reluExp-1)
	}
	relu = srdhm16(relu, d.reluMult)
	if d.reluExp > 0 {
		// The last bit of left shift: any saturation that matters happens here.
		relu = saturatingLeftShift16(relu, 1)
	}
	if d.reluExp < 0 {
		relu = roundingDivideByPOT16(relu, -d.reluExp)
	}
	relu = int16((int32(relu) + 1<<15) >> 1) // [-1, 1] to [0, 1]
	pre := sdhm16(relu, preshiftOut)
	o := roundingDivideByPOT16(pre, -d.outExp)
	o = int16(int32(o) + d.outZP) // int16 += int: truncated back to int16
	return clamp32(int32(o), d.qMin, d.qMax)
}

// srdhm16 is gemmlowp's SaturatingRoundingDoublingHighMul on int16.
func srdhm16(a, b int16) int16 {
	if a == b && a == math.MinInt16 {
		return math.MaxInt16
	}
	ab := int32(a) * int32(b)
	nudge := int32(1 << 14)
	if ab < 0 {
		nudge = 1 - 1<<14
	}
	return int16((ab + nudge) / (1 << 15))
}

// sdhm16 is hard_swish.h's SaturatingDoublingHighMul: like srdhm16 but truncating toward zero.
func sdhm16(a, b int16) int16 {
	if a == b && a == math.MinInt16 {
		return math.MaxInt16
	}
	return int16(int32(a) * int32(b) / (1 << 15))
}

// saturatingLeftShift16 is hard_swish.h's SaturatingLeftShift.
func saturatingLeftShift16(v int16, amount int) int16 {
	r := int64(v) << amount
	return int16(min(max(r, math.MinInt16), math.MaxInt16))
}

// roundingDivideByPOT16 is gemmlowp's RoundingDivideByPOT instantiated for int16: the mask
// (2^e - 1) is truncated to int16 and the sums wrap in int16, as the C++ template does.
func roundingDivideByPOT16(x int16, e int) int16 {
	mask := int16(int64(1)<<e - 1)
	var neg int16
	if x < 0 {
		neg = 1
	}
	threshold := mask>>1 + neg
	r := int16(int32(x) >> e)
	if x&mask > threshold {
		r++
	}
	return r
}

// ABS: float32; int8 and quantized int16 through |x - inZP|, rescaled by in/out scale when the
// scales differ (AbsEvalQuantized); unquantized int16 is a plain std::abs.

type absData struct {
	dt          tensor.DType
	plain16     bool
	rescale     bool
	inZP, outZP int32
	mult        int32
	shift       int
	qMin, qMax  int32
}

func absKernel() tflite.Kernel {
	return tflite.KernelFuncs{PrepareFn: prepareAbs, EvalFn: evalAbs}
}

func prepareAbs(n *tflite.Node) error {
	in, out, err := unaryIO(n, "ABS")
	if err != nil {
		return err
	}
	d := &absData{dt: in.DType()}
	switch in.DType() {
	case tensor.Float32:
	case tensor.Int16, tensor.Int8:
		if in.DType() == tensor.Int16 && in.Quant() == nil {
			d.plain16 = true
			break
		}
		si, zi, so, zo, err := ioQuantParams(in, out)
		if err != nil {
			return fmt.Errorf("ABS: %w", err)
		}
		if in.DType() == tensor.Int16 && (zi != 0 || zo != 0) {
			return fmt.Errorf("ABS: int16 zero points must be 0 (input %d, output %d)", zi, zo)
		}
		d.inZP, d.outZP = zi, zo
		d.qMin, d.qMax = qrange(in.DType())
		if si != so { // needs_rescale compares the float32 scales exactly
			d.rescale = true
			if d.mult, d.shift, err = quantizeMultiplierChecked(float64(si) / float64(so)); err != nil {
				return fmt.Errorf("ABS: %w", err)
			}
		}
	default:
		return fmt.Errorf("ABS: type %s not supported (float32 only, or quantized int8/int16)", in.DType())
	}
	n.Data = d
	return nil
}

func evalAbs(n *tflite.Node) error {
	d := n.Data.(*absData)
	in, out := n.Input(0), n.Output(0)
	switch {
	case d.dt == tensor.Float32:
		y := out.Float32()
		for i, v := range in.Float32() {
			y[i] = float32(math.Abs(float64(v)))
		}
	case d.plain16:
		// std::abs on the promoted int, stored back to int16: |-32768| wraps to -32768.
		y := out.Int16()
		for i, v := range in.Int16() {
			y[i] = int16(absI32(int32(v)))
		}
	case d.dt == tensor.Int8:
		absQuant(d, in.Int8(), out.Int8())
	default:
		absQuant(d, in.Int16(), out.Int16())
	}
	return nil
}

func absQuant[T int8 | int16](d *absData, x, y []T) {
	for i, v := range x {
		a := int32(absI32(int32(v) - d.inZP))
		if d.rescale {
			a = MultiplyByQuantizedMultiplier(a, d.mult, d.shift)
		}
		y[i] = T(clamp32(a+d.outZP, d.qMin, d.qMax))
	}
}

// SQUARED_DIFFERENCE: int8 and int16 (TFLite Micro's squared_difference.cc): both inputs
// rescaled to twice the larger scale with left_shift bits of headroom (7 for int8, 0 for
// int16), the difference squared in int32 and rescaled to the output. Other types go to the
// generic binary kernel.

type sqDiffData struct {
	bc                     Broadcast
	leftShift              int
	in1Off, in2Off, outOff int32
	in1Mult, in2Mult       int32
	in1Shift, in2Shift     int
	outMult                int32
	outShift               int
	qMin, qMax             int32
}

func sqDiffKernel() tflite.Kernel {
	return tflite.KernelFuncs{PrepareFn: prepareSqDiff, EvalFn: evalSqDiff}
}

func prepareSqDiff(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return fmt.Errorf("SQUARED_DIFFERENCE: %w", err)
	}
	a, b, out := n.Input(0), n.Input(1), n.Output(0)
	if dt := out.DType(); dt != tensor.Int8 && dt != tensor.Int16 {
		return prepareBinary(n, binSqDiff)
	}
	if a.DType() != b.DType() || a.DType() != out.DType() {
		return fmt.Errorf("SQUARED_DIFFERENCE: input %q %s, input %q %s, output %q %s: types must match", a.Name(), a.DType(), b.Name(), b.DType(), out.Name(), out.DType())
	}
	shape, err := BroadcastShape(a.Shape(), b.Shape())
	if err != nil {
		return fmt.Errorf("SQUARED_DIFFERENCE: inputs %q and %q: %w", a.Name(), b.Name(), err)
	}
	out.SetShape(shape)
	d := &sqDiffData{}
	if d.bc, err = NewBroadcast(shape, a.Shape(), b.Shape()); err != nil {
		return fmt.Errorf("SQUARED_DIFFERENCE: %w", err)
	}
	if !d.bc.Flat && len(shape) > 4 {
		// TFLite (Micro) broadcasts quantized SQUARED_DIFFERENCE with
		// BroadcastBinaryFunction4DSlow; same-shape inputs of any rank run flat.
		return fmt.Errorf("SQUARED_DIFFERENCE: broadcasting %v against %v needs rank <= 4", a.Shape(), b.Shape())
	}
	if err := prepareSqDiffQuant(d, a, b, out); err != nil {
		return fmt.Errorf("SQUARED_DIFFERENCE: %w", err)
	}
	n.Data = d
	return nil
}

func prepareSqDiffQuant(d *sqDiffData, a, b, out *tensor.Tensor) error {
	s1, z1, err := quantParams(a)
	if err != nil {
		return err
	}
	s2, z2, err := quantParams(b)
	if err != nil {
		return err
	}
	so, zo, err := quantParams(out)
	if err != nil {
		return err
	}
	d.leftShift = 7 // 255² · 2^14 still fits int32
	if out.DType() == tensor.Int16 {
		if z1 != 0 || z2 != 0 || zo != 0 {
			return fmt.Errorf("int16 zero points must be 0 (got %d, %d, %d)", z1, z2, zo)
		}
		d.leftShift = 0
	}
	d.in1Off, d.in2Off, d.outOff = -z1, -z2, zo
	d.qMin, d.qMax = qrange(out.DType())
	twiceMax := 2 * float64(max(s1, s2))
	if d.in1Mult, d.in1Shift, err = quantizeMultiplierSmallerThanOne(float64(s1) / twiceMax); err != nil {
		return err
	}
	if d.in2Mult, d.in2Shift, err = quantizeMultiplierSmallerThanOne(float64(s2) / twiceMax); err != nil {
		return err
	}
	// (1 << 2·left_shift) * output scale is an int times a float: a float32 product.
	den := float64(float32(int32(1)<<(2*d.leftShift)) * so)
	if d.outMult, d.outShift, err = quantizeMultiplierChecked(twiceMax * twiceMax / den); err != nil {
		return fmt.Errorf("output %q scale %g: %w", out.Name(), so, err)
	}
	return nil
}

func evalSqDiff(n *tflite.Node) error {
	d, ok := n.Data.(*sqDiffData)
	if !ok {
		return evalBinary(n)
	}
	a, b, out := n.Input(0), n.Input(1), n.Output(0)
	if out.DType() == tensor.Int8 {
		sqDiffQuant(d, a.Int8(), b.Int8(), out.Int8())
	} else {
		sqDiffQuant(d, a.Int16(), b.Int16(), out.Int16())
	}
	return nil
}

func sqDiffQuant[T int8 | int16](d *sqDiffData, x, y, z []T) {
	d.bc.Each2(func(o, i, j int) {
		sa := MultiplyByQuantizedMultiplier((int32(x[i])+d.in1Off)*(1<<d.leftShift), d.in1Mult, d.in1Shift)
		sb := MultiplyByQuantizedMultiplier((int32(y[j])+d.in2Off)*(1<<d.leftShift), d.in2Mult, d.in2Shift)
		diff := sa - sb
		r := MultiplyByQuantizedMultiplier(diff*diff, d.outMult, d.outShift) + d.outOff
		z[o] = T(clamp32(r, d.qMin, d.qMax))
	})
}

// ADD_N int8 (TFLite Micro's add_n.cc, reference_ops::AddN): every input shares one scale and
// zero point; each is rescaled with 20 bits of headroom to half its scale, summed in int32
// and rescaled to the output. Other types go to the generic ADD_N kernel.

type addNData struct {
	inOff, outOff int32
	inMult        int32
	inShift       int
	outMult       int32
	outShift      int
	leftShift     int
}

func addNKernel() tflite.Kernel {
	return tflite.KernelFuncs{PrepareFn: prepareAddNAny, EvalFn: evalAddNAny}
}

func prepareAddNAny(n *tflite.Node) error {
	if len(n.Inputs) == 0 || n.Input(0) == nil || n.Input(0).DType() != tensor.Int8 {
		return prepareAddN(n)
	}
	if len(n.Inputs) < 2 {
		// add_n.cc: TF_LITE_ENSURE(num_inputs >= 2).
		return fmt.Errorf("ADD_N: %d inputs, want at least 2", len(n.Inputs))
	}
	if err := n.CheckIO(len(n.Inputs), len(n.Inputs), 1); err != nil {
		return fmt.Errorf("ADD_N: %w", err)
	}
	first, out := n.Input(0), n.Output(0)
	s0, z0, err := quantParams(first)
	if err != nil {
		return fmt.Errorf("ADD_N: %w", err)
	}
	for i, in := range n.Inputs[1:] {
		if in.DType() != tensor.Int8 {
			return fmt.Errorf("ADD_N: input %d %q is %s, input 0 is int8", i+1, in.Name(), in.DType())
		}
		if !slices.Equal(in.Shape(), first.Shape()) {
			return fmt.Errorf("ADD_N: input %d %q has shape %v, input 0 has %v", i+1, in.Name(), in.Shape(), first.Shape())
		}
		s, z, err := quantParams(in)
		if err != nil {
			return fmt.Errorf("ADD_N: %w", err)
		}
		if s != s0 || z != z0 {
			return fmt.Errorf("ADD_N: input %d %q quantization (%g, %d) differs from input 0 (%g, %d)", i+1, in.Name(), s, z, s0, z0)
		}
	}
	if out.DType() != tensor.Int8 {
		return fmt.Errorf("ADD_N: output %q is %s, inputs int8", out.Name(), out.DType())
	}
	so, zo, err := quantParams(out)
	if err != nil {
		return fmt.Errorf("ADD_N: %w", err)
	}
	out.SetShape(first.Shape())
	d := &addNData{inOff: -z0, outOff: zo, leftShift: 20}
	twiceMax := 2 * float64(s0)
	if d.inMult, d.inShift, err = quantizeMultiplierSmallerThanOne(float64(s0) / twiceMax); err != nil {
		return fmt.Errorf("ADD_N: %w", err)
	}
	if d.outMult, d.outShift, err = quantizeMultiplierSmallerThanOne(twiceMax / (float64(int32(1)<<d.leftShift) * float64(so))); err != nil {
		return fmt.Errorf("ADD_N: output %q scale %g too small for input scale %g: %w", out.Name(), so, s0, err)
	}
	n.Data = d
	return nil
}

func evalAddNAny(n *tflite.Node) error {
	d, ok := n.Data.(*addNData)
	if !ok {
		return evalAddN(n)
	}
	z := n.Output(0).Int8()
	for i := range z {
		// reference_ops::AddN starts the sum from the rescaled input offset (its "x = 0" is
		// params.input1_offset), then adds every rescaled input.
		acc := MultiplyByQuantizedMultiplier(d.inOff*(1<<d.leftShift), d.inMult, d.inShift)
		for _, in := range n.Inputs {
			v := d.inOff + int32(in.Int8()[i])
			acc += MultiplyByQuantizedMultiplier(v*(1<<d.leftShift), d.inMult, d.inShift)
		}
		r := MultiplyByQuantizedMultiplier(acc, d.outMult, d.outShift) + d.outOff
		z[i] = int8(clamp32(r, math.MinInt8, math.MaxInt8))
	}
	return nil
}
