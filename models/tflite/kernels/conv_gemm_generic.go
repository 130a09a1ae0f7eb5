//go:build !(amd64 || arm64) || purego

package kernels

// Without a SIMD kernel for this architecture (or with the purego build tag) useSIMD is
// false, so the int8 convolutions take the pure-Go kernels; the tile functions below are the
// portable forms of the assembly ones, kept so the SIMD driver code builds everywhere.

// simdName names the int16 form, which runs here only when a test forces it (on Go kernels).
const simdName = "int16"

const haveSIMD = false

// No assembly for any form: the others run here only when a test forces them, on their Go
// kernels.
var haveForm = [numForms]bool{formPortable: true}

func flip32(dst []byte, src []int8) { flip32Go(dst, src) }

func gemmRow4x16Dot(form int, x []byte, stride int, w []int8, kd int, q []int32, y []int8, yStride, blocks int) {
	gemmRow4x16DotGo(form, x, stride, w, kd, q, y, yStride, blocks)
}

func gemmRow4x16(x []int16, stride int, w []int8, pairs int, q []int32, y []int8, yStride, blocks int) {
	gemmRow4x16Go(x, stride, w, pairs, q, y, yStride, blocks)
}

func widen16(dst []int16, src []int8) { widen16Go(dst, src) }

func widen32(dst []int32, src []int8) { widen32Go(dst, src) }

// dwPackWeights lays out the depthwise weights for dwRow3x3x8: widened, as dwRow3x3x8Go reads them.
func dwPackWeights(dst []int32, w8 []int8, c int) { widen32Go(dst[:len(w8)], w8) }

// fillQuantGroups leaves the whole table to fillQuantTableGo here.
func fillQuantGroups(t []int32, rq chanQuant, groups int, outOff, qMin, qMax int32) int { return 0 }

func dwRow3x3x8(taps *[9][]int8, steps *[9]int, npix, c int, w, q []int32, y []int8) {
	dwRow3x3x8Go(taps, steps, npix, c, w, q, y)
}
