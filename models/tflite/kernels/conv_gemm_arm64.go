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

// The dot-product extensions, from the kernel's HWCAP (AT_HWCAP ASIMDDP, AT_HWCAP2 I8MM): SDOT
// is in ARMv8.2-A DotProd (Cortex-A55/A75 on, e.g. the Raspberry Pi 5's A76), SMMLA in
// ARMv8.6-A I8MM (e.g. Cortex-A510/A710, Neoverse V1/N2). A Raspberry Pi 3 or 4 (A53, A72)
// has neither and takes the int16 NEON form.
var (
	haveSDOT = haveSIMD && cpu.ARM64.HasASIMDDP
	haveI8MM = haveSIMD && cpu.ARM64.HasI8MM
)

// haveForm says which int8 GEMM forms this CPU runs in assembly (the portable one is Go by
// design); a test may force any other form, which then runs its Go kernel.
var haveForm = [numForms]bool{
	formPortable: true,
	formWiden:    haveSIMD,
	formSDOT:     haveSDOT,
	formI8MM:     haveI8MM,
}

// The offset-byte copy of the VNNI forms has no NEON kernel: they run here only when forced.
func flip32(dst []byte, src []int8) { flip32Go(dst, src) }

// gemmRow4x16Dot is gemmRow4x16DotGo in SDOT or SMMLA assembly, kd/8 groups of taps per row;
// gemmRowDot has checked the bounds and that the CPU has the form.
func gemmRow4x16Dot(form int, x []byte, stride int, w []int8, kd int, q []int32, y []int8, yStride, blocks int) {
	if form == formI8MM {
		gemmRow4MMLA(&x[0], uintptr(stride), &w[0], kd/8, &q[0], &y[0], uintptr(yStride), blocks)
		return
	}
	gemmRow4SDOT(&x[0], uintptr(stride), &w[0], kd/8, &q[0], &y[0], uintptr(yStride), blocks)
}

// gemmRow4x16 is gemmRow4x16Go in NEON assembly; gemmRow4 has checked the bounds. Without
// Advanced SIMD (the form forced by a test) it is the Go kernel.
func gemmRow4x16(x []int16, stride int, w []int8, pairs int, q []int32, y []int8, yStride, blocks int) {
	if !haveSIMD {
		gemmRow4x16Go(x, stride, w, pairs, q, y, yStride, blocks)
		return
	}
	gemmRow4NEON(&x[0], uintptr(stride)*2, &w[0], pairs, &q[0], &y[0], uintptr(yStride), blocks)
}

// widen16 is widen16Go in NEON assembly (SXTL).
func widen16(dst []int16, src []int8) {
	if !haveSIMD {
		widen16Go(dst, src)
		return
	}
	widen16NEON(&dst[0], &src[0], len(src)/16)
}

// widen32 is widen32Go: it runs once per depthwise node and Invoke, over 9 bytes a channel.
func widen32(dst []int32, src []int8) { widen32Go(dst, src) }

// dwPackWeights lays out the depthwise weights for dwRow3x3x8: widened, as dwRow3x3x8Go reads
// them (the NEON kernel takes the same layout).
func dwPackWeights(dst []int32, w8 []int8, c int) { widen32Go(dst[:len(w8)], w8) }

// fillQuantGroups leaves the whole table to fillQuantTableGo here.
func fillQuantGroups(t []int32, rq chanQuant, groups int, outOff, qMin, qMax int32) int { return 0 }

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

// groups is kd/8, the 8-tap groups per row; strides are in bytes.
//
//go:noescape
func gemmRow4SDOT(x *byte, strideBytes uintptr, w *int8, groups int, q *int32, y *int8, yStride uintptr, blocks int)

//go:noescape
func gemmRow4MMLA(x *byte, strideBytes uintptr, w *int8, groups int, q *int32, y *int8, yStride uintptr, blocks int)

//go:noescape
func widen16NEON(dst *int16, src *int8, n16 int)

//go:noescape
func dw3x3RowNEON(taps *[9]*int8, steps *[9]uintptr, w *int32, q *int32, y *int8, groups, npix int)
