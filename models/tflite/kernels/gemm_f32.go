package kernels

import (
	"unsafe"

	"github.com/outpost-ml/outpost/models/tflite"
)

// The float32 GEMM behind FULLY_CONNECTED and CONV_2D (portable path): rows of input taps
// times rows of weights, read in place (the filter layouts [units][depth] and [OC][FH][FW][C]
// are already rows of taps, so nothing is packed or copied). One row of taps meets six weight
// rows at a time (then four, two, one): six independent sums keep the floating-point adders
// busy, and six accumulators, the shared tap and the products fit the 15 usable SSE
// registers, where wider tiles spill an accumulator to the stack on every step (measured:
// 1×8 and 2×4 tiles run at 65-70 % of 1×6). Each output is still summed tap by tap in the
// reference kernels' order, then the bias is added and the activation clamps, so the results
// are those of the plain loops (on arm64 both fuse a multiply-add the same way); a tap
// outside the input of a convolution adds w*0, which leaves the sum unchanged.

// gemmF32 computes y[p*outC+o] = clamp(Σ_i x[p*k+i]*w[o*k+i] + b[o]) for pixels rows of x.
func gemmF32(x []float32, pixels, k int, w, b []float32, outC int, y []float32, lo, hi float32) {
	for p := 0; p < pixels; p++ {
		x0 := x[p*k : (p+1)*k]
		y0 := y[p*outC : (p+1)*outC]
		o := 0
		for ; o+6 <= outC; o += 6 {
			dotF32x6(x0, w[o*k:(o+6)*k], k, y0[o:o+6], b, o, lo, hi)
		}
		if r := outC - o; r > 0 && r != 4 && outC >= 6 {
			// One more 6-tile over the last six channels: it recomputes a few with the same
			// bits, and costs less than the short tiles, whose one or two sums wait on the
			// adder's latency.
			o = outC - 6
			dotF32x6(x0, w[o*k:(o+6)*k], k, y0[o:o+6], b, o, lo, hi)
			continue
		}
		if o+4 <= outC {
			dotF32x4(x0, w[o*k:(o+4)*k], k, y0[o:o+4], b, o, lo, hi)
			o += 4
		}
		if o+2 <= outC {
			s := dotF32x2(x0, w[o*k:(o+2)*k], k)
			storeF32s(y0[o:o+2], s[:], b, o, lo, hi)
			o += 2
		}
		if o < outC {
			y0[o] = biasClampF32(dotF32(x0, w[o*k:(o+1)*k]), b, o, lo, hi)
		}
	}
}

// biasClampF32 adds the bias and clamps like clampF, but with the min and max builtins, which
// compile without branches: a ReLU's outputs are negative about half the time, and clampF's
// mispredicted branches showed in the profile of a small convolution. The builtins differ
// from clampF only for a sum of -0, which a sum started at +0 never is.
func biasClampF32(acc float32, b []float32, o int, lo, hi float32) float32 {
	if b != nil {
		acc += b[o]
	}
	return min(max(acc, lo), hi)
}

func storeF32x4(y []float32, a [4]float32, b []float32, o int, lo, hi float32) {
	storeF32s(y, a[:], b, o, lo, hi)
}

func storeF32s(y, a []float32, b []float32, o int, lo, hi float32) {
	y = y[:len(a)]
	for j, v := range a {
		y[j] = biasClampF32(v, b, o+j, lo, hi)
	}
}

