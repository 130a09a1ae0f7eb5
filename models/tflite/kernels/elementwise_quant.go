package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
)

// Fixed-point helpers of the elementwise family that quant.go does not have.

// checkedLog2 is TFLite's CheckedLog2 (quantization_util.h): log2(x) in float32, rounded, and
// whether x is a power of two within 1e-3 of the exponent.
func checkedLog2(x float32) (int, bool) {
	l := float32(math.Log(float64(x))) * (1 / float32(math.Log(2)))
	r := float32(math.Round(float64(l)))
	return int(r), float32(math.Abs(float64(l-r))) < 1e-3
}

// quantizeMultiplierSmallerThanOne is QuantizeMultiplierSmallerThanOneExp: a multiplier in
// [0, 1) as a Q31 value and a right shift (shift <= 0).
func quantizeMultiplierSmallerThanOne(m float64) (int32, int, error) {
	if !(m >= 0 && m < 1) {
		return 0, 0, fmt.Errorf("multiplier %g outside [0, 1)", m)
	}
	q, s := QuantizeMultiplier(m)
	if s > 0 {
		return 0, 0, fmt.Errorf("multiplier %g outside [0, 1)", m)
	}
	return q, s, nil
}

// quantizeMultiplierChecked is QuantizeMultiplier with TFLite's implicit limits: a finite
// multiplier whose exponent fits the 32-bit shift arithmetic.
func quantizeMultiplierChecked(m float64) (int32, int, error) {
	if math.IsNaN(m) || math.IsInf(m, 0) || m < 0 {
		return 0, 0, fmt.Errorf("multiplier %g is not a finite non-negative number", m)
	}
	if m >= 1<<30 {
		return 0, 0, fmt.Errorf("multiplier %g too large", m)
	}
	q, s := QuantizeMultiplier(m)
	return q, s, nil
}

// quantParams returns the per-tensor scale and zero point of t and checks the zero point lies
// in the dtype's range (TFLite's kernels assume it).
func quantParams(t *tensor.Tensor) (float32, int32, error) {
	s, zp, err := perTensor(t)
	if err != nil {
		return 0, 0, err
	}
	if !(s > 0) || math.IsInf(float64(s), 0) {
		return 0, 0, fmt.Errorf("tensor %q has scale %g", t.Name(), s)
	}
	lo, hi := qrange(t.DType())
	if zp < lo || zp > hi {
		return 0, 0, fmt.Errorf("tensor %q zero point %d outside %s range", t.Name(), zp, t.DType())
	}
	return s, zp, nil
}

// ioQuantParams is quantParams of an op's input and of its output.
func ioQuantParams(in, out *tensor.Tensor) (si float32, zi int32, so float32, zo int32, err error) {
	if si, zi, err = quantParams(in); err != nil {
		return 0, 0, 0, 0, err
	}
	if so, zo, err = quantParams(out); err != nil {
		return 0, 0, 0, 0, err
	}
	return si, zi, so, zo, nil
}

// clampToType clamps v to [lo, hi] (already within the dtype's range).
func clamp32(v, lo, hi int32) int32 { return min(max(v, lo), hi) }
