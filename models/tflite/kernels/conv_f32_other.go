//go:build !amd64 || purego

package kernels

// No float32 convolution tile here: CONV_2D takes the lane form (gemmF32SIMD) where the
// platform has one, else the portable GEMM. The Go form keeps the driver building; it is never
// called while haveF32Tile is false.
const haveF32Tile = false

func convF32Tile6x16(a *float32, lda int, p *float32, k int, c *float32, ldc int, bias *float32, lo, hi float32) {
	panic("kernels: no float32 convolution tile on this platform")
}
