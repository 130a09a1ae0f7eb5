//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// The amd64 SIMD path: AVX2 (VPMADDWD over int16-widened taps for CONV_2D, VPMULLD for
// DEPTHWISE_CONV_2D, and the requantization in vector form). cpu.X86.HasAVX2 also checks
// that the OS saves the YMM registers.

const simdName = "avx2"

var haveSIMD = cpu.X86.HasAVX2

// The dot-product forms (conv_gemm_dot.go): VPDPBUSD on YMM registers, VEX-encoded (AVX-VNNI)
// or EVEX-encoded (AVX-512 VNNI, which needs AVX-512 VL for YMM). x/sys/cpu reports both only
// when the OS saves the registers they use.
var (
	haveAVXVNNI    = cpu.X86.HasAVX2 && cpu.X86.HasAVXVNNI
	haveAVX512VNNI = cpu.X86.HasAVX2 && cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VL
)

// haveForm says which int8 GEMM forms this CPU runs in assembly (the portable one is Go by
// design); a test may force any other form, which then runs its Go kernel.
var haveForm = [numForms]bool{
	formPortable:   true,
	formWiden:      haveSIMD,
	formAVXVNNI:    haveAVXVNNI,
	formAVX512VNNI: haveAVX512VNNI,
}

// gemmRow4x16Dot is gemmRow4x16DotGo in VPDPBUSD assembly, kd/4 quads of taps per row;
// gemmRowDot has checked the bounds and that the CPU has the form.
func gemmRow4x16Dot(form int, x []byte, stride int, w []int8, kd int, q []int32, y []int8, yStride, blocks int) {
	if form == formAVXVNNI {
		gemmRow4AVXVNNI(&x[0], uintptr(stride), &w[0], kd/4, &q[0], &y[0], uintptr(yStride), blocks)
		return
	}
	gemmRow4AVX512VNNI(&x[0], uintptr(stride), &w[0], kd/4, &q[0], &y[0], uintptr(yStride), blocks)
}

// gemmRow4x16 is gemmRow4x16Go in AVX2 assembly; gemmRow4 has checked the bounds. Without
// AVX2 (the form forced by a test) it is the Go kernel.
func gemmRow4x16(x []int16, stride int, w []int8, pairs int, q []int32, y []int8, yStride, blocks int) {
	if !haveSIMD {
		gemmRow4x16Go(x, stride, w, pairs, q, y, yStride, blocks)
		return
	}
	gemmRow4AVX2(&x[0], uintptr(stride)*2, &w[0], pairs, &q[0], &y[0], uintptr(yStride), blocks)
}

// widen16 is widen16Go in AVX2 assembly (VPMOVSXBW).
func widen16(dst []int16, src []int8) {
	if !haveSIMD {
		widen16Go(dst, src)
		return
	}
	widen16AVX2(&dst[0], &src[0], len(src)/16)
}

// fillQuantGroups writes the first groups groups of fillQuantTable (groups*8 <= len(rq.bias))
// in AVX2 assembly and returns groups, or 0 without AVX2.
func fillQuantGroups(t []int32, rq chanQuant, groups int, outOff, qMin, qMax int32) int {
	if !haveSIMD {
		return 0
	}
	_, _, _, _ = t[groups*quantGroup-1], rq.bias[groups*8-1], rq.mult[groups*8-1], rq.shift[groups*8-1]
	fillQuantAVX2(&t[0], &rq.bias[0], &rq.mult[0], &rq.shift[0], groups, int(outOff), int(qMin), int(qMax))
	return groups
}

//go:noescape
func fillQuantAVX2(t, bias, mult *int32, shift *int8, groups, outOff, qMin, qMax int)

// widen32 is widen32Go in AVX2 assembly (VPMOVSXBD) for whole runs of 8.
func widen32(dst []int32, src []int8) {
	dst = dst[:len(src)]
	n := len(src) &^ 7
	if haveSIMD && n > 0 {
		widen32AVX2(&dst[0], &src[0], n/8)
	} else {
		n = 0
	}
	widen32Go(dst[n:], src[n:])
}

//go:noescape
func widen32AVX2(dst *int32, src *int8, n8 int)

// dwPackWeights lays out the depthwise weights w8 ([c/8][9][8]int8, dwRow3x3x8Go's order)
// for dw3x3RowAVX2, which takes channels 16 at a time and taps two at a time: for each pair of
// groups, 5 tap pairs (0,1), (2,3), (4,5), (6,7), (8, none), each as two vectors of 8 int32
// words, every word the pair's two int16 weights of one channel (the first tap in the low
// half, a missing tap 0), for channels 0-3 and 8-11 of the 16 in the first vector and 4-7 and
// 12-15 in the second: the order in which VPUNPCKLWD and VPUNPCKHWD pair up two taps' inputs.
// An odd last group stays as dwRow3x3x8Go reads it. 20 bytes a channel (36 for that group).
func dwPackWeights(dst []int32, w8 []int8, c int) {
	groups := c / 8
	_, _ = w8[groups*72-1], dst[groups/2*80+groups%2*72-1]
	if groups >= 2 {
		dwPackAVX2(&dst[0], &w8[0], groups/2)
	}
	if groups%2 == 1 {
		o := groups / 2 * 80
		widen32(dst[o:o+72], w8[(groups-1)*72:groups*72])
	}
}

//go:noescape
func dwPackAVX2(dst *int32, w8 *int8, pairs int)

// dwPackWeightsGo is dwPackWeights in Go, the reference for dwPackAVX2.
func dwPackWeightsGo(dst []int32, w8 []int8, c int) {
	groups := c / 8
	o := 0
	for g := 0; g+1 < groups; g += 2 {
		for p := range 5 {
			t0, t1 := 2*p, 2*p+1
			for half := range 2 {
				for i := range 8 {
					ch := i&3 + 4*half + 8*(i>>2) // channel of word i, of the 16
					gw := w8[(g+ch/8)*72:][:72]
					lo := uint32(uint16(int16(gw[t0*8+ch%8])))
					var hi uint32
					if t1 < 9 {
						hi = uint32(uint16(int16(gw[t1*8+ch%8])))
					}
					dst[o] = int32(lo | hi<<16)
					o++
				}
			}
		}
	}
	if groups%2 == 1 {
		widen32Go(dst[o:o+72], w8[(groups-1)*72:groups*72])
	}
}

// dwRow3x3x8 is dwRow3x3x8Go in AVX2 assembly on dwPackWeights' layout; dwRow3x3 has checked
// the bounds.
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
func flip32(dst []byte, src []int8) {
	if !haveSIMD {
		flip32Go(dst, src)
		return
	}
	flip32AVX2(&dst[0], &src[0], len(src)/32)
}

//go:noescape
func flip32AVX2(dst *byte, src *int8, n32 int)

//go:noescape
func gemmRow4AVXVNNI(x *byte, strideBytes uintptr, w *int8, quads int, q *int32, y *int8, yStride uintptr, blocks int)

//go:noescape
func gemmRow4AVX512VNNI(x *byte, strideBytes uintptr, w *int8, quads int, q *int32, y *int8, yStride uintptr, blocks int)