// dotF32x6 sums one row of taps with six consecutive weight rows (w holds 6*k values), each
// in tap order, and stores y[j] = clamp(sum_j + b[o+j]) (biasClampF32). A leaf function, four
// taps a step (the bounds checked once per step), so the six sums stay in registers.
func dotF32x6(x, w []float32, k int, y, b []float32, o int, lo, hi float32) {
	x = x[:k]
	w0, w1, w2, w3, w4, w5 := w[:k], w[k:2*k], w[2*k:3*k], w[3*k:4*k], w[4*k:5*k], w[5*k:6*k]
	var a0, a1, a2, a3, a4, a5 float32
	i := 0
	for ; i+4 <= k; i += 4 {
		_, _, _, _ = x[i+3], w0[i+3], w1[i+3], w2[i+3]
		_, _, _ = w3[i+3], w4[i+3], w5[i+3]
		u := x[i]
		a0 += u * w0[i]
		a1 += u * w1[i]
		a2 += u * w2[i]
		a3 += u * w3[i]
		a4 += u * w4[i]
		a5 += u * w5[i]
		u = x[i+1]
		a0 += u * w0[i+1]
		a1 += u * w1[i+1]
		a2 += u * w2[i+1]
		a3 += u * w3[i+1]
		a4 += u * w4[i+1]
		a5 += u * w5[i+1]
		u = x[i+2]
		a0 += u * w0[i+2]
		a1 += u * w1[i+2]
		a2 += u * w2[i+2]
		a3 += u * w3[i+2]
		a4 += u * w4[i+2]
		a5 += u * w5[i+2]
		u = x[i+3]
		a0 += u * w0[i+3]
		a1 += u * w1[i+3]
		a2 += u * w2[i+3]
		a3 += u * w3[i+3]
		a4 += u * w4[i+3]
		a5 += u * w5[i+3]
	}
	for ; i < k; i++ {
		u := x[i]
		a0 += u * w0[i]
		a1 += u * w1[i]
		a2 += u * w2[i]
		a3 += u * w3[i]
		a4 += u * w4[i]
		a5 += u * w5[i]
	}
	y = y[:6]
	if b != nil {
		b = b[o : o+6]
		a0, a1, a2, a3, a4, a5 = a0+b[0], a1+b[1], a2+b[2], a3+b[3], a4+b[4], a5+b[5]
	}
	y[0], y[1], y[2] = min(max(a0, lo), hi), min(max(a1, lo), hi), min(max(a2, lo), hi)
	y[3], y[4], y[5] = min(max(a3, lo), hi), min(max(a4, lo), hi), min(max(a5, lo), hi)
}

// dotF32x4 is dotF32x6 for four weight rows.
func dotF32x4(x, w []float32, k int, y, b []float32, o int, lo, hi float32) {
	x = x[:k]
	w0, w1, w2, w3 := w[:k], w[k:2*k], w[2*k:3*k], w[3*k:4*k]
	var a0, a1, a2, a3 float32
	i := 0
	for ; i+4 <= k; i += 4 {
		_, _, _, _, _ = x[i+3], w0[i+3], w1[i+3], w2[i+3], w3[i+3]
		u := x[i]
		a0 += u * w0[i]
		a1 += u * w1[i]
		a2 += u * w2[i]
		a3 += u * w3[i]
		u = x[i+1]
		a0 += u * w0[i+1]
		a1 += u * w1[i+1]
		a2 += u * w2[i+1]
		a3 += u * w3[i+1]
		u = x[i+2]
		a0 += u * w0[i+2]
		a1 += u * w1[i+2]
		a2 += u * w2[i+2]
		a3 += u * w3[i+2]
		u = x[i+3]
		a0 += u * w0[i+3]
		a1 += u * w1[i+3]
		a2 += u * w2[i+3]
		a3 += u * w3[i+3]
	}
	for ; i < k; i++ {
		u := x[i]
		a0 += u * w0[i]
		a1 += u * w1[i]
		a2 += u * w2[i]
		a3 += u * w3[i]
	}
	y = y[:4]
	if b != nil {
		b = b[o : o+4]
		a0, a1, a2, a3 = a0+b[0], a1+b[1], a2+b[2], a3+b[3]
	}
	y[0], y[1] = min(max(a0, lo), hi), min(max(a1, lo), hi)
	y[2], y[3] = min(max(a2, lo), hi), min(max(a3, lo), hi)
}

// dotF32x2 is dotF32x6 for two weight rows.
func dotF32x2(x, w []float32, k int) [2]float32 {
	x = x[:k]
	w0, w1 := w[:k], w[k:2*k]
	var a0, a1 float32
	for i, u := range x {
		a0 += u * w0[i]
		a1 += u * w1[i]
	}
	return [2]float32{a0, a1}
}

