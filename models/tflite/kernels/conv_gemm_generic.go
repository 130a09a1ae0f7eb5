//go:build !(amd64 || arm64) || purego

package kernels

// Without a SIMD kernel for this architecture (or with the purego build tag) useSIMD is
// false, so the int8 convolutions take the pure-Go kernels; the tile functions below are the
// portable forms of the assembly ones, kept so the SIMD driver code builds everywhere.

const simdName = "portable"

const haveSIMD = false

func gemmRow4x16(x []int16, stride int, w []int16, pairs int, q []int32, y []int8, yStride, blocks int) {
	gemmRow4x16Go(x, stride, w, pairs, q, y, yStride, blocks)
}

func widen16(dst []int16, src []int8) { widen16Go(dst, src) }

func dwRow3x3x8(taps *[9][]int8, steps *[9]int, npix, c int, w, q []int32, y []int8) {
	dwRow3x3x8Go(taps, steps, npix, c, w, q, y)
}

// No dot-product instructions: the dot forms run only when a test forces them, on their Go
// kernel.
const haveSDOT, haveI8MM = false, false

func gemmRow4x16Dot(form int, x []int8, stride int, w []int8, k8 int, q []int32, y []int8, yStride, blocks int) {
	gemmRow4x16DotGo(form, x, stride, w, k8, q, y, yStride, blocks)
}
