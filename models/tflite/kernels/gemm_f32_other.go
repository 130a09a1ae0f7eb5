//go:build !(amd64 || arm64) || purego

package kernels

// No float32 SIMD kernels here: the float layers take the pure-Go loops, whose results are
// the reference's bits. The functions below are the Go forms of the amd64 assembly, kept so
// that the drivers build everywhere; they are never called while haveF32SIMD is false.

const haveF32SIMD = false

func dotF32x2x4FMA(x0, x1, w *float32, k, n int, a, c *[4]float32) {
	panic("kernels: no float32 SIMD kernel on this platform")
}

func dotF32x1x4FMA(x0, w *float32, k, n int, a *[4]float32) {
	panic("kernels: no float32 SIMD kernel on this platform")
}

func fmaF32(y, x, w *float32, n int) { panic("kernels: no float32 SIMD kernel on this platform") }

func dwPixelF32FMA(y *float32, taps *[maxDWTaps]*float32, ntaps int, wp *float32, c8 int, lo, hi float32) {
	panic("kernels: no float32 SIMD kernel on this platform")
}
