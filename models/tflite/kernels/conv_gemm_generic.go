//go:build !amd64 || purego

package kernels

// Without a SIMD kernel for this architecture (or with the purego build tag) the int16 tile
// kernel is the portable one, and useSIMD is false, so the int8 convolutions take the pure-Go
// GEMM of conv_gemm.go.

const simdName = "portable"

const haveSIMD = false

func dotTile4x16(x []int16, stride int, w0, w1 []int16, pairs int, acc *[64]int32) {
	dotTile4x16Go(x, stride, w0, w1, pairs, acc)
}