func dotF32(x, w []float32) float32 {
	w = w[:len(x)]
	var a float32
	for i, u := range x {
		a += u * w[i]
	}
	return a
}

// prepareConvF32 chooses the float32 CONV_2D form and requests its scratch (f32ScratchLen).
func (g *convGeom) prepareConvF32(n *tflite.Node) error {
	g.f32simd = useF32SIMD(g.fH * g.fW * g.inC)
	g.f32tile = useF32Tile(g.batches*g.outH*g.outW, g.fH*g.fW*g.inC)
	// The Winograd form where neither SIMD form is taken (the portable path).
	g.f32wino = !g.f32simd && !g.f32tile && g.winogradF32OK()
	nf := g.f32ScratchLen()
	if nf == 0 {
		return nil
	}
	h, err := n.RequestScratch(4 * nf)
	if err != nil {
		return err
	}
	g.colScratch = h
	return nil
}

// f32ScratchLen is the float32 scratch of a CONV_2D, in floats: winoScratchLen on the
// Winograd form (f32wino), else the im2col rows unless the layer is pointwise, and on the tile path (f32tile) the weights packed in panels of 16
// output channels (zeros past the last channel), their biases, room for a last tile's 6
// rows of taps and one 6x16 output tile.
func (g *convGeom) f32ScratchLen() int {
	if g.f32wino {
		return g.winoScratchLen()
	}
	k := g.fH * g.fW * g.inC
	n := 0
	if !g.pointwise() {
		n += g.colRowsF32() * k
	}
	if g.f32tile {
		np := (g.outC + 15) / 16
		n += np*16*k + np*16 + 6*k + 6*16
	}
	return n
}

func (g *convGeom) pointwise() bool {
	return g.fH == 1 && g.fW == 1 && g.strideH == 1 && g.strideW == 1 && g.padH == 0 && g.padW == 0
}

// colRowsF32 is the number of im2col rows per chunk of a float32 CONV_2D.
func (g *convGeom) colRowsF32() int {
	return max(1, min(g.outH*g.outW, maxColBytes/(4*g.fH*g.fW*g.inC)))
}

// colF32 is the scratch of a float32 CONV_2D (f32ScratchLen floats; nil when there is none).
func (g *convGeom) colF32(n *tflite.Node) []float32 {
	nf := g.f32ScratchLen()
	if nf == 0 {
		return nil
	}
	sb := n.Scratch(g.colScratch)
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(sb))), nf)
}

// convF32 is convFloat on the GEMM: pointwise layers multiply the input pixels directly,
// others go through im2col rows in chunks of col (colRowsF32 rows), with 0 written for the
// taps outside the input.
func (g *convGeom) convF32(col, x, w, b, y []float32) {
	k := g.fH * g.fW * g.inC
	if g.f32tile {
		g.convF32Tiles(col, x, w, b, y)
		return
	}
	if g.f32wino {
		g.convF32Winograd(col, x, w, b, y)
		return
	}
	gemm := gemmF32
	if g.f32simd {
		gemm = gemmF32SIMD
	}
	if g.pointwise() {
		pixels := g.batches * g.outH * g.outW
		gemm(x[:pixels*k], pixels, k, w, b, g.outC, y, g.fMin, g.fMax)
		return
	}
	per := g.outH * g.outW
	rows := g.colRowsF32()
	inSize := g.inH * g.inW * g.inC
	for bt := 0; bt < g.batches; bt++ {
		xb := x[bt*inSize : (bt+1)*inSize]
		yb := y[bt*per*g.outC : (bt+1)*per*g.outC]
		for p0 := 0; p0 < per; p0 += rows {
			nr := min(rows, per-p0)
			for r := 0; r < nr; r++ {
				im2colRow(g, xb, (p0+r)/g.outW, (p0+r)%g.outW, col[r*k:(r+1)*k], 0)
			}
			gemm(col[:nr*k], nr, k, w, b, g.outC, yb[p0*g.outC:(p0+nr)*g.outC], g.fMin, g.fMax)
		}
	}
}

