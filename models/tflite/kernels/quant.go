package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Fixed-point helpers with exactly the arithmetic of TFLite's reference kernels
// (kernels/internal/quantization_util.cc, common.h, gemmlowp fixedpoint.h): integer kernels
// built on them are bit-exact with TFLite and TFLite Micro.

// QuantizeMultiplier splits a real multiplier into a Q31 fixed-point value and a power-of-two
// exponent: m ≈ q * 2^(shift-31), q in [2^30, 2^31).
func QuantizeMultiplier(m float64) (q int32, shift int) {
	if m == 0 {
		return 0, 0
	}
	frac, exp := math.Frexp(m)
	qf := math.Round(frac * (1 << 31)) // std::round: half away from zero
	if qf == 1<<31 {
		qf /= 2
		exp++
	}
	if exp < -31 {
		return 0, 0
	}
	if exp > 30 {
		// TFLite rejects multipliers ≥ 2^30; callers check QuantizeMultiplier's range.
		exp = 30
		qf = (1 << 31) - 1
	}
	return int32(qf), exp
}

// SaturatingRoundingDoublingHighMul returns the high 32 bits of 2*a*b, rounded to nearest,
// saturating the single overflow case a == b == MinInt32.
func SaturatingRoundingDoublingHighMul(a, b int32) int32 {
	if a == b && a == math.MinInt32 {
		return math.MaxInt32
	}
	ab := int64(a) * int64(b)
	nudge := int64(1 << 30)
	if ab < 0 {
		nudge = 1 - (1 << 30)
	}
	return int32((ab + nudge) / (1 << 31)) // Go and C++ both truncate toward zero
}

// RoundingDivideByPOT divides by 2^exp rounding to nearest, ties away from zero.
func RoundingDivideByPOT(x int32, exp int) int32 {
	mask := int32(1)<<exp - 1
	rem := x & mask
	threshold := mask >> 1
	if x < 0 {
		threshold++
	}
	r := x >> exp
	if rem > threshold {
		r++
	}
	return r
}

// MultiplyByQuantizedMultiplier computes x * q * 2^(shift-31) with TFLite's rounding.
func MultiplyByQuantizedMultiplier(x, q int32, shift int) int32 {
	left, right := 0, 0
	if shift > 0 {
		left = shift
	} else {
		right = -shift
	}
	return RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x*(int32(1)<<left), q), right)
}

// qrange is the representable range of an integer dtype.
func qrange(d tensor.DType) (lo, hi int32) {
	switch d {
	case tensor.Int8:
		return math.MinInt8, math.MaxInt8
	case tensor.Uint8:
		return 0, math.MaxUint8
	case tensor.Int16:
		return math.MinInt16, math.MaxInt16
	}
	return math.MinInt32, math.MaxInt32
}

// quantActivationRange is CalculateActivationRangeQuantized: the fused activation's bounds in
// the output's quantized units.
func quantActivationRange(act schema.Activation, out *tensor.Tensor) (lo, hi int32, err error) {
	lo, hi = qrange(out.DType())
	q := out.Quant()
	if q == nil {
		return 0, 0, fmt.Errorf("output %q is not quantized", out.Name())
	}
	scale, zp := q.Scale[0], int32(q.ZeroPoint[0])
	quant := func(f float32) int32 { return zp + int32(math.Round(float64(f/scale))) }
	switch act {
	case schema.ActivationNone:
	case schema.ActivationRelu:
		lo = max(lo, quant(0))
	case schema.ActivationRelu6:
		lo, hi = max(lo, quant(0)), min(hi, quant(6))
	case schema.ActivationReluN1To1:
		lo, hi = max(lo, quant(-1)), min(hi, quant(1))
	default:
		return 0, 0, fmt.Errorf("fused activation %d not supported for quantized ops", act)
	}
	return lo, hi, nil
}

// floatActivationRange is CalculateActivationRange for float kernels.
func floatActivationRange(act schema.Activation) (lo, hi float32, err error) {
	switch act {
	case schema.ActivationNone:
		return float32(math.Inf(-1)), float32(math.Inf(1)), nil
	case schema.ActivationRelu:
		return 0, float32(math.Inf(1)), nil
	case schema.ActivationRelu6:
		return 0, 6, nil
	case schema.ActivationReluN1To1:
		return -1, 1, nil
	}
	return 0, 0, fmt.Errorf("fused activation %d not supported", act)
}

func clampF(v, lo, hi float32) float32 {
	// max/min order as in TFLite's ActivationFunctionWithMinMax: min(max(x, lo), hi).
	if v < lo {
		v = lo
	}
	if v > hi {
		v = hi
	}
	return v
}

// perTensor returns the single scale and zero point of t, or an error naming t.
func perTensor(t *tensor.Tensor) (float32, int32, error) {
	q := t.Quant()
	if q == nil || len(q.Scale) == 0 {
		return 0, 0, fmt.Errorf("tensor %q has no quantization", t.Name())
	}
	if len(q.Scale) != 1 {
		return 0, 0, fmt.Errorf("tensor %q: per-channel quantization not supported here", t.Name())
	}
	return q.Scale[0], int32(q.ZeroPoint[0]), nil
}
