//go:build arm64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// The arm64 SIMD path: NEON (Advanced SIMD) forms of the tile kernels (the CONV_2D GEMM tile,
// the int8 widening and the 3x3 DEPTHWISE_CONV_2D row), on the same packed
// layouts as the AVX2 ones, so the driver code in conv_gemm.go and conv.go is shared. Every
// ARMv8-A Linux CPU has Advanced SIMD; the check keeps the pure-Go fallback for any that
// does not report it.

const simdName = "neon"

var haveSIMD = cpu.ARM64.HasASIMD

// No dot-product GEMM here (yet): useDot is false and gemmRow4x16U8 is the portable kernel,
// kept so the driver code builds everywhere.
const haveDot = false

func dotName() string { return "" }

func flip32(dst []byte, src []int8) { flip32Go(dst, src) }

func gemmRow4x16U8(x []byte, stride int, w []int8, quads int, q []int32, y []int8, yStride, blocks int) {
	gemmRow4x16U8Go(x, stride, w, quads, q, y, yStride, blocks)
}

// gemmRow4x16 is gemmRow4x16Go in NEON assembly; gemmRow4 has checked the bounds.
func gemmRow4x16(x []int16, stride int, w []int8, pairs int, q []int32, y []int8, yStride, blocks int) {
	gemmRow4NEON(&x[0], uintptr(stride)*2, &w[0], pairs, &q[0], &y[0], uintptr(yStride), blocks)
}

// widen16 is widen16Go in NEON assembly (SXTL).
func widen16(dst []int16, src []int8) { widen16NEON(&dst[0], &src[0], len(src)/16) }

// dwRow3x3x8 is dwRow3x3x8Go in NEON assembly; dwRow3x3 has checked the bounds.
func dwRow3x3x8(taps *[9][]int8, steps *[9]int, npix, c int, w, q []int32, y []int8) {
	var p [9]*int8
	var st [9]uintptr
	for i := range p {
		p[i], st[i] = &taps[i][0], uintptr(steps[i])
	}
	dw3x3RowNEON(&p, &st, &w[0], &q[0], &y[0], c/8, npix)
}

// The assembly kernels (conv_gemm_arm64.s). Strides are in bytes; pairs, blocks and n16 are
// at least 1.

//go:noescape
func gemmRow4NEON(x *int16, strideBytes uintptr, w *int8, pairs int, q *int32, y *int8, yStride uintptr, blocks int)

//go:noescape
func widen16NEON(dst *int16, src *int8, n16 int)

//go:noescape
func dw3x3RowNEON(taps *[9]*int8, steps *[9]uintptr, w *int32, q *int32, y *int8, groups, npix int)