// depthwiseF32 is depthwiseFloat with the loops turned inside out: per output pixel, the taps
// outside and the channels inside, accumulating in the output row itself, so each tap is one
// pass over contiguous channels. Every channel still sums its taps in the reference order
// (fy, then fx) from 0 before its bias, so the results are the reference's.
//
// With simd (useF32SIMDDepthwise) each tap's pass over the channels is fused multiply-adds, 8
// channels a step: the same order, each step rounded once instead of twice.
func depthwiseF32(g *convGeom, x, w, b, y []float32, simd bool) {
	m, c := g.depthMul, g.outC
	for bt := 0; bt < g.batches; bt++ {
		for oy := 0; oy < g.outH; oy++ {
			skip0, skip1 := 0, 0 // pixels done by the SIMD pixel kernel
			if simd && g.dwPackF32 != nil {
				skip0, skip1 = depthwisePixelsF32(g, x, y, bt, oy)
			}
			for ox := 0; ox < g.outW; ox++ {
				if ox == skip0 && skip1 > skip0 {
					ox = skip1 - 1
					continue
				}
				iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
				yo := y[((bt*g.outH+oy)*g.outW+ox)*c:][:c]
				if !simd && m == 1 && g.fH*g.fW <= maxDWTaps {
					depthwisePixelF32(g, x, w, b, yo, bt, iy0, ix0)
					continue
				}
				clear(yo)
				for fy := 0; fy < g.fH; fy++ {
					iy := iy0 + fy*g.dilH
					if iy < 0 || iy >= g.inH {
						continue
					}
					for fx := 0; fx < g.fW; fx++ {
						ix := ix0 + fx*g.dilW
						if ix < 0 || ix >= g.inW {
							continue
						}
						xs := x[((bt*g.inH+iy)*g.inW+ix)*g.inC:][:g.inC]
						ws := w[(fy*g.fW+fx)*c:][:c]
						if m == 1 {
							depthwiseRowF32(yo, xs[:c], ws, simd)
							continue
						}
						for oc := range yo {
							yo[oc] += xs[oc/m] * ws[oc]
						}
					}
				}
				for oc := range yo {
					yo[oc] = biasClampF32(yo[oc], b, oc, g.fMin, g.fMax)
				}
			}
		}
	}
}

// depthwisePixelF32 is one output pixel of a depth-multiplier-1 float32 depthwise layer on the
// portable path: per group of four channels, the taps inside the input are summed in registers
// in the reference order (fy, then fx) from 0, then the bias is added and the activation
// clamps, so the results are the reference's bits. Summing in registers rather than in the
// output row saves a load and a store per multiply-add.
func depthwisePixelF32(g *convGeom, x, w, b, yo []float32, bt, iy0, ix0 int) {
	c := len(yo)
	var xs, ws [maxDWTaps][]float32
	nt := 0
	for fy := 0; fy < g.fH; fy++ {
		iy := iy0 + fy*g.dilH
		if iy < 0 || iy >= g.inH {
			continue
		}
		for fx := 0; fx < g.fW; fx++ {
			ix := ix0 + fx*g.dilW
			if ix < 0 || ix >= g.inW {
				continue
			}
			xs[nt] = x[((bt*g.inH+iy)*g.inW+ix)*g.inC:][:c]
			ws[nt] = w[(fy*g.fW+fx)*c:][:c]
			nt++
		}
	}
	o := 0
	for ; o+4 <= c; o += 4 {
		var a0, a1, a2, a3 float32
		for t := range nt {
			xt, wt := xs[t][o:o+4:o+4], ws[t][o:o+4:o+4]
			a0 += xt[0] * wt[0]
			a1 += xt[1] * wt[1]
			a2 += xt[2] * wt[2]
			a3 += xt[3] * wt[3]
		}
		storeF32s(yo[o:o+4], []float32{a0, a1, a2, a3}, b, o, g.fMin, g.fMax)
	}
	for ; o < c; o++ {
		var a float32
		for t := range nt {
			a += xs[t][o] * ws[t][o]
		}
		yo[o] = biasClampF32(a, b, o, g.fMin, g.fMax)
	}
}
