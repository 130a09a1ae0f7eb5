package kernels

import "math"

// The float32 3x3 CONV_2D of the portable path (stride 1, no dilation) as Winograd's
// F(2x2, 3x3): each 2x2 block of outputs comes from a 4x4 block of inputs, transformed
// (Bᵀ d B, additions only), multiplied point by point with the transformed filter (G g Gᵀ)
// and summed over the input channels, then transformed back (Aᵀ m A). That is 16
// multiply-adds per block, input channel and output channel where the direct form needs 36:
// scalar code, which is at one multiply and one add per multiply-add in the direct form as
// in the official runtime's scalar build, cannot otherwise get below it on this shape.
//
// The order of the sums is not the reference's: each output sums its 16 transformed
// products per input channel in channel order (the GEMM below), then the output transform's
// additions in a fixed order, then the bias. It is the same for every output whatever the
// batch, chunk or thread, and stays within docs/tflite.md's float tolerance
// (TestConvF32Winograd). The filter transform is computed in float64 and rounded once.

// winoChunkBytes bounds the transformed inputs and products of one chunk of tiles, so they
// stay in L2 between the three passes.
const winoChunkBytes = 64 << 10

// winoMaxFilter bounds the transformed filter (16 x outC x inC floats, 1 MiB): it lives in
// the arena while the layer runs, and wider layers keep the direct form rather than grow the
// arena by more than their weights' size.
const winoMaxFilter = 1 << 18

// winogradF32OK says whether a float32 CONV_2D has the shape F(2x2, 3x3) covers, enough
// channels for the transforms to cost less than the multiply-adds they save, and enough 2x2
// output tiles (4) to pay for transforming the filter at each Invoke.
func (g *convGeom) winogradF32OK() bool {
	return g.fH == 3 && g.fW == 3 && g.strideH == 1 && g.strideW == 1 && g.dilH == 1 && g.dilW == 1 &&
		g.inC >= 4 && g.outC >= 4 && (g.outH+1)/2*((g.outW+1)/2) >= 4 && 16*g.inC*g.outC <= winoMaxFilter
}

// winoTiles is the number of 2x2 output tiles per chunk.
func (g *convGeom) winoTiles() int {
	tiles := (g.outH + 1) / 2 * ((g.outW + 1) / 2)
	return max(1, min(tiles, winoChunkBytes/(4*16*(g.inC+g.outC))))
}

// winoScratchLen is the scratch of the Winograd form in floats: the transformed filter
// (16 x outC x inC), a chunk's transformed inputs and products, and a row of inC zeros
// for the taps outside the input.
func (g *convGeom) winoScratchLen() int {
	return 16*g.outC*g.inC + 16*g.winoTiles()*(g.inC+g.outC) + g.inC
}

// convF32Winograd is convF32 on the Winograd form; s is the node's scratch (winoScratchLen).
func (g *convGeom) convF32Winograd(s, x, w, b, y []float32) {
	ci, co := g.inC, g.outC
	nt := g.winoTiles()
	u, s := s[:16*co*ci], s[16*co*ci:]
	v, s := s[:16*nt*ci], s[16*nt*ci:]
	m, s := s[:16*nt*co], s[16*nt*co:]
	zero := s[:ci]
	clear(zero)
	winoFilterF32(w, co, ci, u)
	tiles := (g.outH + 1) / 2 * ((g.outW + 1) / 2)
	inSize, outSize := g.inH*g.inW*ci, g.outH*g.outW*co
	inf := float32(math.Inf(1))
	for bt := 0; bt < g.batches; bt++ {
		xb := x[bt*inSize : (bt+1)*inSize]
		yb := y[bt*outSize : (bt+1)*outSize]
		for t0 := 0; t0 < tiles; t0 += nt {
			n := min(nt, tiles-t0)
			g.winoInputF32(xb, t0, n, v[:16*n*ci], zero)
			for xi := range 16 {
				gemmF32(v[xi*n*ci:(xi+1)*n*ci], n, ci, u[xi*co*ci:(xi+1)*co*ci], nil, co, m[xi*n*co:(xi+1)*n*co], -inf, inf)
			}
			g.winoOutputF32(m[:16*n*co], t0, n, b, yb)
		}
	}
}

