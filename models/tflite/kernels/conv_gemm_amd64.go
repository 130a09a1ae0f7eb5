//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// The amd64 SIMD path: AVX2 (VPMADDWD over int16-widened taps for CONV_2D, VPMULLD for
// DEPTHWISE_CONV_2D, and the requantization in vector form). cpu.X86.HasAVX2 also checks
// that the OS saves the YMM registers.

const simdName = "avx2"

var haveSIMD = cpu.X86.HasAVX2

// gemmRow4x16 is gemmRow4x16Go in AVX2 assembly; gemmRow4 has checked the bounds.
func gemmRow4x16(x []int16, stride int, w []int16, pairs int, q []int32, y []int8, yStride, blocks int) {
	gemmRow4AVX2(&x[0], uintptr(stride)*2, &w[0], pairs, &q[0], &y[0], uintptr(yStride), blocks)
}

// widen16 is widen16Go in AVX2 assembly (VPMOVSXBW).
func widen16(dst []int16, src []int8) { widen16AVX2(&dst[0], &src[0], len(src)/16) }

// dwRow3x3x8 is dwRow3x3x8Go in AVX2 assembly; dwRow3x3 has checked the bounds.
func dwRow3x3x8(taps *[9][]int8, steps *[9]int, npix, c int, w, q []int32, y []int8) {
	var p [9]*int8
	var st [9]uintptr
	for i := range p {
		p[i], st[i] = &taps[i][0], uintptr(steps[i])
	}
	dw3x3RowAVX2(&p, &st, &w[0], &q[0], &y[0], c/8, npix)
}

// The assembly kernels (conv_gemm_amd64.s). Strides are in bytes; pairs and groups are at
// least 1.

//go:noescape
func gemmRow4AVX2(x *int16, strideBytes uintptr, w *int16, pairs int, q *int32, y *int8, yStride uintptr, blocks int)

//go:noescape
func widen16AVX2(dst *int16, src *int8, n16 int)

//go:noescape
func dw3x3RowAVX2(taps *[9]*int8, steps *[9]uintptr, w *int32, q *int32, y *int8, groups, npix int)

// The dot-product forms are arm64's; on amd64 they run only when a test forces them, on their
// Go kernel (VNNI is not used).
const haveSDOT, haveI8MM = false, false

func gemmRow4x16Dot(form int, x []int8, stride int, w []int8, k8 int, q []int32, y []int8, yStride, blocks int) {
	gemmRow4x16DotGo(form, x, stride, w, k8, q, y, yStride, blocks)
}
