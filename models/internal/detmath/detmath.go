// Package detmath holds the few transcendental functions the simulator and the trainer need,
// written so that every platform computes bit-identical results.
//
// The math package's Exp has assembly on some architectures and its pure-Go code may be
// compiled with fused multiply-adds on arm64, ppc64 and s390x, so its last bit can differ
// between machines. The sample model must regenerate byte-identically everywhere, so these
// versions use only +, -, *, / (each rounded by an explicit float64 conversion, which the Go
// spec says prevents fusion) and exact operations (Floor, Ldexp).
package detmath

import "math"

// sinCoef[k] = (-1)^k / (2k+1)!, enough terms for full float64 precision on [-pi/2, pi/2].
var sinCoef = [...]float64{
	1,
	-1.0 / 6,
	1.0 / 120,
	-1.0 / 5040,
	1.0 / 362880,
	-1.0 / 39916800,
	1.0 / 6227020800,
	-1.0 / 1307674368000,
	1.0 / 355687428096000,
	-1.0 / 121645100408832000,
	1.0 / 51090942171709440000,
	-1.0 / 25852016738884976640000,
}

// Sin returns sin(x). It is accurate to a few ulp for |x| up to about 1e6; callers keep their
// phases small (the simulator wraps them), so argument reduction by 2*pi is enough.
func Sin(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return math.NaN()
	}
	const twoPi = 2 * math.Pi
	k := math.Floor(x/twoPi + 0.5)
	x -= float64(k * twoPi)
	// Now x is in [-pi, pi]; fold into [-pi/2, pi/2] using sin(pi - x) = sin(x).
	if x > math.Pi/2 {
		x = math.Pi - x
	} else if x < -math.Pi/2 {
		x = -math.Pi - x
	}
	x2 := float64(x * x)
	p := sinCoef[len(sinCoef)-1]
	for i := len(sinCoef) - 2; i >= 0; i-- {
		p = float64(p*x2) + sinCoef[i]
	}
	return float64(x * p)
}

// Cos returns cos(x) as Sin(x + pi/2).
func Cos(x float64) float64 { return Sin(x + math.Pi/2) }

// expCoef[i] = 1/i!, Taylor series of exp on |r| <= ln(2)/2.
var expCoef = [...]float64{
	1, 1, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
	1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800,
	1.0 / 87178291200,
}

// Cody-Waite split of ln 2: k*ln2Hi is exact for the k that occur.
const (
	ln2Hi = 6.93147180369123816490e-01
	ln2Lo = 1.90821492927058770002e-10
)

// Exp returns e**x, accurate to a few ulp.
func Exp(x float64) float64 {
	switch {
	case math.IsNaN(x):
		return x
	case x > 709.78:
		return math.Inf(1)
	case x < -745.2:
		return 0
	}
	k := math.Floor(x/math.Ln2 + 0.5)
	r := x - float64(k*ln2Hi)
	r -= float64(k * ln2Lo)
	p := expCoef[len(expCoef)-1]
	for i := len(expCoef) - 2; i >= 0; i-- {
		p = float64(p*r) + expCoef[i]
	}
	return math.Ldexp(p, int(k))
}

// Sigmoid returns 1/(1+e**-x) without overflow for large |x|.
func Sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + Exp(-x))
	}
	e := Exp(x)
	return e / (1 + e)
}