// winoFilterF32 writes u[(ξ*outC+oc)*inC+ic] = (G g Gᵀ)[ξ] for each filter g = w[oc][..][..][ic].
func winoFilterF32(w []float32, outC, inC int, u []float32) {
	_ = u[16*outC*inC-1]
	for oc := range outC {
		f := w[oc*9*inC : (oc+1)*9*inC]
		for ic := range inC {
			var gf [3][3]float64
			for fy := range 3 {
				for fx := range 3 {
					gf[fy][fx] = float64(f[(fy*3+fx)*inC+ic])
				}
			}
			var h [4][3]float64 // G g
			for c := range 3 {
				h[0][c] = gf[0][c]
				h[1][c] = 0.5 * (gf[0][c] + gf[1][c] + gf[2][c])
				h[2][c] = 0.5 * (gf[0][c] - gf[1][c] + gf[2][c])
				h[3][c] = gf[2][c]
			}
			for r := range 4 { // (G g) Gᵀ
				t := [4]float64{h[r][0], 0.5 * (h[r][0] + h[r][1] + h[r][2]), 0.5 * (h[r][0] - h[r][1] + h[r][2]), h[r][2]}
				for c, val := range t {
					u[((r*4+c)*outC+oc)*inC+ic] = float32(val)
				}
			}
		}
	}
}

// winoInputF32 writes the transformed inputs of tiles t0..t0+n of one image:
// v[(ξ*n+t)*inC+ic] = (Bᵀ d B)[ξ], d the 4x4 inputs of channel ic (0 outside the image).
func (g *convGeom) winoInputF32(xb []float32, t0, n int, v, zero []float32) {
	c := g.inC
	tw := (g.outW + 1) / 2
	var d [16][]float32
	for t := range n {
		ty, tx := (t0+t)/tw, (t0+t)%tw
		iy0, ix0 := 2*ty-g.padH, 2*tx-g.padW
		for r := range 4 {
			for q := range 4 {
				iy, ix := iy0+r, ix0+q
				if iy < 0 || iy >= g.inH || ix < 0 || ix >= g.inW {
					d[r*4+q] = zero[:c]
				} else {
					d[r*4+q] = xb[(iy*g.inW+ix)*c:][:c]
				}
			}
		}
		winoInputTileF32(&d, v[t*c:], n*c)
	}
}

// winoInputTileF32 transforms one tile: d holds its 16 input pixels (inC values each), row by
// row; v[ξ*st+ic] receives (Bᵀ d B)[ξ] of channel ic. The slices are cut to one length
// first, so the loop runs without bounds checks.
func winoInputTileF32(d *[16][]float32, v []float32, st int) {
	d0 := d[0]
	c := len(d0)
	d1, d2, d3 := d[1][:c], d[2][:c], d[3][:c]
	d4, d5, d6, d7 := d[4][:c], d[5][:c], d[6][:c], d[7][:c]
	d8, d9, d10, d11 := d[8][:c], d[9][:c], d[10][:c], d[11][:c]
	d12, d13, d14, d15 := d[12][:c], d[13][:c], d[14][:c], d[15][:c]
	v0, v1, v2, v3 := v[0*st:][:c], v[1*st:][:c], v[2*st:][:c], v[3*st:][:c]
	v4, v5, v6, v7 := v[4*st:][:c], v[5*st:][:c], v[6*st:][:c], v[7*st:][:c]
	v8, v9, v10, v11 := v[8*st:][:c], v[9*st:][:c], v[10*st:][:c], v[11*st:][:c]
	v12, v13, v14, v15 := v[12*st:][:c], v[13*st:][:c], v[14*st:][:c], v[15*st:][:c]
	for ic := range d0 {
		// Bᵀ d: rows combined, column by column.
		e0, e1, e2, e3 := d0[ic]-d8[ic], d4[ic]+d8[ic], d8[ic]-d4[ic], d4[ic]-d12[ic]
		e4, e5, e6, e7 := d1[ic]-d9[ic], d5[ic]+d9[ic], d9[ic]-d5[ic], d5[ic]-d13[ic]
		e8, e9, e10, e11 := d2[ic]-d10[ic], d6[ic]+d10[ic], d10[ic]-d6[ic], d6[ic]-d14[ic]
		e12, e13, e14, e15 := d3[ic]-d11[ic], d7[ic]+d11[ic], d11[ic]-d7[ic], d7[ic]-d15[ic]
		// (Bᵀ d) B: columns combined, row by row (e{4q+r} is row r, column q).
		v0[ic], v1[ic], v2[ic], v3[ic] = e0-e8, e4+e8, e8-e4, e4-e12
		v4[ic], v5[ic], v6[ic], v7[ic] = e1-e9, e5+e9, e9-e5, e5-e13
		v8[ic], v9[ic], v10[ic], v11[ic] = e2-e10, e6+e10, e10-e6, e6-e14
		v12[ic], v13[ic], v14[ic], v15[ic] = e3-e11, e7+e11, e11-e7, e7-e15
	}
}

