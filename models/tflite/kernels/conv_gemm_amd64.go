//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// The amd64 SIMD path: AVX2 (VPMADDWD over int16-widened taps for CONV_2D, VPMULLD for
// DEPTHWISE_CONV_2D, and the requantization in vector form). cpu.X86.HasAVX2 also checks
// that the OS saves the YMM registers.

const simdName = "avx2"

var haveSIMD = cpu.X86.HasAVX2

// The dot-product GEMM (conv_gemm_dot.go): VPDPBUSD on YMM registers, VEX-encoded (AVX-VNNI)
// or EVEX-encoded (AVX-512 VNNI, which needs AVX-512 VL for YMM). x/sys/cpu reports both only
// when the OS saves the registers they use. AVX-VNNI is preferred where both exist: the same
// work, without the EVEX form.
var (
	haveAVXVNNI    = cpu.X86.HasAVX2 && cpu.X86.HasAVXVNNI
	haveAVX512VNNI = cpu.X86.HasAVX2 && cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VL
	haveDot        = haveAVXVNNI || haveAVX512VNNI
	// dotVEX selects the VEX form; tests clear it to run the EVEX form on CPUs with both.
	dotVEX = haveAVXVNNI
)

func dotName() string {
	if dotVEX {
		return "avxvnni"
	}
	return "avx512vnni"
}

// gemmRow4x16U8 is gemmRow4x16U8Go in assembly; gemmRowU8 has checked the bounds. Only
// called when haveDot.
func gemmRow4x16U8(x []byte, stride int, w []int8, quads int, q []int32, y []int8, yStride, blocks int) {
	if dotVEX {
		gemmRow4AVXVNNI(&x[0], uintptr(stride), &w[0], quads, &q[0], &y[0], uintptr(yStride), blocks)
		return
	}
	gemmRow4AVX512VNNI(&x[0], uintptr(stride), &w[0], quads, &q[0], &y[0], uintptr(yStride), blocks)
}

// gemmRow4x16 is gemmRow4x16Go in AVX2 assembly; gemmRow4 has checked the bounds.
func gemmRow4x16(x []int16, stride int, w []int8, pairs int, q []int32, y []int8, yStride, blocks int) {
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
func gemmRow4AVX2(x *int16, strideBytes uintptr, w *int8, pairs int, q *int32, y *int8, yStride uintptr, blocks int)

//go:noescape
func widen16AVX2(dst *int16, src *int8, n16 int)

//go:noescape
func dw3x3RowAVX2(taps *[9]*int8, steps *[9]uintptr, w *int32, q *int32, y *int8, groups, npix int)

// flip32 is flip32Go in AVX2 assembly.
func flip32(dst []byte, src []int8) { flip32AVX2(&dst[0], &src[0], len(src)/32) }

//go:noescape
func flip32AVX2(dst *byte, src *int8, n32 int)

//go:noescape
func gemmRow4AVXVNNI(x *byte, strideBytes uintptr, w *int8, quads int, q *int32, y *int8, yStride uintptr, blocks int)

//go:noescape
func gemmRow4AVX512VNNI(x *byte, strideBytes uintptr, w *int8, quads int, q *int32, y *int8, yStride uintptr, blocks int)
