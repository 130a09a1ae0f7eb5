//go:build arm64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// haveF32SIMD: the float32 kernels' NEON forms (gemm_f32_arm64.s), with the same 8 lanes per
// output (two 4-lane registers), fused multiply-adds and reduction tree as the AVX2/FMA ones,
// so the two paths sum every output in one order. Advanced SIMD with FMLA is part of every
// ARMv8-A CPU; the check keeps the portable path on any that does not report it.
var haveF32SIMD = cpu.ARM64.HasASIMD && cpu.ARM64.HasFP

//go:noescape
func dotF32x2x4FMA(x0, x1, w *float32, k, n int, a, c *[4]float32)

//go:noescape
func dotF32x1x4FMA(x0, w *float32, k, n int, a *[4]float32)

//go:noescape
func fmaF32(y, x, w *float32, n int)

//go:noescape
func dwPixelF32FMA(y *float32, taps *[maxDWTaps]*float32, ntaps int, wp *float32, c8 int, lo, hi float32)