// winoOutputF32 turns the products m[(ξ*n+t)*outC+oc] of tiles t0..t0+n back into outputs
// (Aᵀ m A), adds the bias and clamps, writing the outputs inside the image.
func (g *convGeom) winoOutputF32(m []float32, t0, n int, b, yb []float32) {
	co := g.outC
	tw := (g.outW + 1) / 2
	st := n * co
	for t := range n {
		ty, tx := (t0+t)/tw, (t0+t)%tw
		oy, ox := 2*ty, 2*tx
		y00 := yb[(oy*g.outW+ox)*co:][:co]
		y01, y10, y11 := y00, y00, y00
		right, down := ox+1 < g.outW, oy+1 < g.outH
		if right {
			y01 = yb[(oy*g.outW+ox+1)*co:][:co]
		}
		if down {
			y10 = yb[((oy+1)*g.outW+ox)*co:][:co]
		}
		if right && down {
			y11 = yb[((oy+1)*g.outW+ox+1)*co:][:co]
		}
		winoOutputTileF32(m[t*co:], st, b, y00, y01, y10, y11, g.fMin, g.fMax)
	}
}

// winoOutputTileF32 is one tile of winoOutputF32: m[ξ*st+oc] are its products, y00..y11 its
// four output pixels (aliases of y00 for those outside the image, written before it).
func winoOutputTileF32(m []float32, st int, b, y00, y01, y10, y11 []float32, lo, hi float32) {
	c := len(y00)
	y01, y10, y11 = y01[:c], y10[:c], y11[:c]
	m0, m1, m2, m3 := m[0*st:][:c], m[1*st:][:c], m[2*st:][:c], m[3*st:][:c]
	m4, m5, m6, m7 := m[4*st:][:c], m[5*st:][:c], m[6*st:][:c], m[7*st:][:c]
	m8, m9, m10, m11 := m[8*st:][:c], m[9*st:][:c], m[10*st:][:c], m[11*st:][:c]
	m12, m13, m14, m15 := m[12*st:][:c], m[13*st:][:c], m[14*st:][:c], m[15*st:][:c]
	if b != nil {
		b = b[:c]
	}
	for oc := range y00 {
		// Aᵀ m: rows combined, column by column.
		s0 := m0[oc] + m4[oc] + m8[oc]
		s1 := m1[oc] + m5[oc] + m9[oc]
		s2 := m2[oc] + m6[oc] + m10[oc]
		s3 := m3[oc] + m7[oc] + m11[oc]
		s4 := m4[oc] - m8[oc] - m12[oc]
		s5 := m5[oc] - m9[oc] - m13[oc]
		s6 := m6[oc] - m10[oc] - m14[oc]
		s7 := m7[oc] - m11[oc] - m15[oc]
		// (Aᵀ m) A, then the bias and the clamp.
		bias := float32(0)
		if b != nil {
			bias = b[oc]
		}
		y11[oc] = min(max(s5-s6-s7+bias, lo), hi)
		y10[oc] = min(max(s4+s5+s6+bias, lo), hi)
		y01[oc] = min(max(s1-s2-s3+bias, lo), hi)
		y00[oc] = min(max(s0+s1+s2+bias, lo), hi)
	}
}
