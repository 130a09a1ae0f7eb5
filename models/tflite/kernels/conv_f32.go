package kernels

// The float32 CONV_2D on the tile path (AVX2/FMA on amd64): a register-blocked GEMM, 6 rows of
// taps (im2col rows, or the input pixels of a pointwise layer) times a panel of 16 output
// channels, 12 vector accumulators. The weights are packed into panels (tap-major, 16
// channels a tap) at each Invoke into the node's scratch, so no second copy of them outlives
// the layer; packing reads the weights once against the pixels x output channels x taps
// multiply-adds that follow. Each output sums its taps in order, one fused multiply-add per
// tap, then adds the bias (0 when there is none) and clamps: one fixed order whatever the
// tile, so the result of a pixel never depends on where it falls. It differs from the
// reference loop by the fused roundings only, within docs/tflite.md's float tolerance. Chosen
// at Prepare for short filters over enough pixels (useF32Tile); the rest keep the lane form.

// useF32Tile says whether a float32 CONV_2D with pixels output pixels and k taps per output
// takes the tile form. Packing costs a pass over the weights per Invoke, and a panel of more
// than about 640 taps (40 KiB) no longer stays in L1, while the lane form's reduction costs less
// the longer k is; measured against the lane form on 3x3 layers of 32 channels (thread CPU
// time, tile/lane): k=27: 0.59 at 16 pixels, 0.21 at 1,024; k=144: 1.30 at 16, 0.85 at 64,
// 0.51 at 1,024; k=576: 1.11 at 64, 0.89 at 256; k=1,152: 1.09 at 256, 1.03 at 1,024;
// k=2,304: 1.21 at 1,024.
func useF32Tile(pixels, k int) bool {
	if !haveF32Tile || portable.Load() {
		return false
	}
	switch {
	case k <= 64:
		return pixels >= 16
	case k <= 160:
		return pixels >= 64
	case k <= 640:
		return pixels >= 256
	}
	return false
}

// convF32Tiles is convF32 on the tile path; s is the node's scratch (f32ScratchLen floats).
func (g *convGeom) convF32Tiles(s, x, w, b, y []float32) {
	k := g.fH * g.fW * g.inC
	np := (g.outC + 15) / 16
	var col []float32
	if !g.pointwise() {
		col, s = s[:g.colRowsF32()*k], s[g.colRowsF32()*k:]
	}
	pk, s := s[:np*16*k], s[np*16*k:]
	pb, s := s[:np*16], s[np*16:]
	tail, tile := s[:6*k], s[6*k:6*k+6*16]
	packF32Panels(w, b, g.outC, k, pk, pb)
	if g.pointwise() {
		gemmF32Tiles(x, g.batches*g.outH*g.outW, k, pk, pb, g.outC, y, g.fMin, g.fMax, tail, tile)
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
			gemmF32Tiles(col[:nr*k], nr, k, pk, pb, g.outC, yb[p0*g.outC:(p0+nr)*g.outC], g.fMin, g.fMax, tail, tile)
		}
	}
}

// packF32Panels lays the [outC][k] weights out as panels of 16 channels, pk[(o0+i)*16+j] =
// w[(o0+j)*k+i] for the panel starting at channel o0 (zeros past outC), and the biases as pb
// (zeros when b is nil).
func packF32Panels(w, b []float32, outC, k int, pk, pb []float32) {
	for o0 := 0; o0 < outC; o0 += 16 {
		panel := pk[o0*k : (o0+16)*k]
		nc := min(16, outC-o0)
		for j := range nc {
			for i, v := range w[(o0+j)*k : (o0+j+1)*k] {
				panel[i*16+j] = v
			}
		}
		for j := nc; j < 16; j++ {
			for i := range k {
				panel[i*16+j] = 0
			}
		}
		for j := range 16 {
			pb[o0+j] = 0
			if b != nil && j < nc {
				pb[o0+j] = b[o0+j]
			}
		}
	}
}

// gemmF32Tiles computes y[r*outC+o] for rows rows of taps a (k each) on the packed panels:
// panel by panel (a panel of k x 16 weights stays in L1 while the rows stream past it), 6 rows
// a tile. The last rows of a chunk (fewer than 6) go through tail, padded with zero rows, and
// partial tiles (those rows, or a last panel of fewer than 16 channels) through tile.
func gemmF32Tiles(a []float32, rows, k int, pk, pb []float32, outC int, y []float32, lo, hi float32, tail, tile []float32) {
	full := rows / 6 * 6
	if full < rows {
		copy(tail[:6*k], a[full*k:rows*k])
		clear(tail[(rows-full)*k : 6*k])
	}
	_ = a[rows*k-1]
	_ = y[rows*outC-1]
	_ = tile[6*16-1]
	for o0 := 0; o0 < outC; o0 += 16 {
		p := &pk[o0*k : (o0+16)*k][0]
		bias := &pb[o0 : o0+16][0]
		nc := min(16, outC-o0)
		for r := 0; r < rows; r += 6 {
			if r+6 <= rows && nc == 16 {
				convF32Tile6x16(&a[r*k], k, p, k, &y[r*outC+o0], outC, bias, lo, hi)
				continue
			}
			ap := &a[r*k]
			if r >= full {
				ap = &tail[0]
			}
			convF32Tile6x16(ap, k, p, k, &tile[0], 16, bias, lo, hi)
			for rr := range min(6, rows-r) {
				copy(y[(r+rr)*outC+o0:][:nc], tile[rr*16:][:nc])
			}
		}
	}
}
