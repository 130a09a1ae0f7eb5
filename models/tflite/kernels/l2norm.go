package kernels

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// L2_NORMALIZATION over the last dimension (reference_ops::L2Normalization for float32,
// reference_integer_ops::L2Normalization for int8 and reference_ops' uint8 version, with
// GetInvSqrtQuantizedMultiplierExp).

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpL2Normalization, 1, 2, tflite.KernelFuncs{PrepareFn: prepareL2Norm, EvalFn: evalL2Norm})
	})
}

type l2normData struct {
	outer, depth int
	inZP         int32
}

func prepareL2Norm(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if o, ok := n.Options.(*tflite.L2NormOptions); ok && o.Activation != schema.ActivationNone {
		// TFLite Micro's l2norm.cc: fused activations are not supported.
		return fmt.Errorf("fused activation %d not supported", o.Activation)
	}
	if in.Rank() < 1 || in.Rank() > 4 {
		return fmt.Errorf("input %q has rank %d, want 1 to 4", in.Name(), in.Rank())
	}
	if out.DType() != in.DType() {
		return fmt.Errorf("input %q is %s, output %q is %s", in.Name(), in.DType(), out.Name(), out.DType())
	}
	d := &l2normData{depth: in.Dim(-1)}
	if d.depth > 0 {
		d.outer = in.NumElements() / d.depth
	}
	switch in.DType() {
	case tensor.Float32:
	case tensor.Int8, tensor.Uint8:
		_, zp, err := perTensor(in)
		if err != nil {
			return err
		}
		oScale, oZP, err := perTensor(out)
		if err != nil {
			return err
		}
		// The quantized output is fixed at scale 1/128, zero point 0 for int8 and 128 for
		// uint8 (TFLite's Prepare).
		wantZP := int32(0)
		if in.DType() == tensor.Uint8 {
			wantZP = 128
		}
		if oScale != 1.0/128 || oZP != wantZP {
			return fmt.Errorf("output %q must have scale 1/128 and zero point %d, has %g and %d", out.Name(), wantZP, oScale, oZP)
		}
		d.inZP = zp
	default:
		return fmt.Errorf("input %q: type %s not supported (float32, int8, uint8)", in.Name(), in.DType())
	}
	if err := setOutShape(out, in.Shape()); err != nil {
		return err
	}
	n.Data = d
	return nil
}

func evalL2Norm(n *tflite.Node) error {
	d := n.Data.(*l2normData)
	in, out := n.Input(0), n.Output(0)
	if in.DType() == tensor.Float32 {
		x, y := in.Float32(), out.Float32()
		for o := 0; o < d.outer; o++ {
			row := x[o*d.depth : (o+1)*d.depth]
			var sq float32
			for _, v := range row {
				sq += float32(v * v)
			}
			// epsilon 1e-6 keeps an all-zero row at zero (reference L2Normalization).
			norm := max(float32(math.Sqrt(float64(sq))), 1e-6)
			for i, v := range row {
				y[o*d.depth+i] = v / norm
			}
		}
		return nil
	}
	if in.DType() == tensor.Uint8 {
		l2normQuant(d, in.Uint8(), out.Uint8(), 128)
		return nil
	}
	l2normQuant(d, in.Int8(), out.Int8(), 0)
	return nil
}

// l2normQuant is reference_integer_ops::L2Normalization for int8 (off 0) and reference_ops::
// L2Normalization for uint8 (off 128: the same Q0.7 result around the zero point 128).
func l2normQuant[T int8 | uint8](d *l2normData, x, y []T, off int32) {
	for o := 0; o < d.outer; o++ {
		row := x[o*d.depth : (o+1)*d.depth]
		var acc int32
		for _, v := range row {
			c := int32(v) - d.inZP
			acc += c * c
		}
		mult, shift := invSqrtQuantizedMultiplierExp(acc, -1)
		for i, v := range row {
			// Output in Q0.7: the 1/128 output scale is folded into the shift.
			r := MultiplyByQuantizedMultiplier(int32(v)-d.inZP, mult, shift+7)
			y[o*d.depth+i] = T(min(max(r, math.MinInt8), math.MaxInt8) + off)
		}
	}
}

// invSqrtQuantizedMultiplierExp is GetInvSqrtQuantizedMultiplierExp: 1/sqrt(x) as a Q31
// multiplier and shift by five Newton-Raphson steps in gemmlowp fixed point (3 integer bits).
func invSqrtQuantizedMultiplierExp(x int32, reverseShift int) (int32, int) {
	if x <= 1 {
		return math.MaxInt32, 0
	}
	shift := 11
	for x >= 1<<29 {
		x /= 4
		shift++
	}
	maxLeftShiftBits := bits.LeadingZeros32(uint32(x)) - 1
	leftShiftBitPairs := maxLeftShiftBits/2 - 1
	shift -= leftShiftBitPairs
	x <<= 2 * leftShiftBitPairs
	// F3 values: raw int32 with 3 integer bits.
	input := x >> 1
	halfInput := RoundingDivideByPOT(input, 1)
	const halfThree = (1 << 28) + (1 << 27) // 1.5 in F3
	v := int32(1 << 28)                     // F3 one
	for i := 0; i < 5; i++ {
		x2 := SaturatingRoundingDoublingHighMul(v, v)         // F6
		x3 := SaturatingRoundingDoublingHighMul(x2, v)        // F9
		x3 = satShiftLeft(x3, 6)                              // Rescale<3>: F9 → F3
		a := SaturatingRoundingDoublingHighMul(halfThree, v)  // F6
		b := SaturatingRoundingDoublingHighMul(halfInput, x3) // F6
		v = satShiftLeft(a-b, 3)                              // F6 → F3
	}
	const halfSqrt2 = 1518500250 // sqrt(2)/2 in F0
	v = SaturatingRoundingDoublingHighMul(v, halfSqrt2)
	if shift < 0 {
		v <<= -shift
		shift = 0
	}
	return v, shift * reverseShift
}

// satShiftLeft is gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent.
func satShiftLeft(x int32, e int) int32 {
	threshold := int32(1)<<(31-e) - 1
	switch {
	case x > threshold:
		return math.MaxInt32
	case x < -threshold:
		return math.MinInt32
	}
	return x << e
}
