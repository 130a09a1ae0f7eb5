package kernels

import "math"

// The float32 kernels' SIMD path (AVX2/FMA on amd64, NEON on arm64). Each output is
// summed in 8 lanes (lane l takes taps l, l+8, …) with fused multiply-adds, the lanes reduced
// in a fixed tree, then the taps past the last multiple of 8 added in order, then the bias:
// one fixed order per path, so a result does not depend on the batch, the tile or the thread,
// and it differs from the reference loop's only by rounding (docs/tflite.md's float
// tolerance). Chosen per node at Prepare by useF32SIMD.

// minF32SIMDTaps is the fewest taps per output for which the lane form pays: below it the
// reduction costs more than the vector loop saves, and the portable tiles are as fast.
const minF32SIMDTaps = 16

// useF32SIMD says whether a float32 GEMM with k taps per output takes the SIMD form.
func useF32SIMD(k int) bool { return haveF32SIMD && !portable.Load() && k >= minF32SIMDTaps }

// useF32SIMDDepthwise says whether a float32 depthwise layer of c output channels with a
// depth multiplier m takes the SIMD form (8 channels a step).
func useF32SIMDDepthwise(c, m int) bool { return haveF32SIMD && !portable.Load() && m == 1 && c >= 8 }

// gemmF32SIMD is gemmF32 with the lane sums of the SIMD path.
func gemmF32SIMD(x []float32, pixels, k int, w, b []float32, outC int, y []float32, lo, hi float32) {
	n8 := k / 8
	tail := n8 * 8
	_ = w[outC*k-1]
	_ = x[pixels*k-1]
	_ = y[pixels*outC-1]
	var a, c [4]float32
	p := 0
	for ; p+2 <= pixels; p += 2 {
		x0, x1 := x[p*k:(p+1)*k], x[(p+1)*k:(p+2)*k]
		y0, y1 := y[p*outC:(p+1)*outC], y[(p+1)*outC:(p+2)*outC]
		o := 0
		for ; o+4 <= outC; o += 4 {
			wo := w[o*k : (o+4)*k]
			dotF32x2x4FMA(&x0[0], &x1[0], &wo[0], k, n8, &a, &c)
			if tail < k {
				for j := range 4 {
					a[j] += dotF32(x0[tail:], wo[j*k+tail:(j+1)*k])
					c[j] += dotF32(x1[tail:], wo[j*k+tail:(j+1)*k])
				}
			}
			storeF32x4(y0[o:o+4], a, b, o, lo, hi)
			storeF32x4(y1[o:o+4], c, b, o, lo, hi)
		}
		for ; o < outC; o++ {
			wo := w[o*k : (o+1)*k]
			y0[o] = biasClampF32(dotF32Lanes(x0, wo), b, o, lo, hi)
			y1[o] = biasClampF32(dotF32Lanes(x1, wo), b, o, lo, hi)
		}
	}
	for ; p < pixels; p++ {
		x0 := x[p*k : (p+1)*k]
		y0 := y[p*outC : (p+1)*outC]
		o := 0
		for ; o+4 <= outC; o += 4 {
			wo := w[o*k : (o+4)*k]
			dotF32x1x4FMA(&x0[0], &wo[0], k, n8, &a)
			if tail < k {
				for j := range 4 {
					a[j] += dotF32(x0[tail:], wo[j*k+tail:(j+1)*k])
				}
			}
			storeF32x4(y0[o:o+4], a, b, o, lo, hi)
		}
		for ; o < outC; o++ {
			y0[o] = biasClampF32(dotF32Lanes(x0, w[o*k:(o+1)*k]), b, o, lo, hi)
		}
	}
}

