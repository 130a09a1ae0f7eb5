//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// haveF32SIMD: the float32 kernels' AVX2/FMA forms (gemm_f32_amd64.s).
var haveF32SIMD = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func dotF32x2x4FMA(x0, x1, w *float32, k, n int, a, c *[4]float32)

//go:noescape
func dotF32x1x4FMA(x0, w *float32, k, n int, a *[4]float32)

//go:noescape
func fmaF32(y, x, w *float32, n int)

//go:noescape
func dwPixelF32FMA(y *float32, taps *[maxDWTaps]*float32, ntaps int, wp *float32, c8 int, lo, hi float32)
