//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// The amd64 SIMD path: AVX2 (VPMADDWD over int16-widened taps). cpu.X86.HasAVX2 also checks
// that the OS saves the YMM registers.

const simdName = "avx2"

var haveSIMD = cpu.X86.HasAVX2

// dotTile4x16 is dotTile4x16Go in AVX2 assembly (conv_gemm_amd64.s).
func dotTile4x16(x []int16, stride int, w0, w1 []int16, pairs int, acc *[64]int32) {
	dotTile4x16AVX2(&x[0], uintptr(stride)*2, &w0[0], &w1[0], pairs, acc)
}

// dotTile4x16AVX2 takes the row stride in bytes; pairs must be at least 1.
//
//go:noescape
func dotTile4x16AVX2(x *int16, strideBytes uintptr, w0, w1 *int16, pairs int, acc *[64]int32)