// dotF32Lanes is one output of the SIMD path in Go, for the output channels past the last
// multiple of 4: the same lanes, reduction tree and tail as the assembly, with each fused
// multiply-add done in float64 and rounded to float32 (exact products; in rare ties the double
// rounding can differ from the hardware's single one in the last bit). Still one fixed order
// for a given channel, whatever the tile or thread.
func dotF32Lanes(x, w []float32) float32 {
	k := len(x)
	w = w[:k]
	var l [8]float32
	n := k / 8 * 8
	for i := 0; i < n; i += 8 {
		for j := range 8 {
			l[j] = float32(math.FMA(float64(x[i+j]), float64(w[i+j]), float64(l[j])))
		}
	}
	// The assembly's tree: VHADDPS pairs (0+1, 2+3) and (4+5, 6+7), then the pairs' sums
	// within each half, then the two halves.
	s := ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
	if n < k {
		s += dotF32(x[n:], w[n:])
	}
	return s
}

// depthwiseRowF32 adds xs*ws to yo, channel by channel: fused and 8 at a time on the SIMD
// path, plain on the portable one.
func depthwiseRowF32(yo, xs, ws []float32, simd bool) {
	c := len(yo)
	xs, ws = xs[:c], ws[:c]
	i := 0
	if simd && c >= 8 {
		fmaF32(&yo[0], &xs[0], &ws[0], c/8)
		i = c / 8 * 8
	}
	for ; i < c; i++ {
		yo[i] += xs[i] * ws[i]
	}
}

// maxDWTaps is the largest depthwise filter (FH×FW) the pixel kernel takes: 5×5.
const maxDWTaps = 25

// packDWF32 lays a [1,FH,FW,C] float32 depthwise filter and its bias (nil: zeros) out for
// dwPixelF32FMA: per block of 8 channels, the FH×FW weight vectors in tap order, then the bias
// vector. (FH×FW+1)×C floats, a few KiB for the largest layers.
func packDWF32(w, b []float32, taps, c int) []float32 {
	p := make([]float32, 0, (taps+1)*c)
	for c0 := 0; c0 < c; c0 += 8 {
		for t := range taps {
			p = append(p, w[t*c+c0:t*c+c0+8]...)
		}
		if b != nil {
			p = append(p, b[c0:c0+8]...)
		} else {
			p = append(p, make([]float32, 8)...)
		}
	}
	return p
}

// depthwisePixelsF32 runs the interior pixels of output row oy of batch bt (every tap inside
// the input) through dwPixelF32FMA and reports which it did: [ox0, ox1). The caller does the
// border pixels.
func depthwisePixelsF32(g *convGeom, x, y []float32, bt, oy int) (ox0, ox1 int) {
	iy0 := oy*g.strideH - g.padH
	if iy0 < 0 || iy0+(g.fH-1)*g.dilH >= g.inH {
		return 0, 0
	}
	// ox*strideW - padW ≥ 0 and ox*strideW - padW + (fW-1)*dilW < inW.
	ox0 = (g.padW + g.strideW - 1) / g.strideW
	last := g.inW - 1 - (g.fW-1)*g.dilW + g.padW // largest ox*strideW
	if last < 0 {
		return 0, 0
	}
	ox1 = min(g.outW, last/g.strideW+1)
	if ox0 >= ox1 {
		return 0, 0
	}
	c := g.outC
	var taps [maxDWTaps]*float32
	ntaps := g.fH * g.fW
	wp := g.dwPackF32
	for ox := ox0; ox < ox1; ox++ {
		ix0 := ox*g.strideW - g.padW
		t := 0
		for fy := 0; fy < g.fH; fy++ {
			row := ((bt*g.inH+iy0+fy*g.dilH)*g.inW + ix0) * c
			for fx := 0; fx < g.fW; fx++ {
				taps[t] = &x[row+fx*g.dilW*c+c-1] // bounds-checks the whole pixel
				taps[t] = &x[row+fx*g.dilW*c]
				t++
			}
		}
		yo := y[((bt*g.outH+oy)*g.outW+ox)*c:][:c]
		dwPixelF32FMA(&yo[0], &taps, ntaps, &wp[0], c/8, g.fMin, g.fMax)
	}
	return ox0, ox1
}
