//go:build amd64 && !purego

package kernels

// haveF32Tile: the float32 convolution tile of conv_f32_amd64.s (AVX2/FMA).
var haveF32Tile = haveF32SIMD

//go:noescape
func convF32Tile6x16(a *float32, lda int, p *float32, k int, c *float32, ldc int, bias *float32, lo, hi float32)
