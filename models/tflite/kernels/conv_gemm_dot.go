package kernels

import (
	"fmt"
	"sync/atomic"

	"github.com/outpost-ml/outpost/models/tflite"
)

// The int8 GEMM's dot-product forms (arm64): the input taps stay int8 and the weights are
// packed as int8 for an instruction that sums several byte products into each int32 lane,
// SDOT (ARMv8.2 DotProd: 4 products per lane) or SMMLA (ARMv8.6 I8MM: a 2x8 by 8x2 matrix
// product per register). Same tiles as the int16 form (4 pixels x 16 channels), same
// quantTable and requantization, and the same split of the input offset into the bias, so the
// int32 accumulators are the reference's and the bytes identical. Rows are padded to k8 taps
// (k rounded up to 8) with zero weights.

// The int8 GEMM forms, in the order Prepare prefers them when the CPU has them.
const (
	formPortable = iota // pure Go, int64 pairs (conv_gemm.go)
	formWiden           // taps widened to int16: AVX2 VPMADDWD or NEON SMLAL (gemm16)
	formSDOT            // int8 taps, SDOT by element
	formI8MM            // int8 taps, SMMLA
)

var formNames = [...]string{formPortable: "portable", formWiden: simdName, formSDOT: simdName + "-dotprod", formI8MM: simdName + "-i8mm"}

// forceForm, when not negative, is the form Prepare takes (tests: every form on one CPU; a
// dot form the CPU lacks runs its Go kernel, so its packing and driver are tested anywhere).
var forceForm atomic.Int32

func init() { forceForm.Store(-1) }

// setInt8Form forces form f (-1: the CPU's best) and returns the previous setting.
func setInt8Form(f int) int { return int(forceForm.Swap(int32(f))) }

// int8Form is the form an int8 CONV_2D or FULLY_CONNECTED prepared now takes.
func int8Form() int {
	if f := forceForm.Load(); f >= 0 {
		return int(f)
	}
	switch {
	case !useSIMD():
		return formPortable
	case haveI8MM:
		return formI8MM
	case haveSDOT:
		return formSDOT
	}
	return formWiden
}

// dotIndex is the offset of weight (channel c of a 16-channel block, tap i) in the block's
// packing for form: groups of 8 taps of 128 bytes each, laid out as
//   - SDOT: [2 quads of taps][16 channels][4 taps], so one register holds 4 channels x 4 taps;
//   - SMMLA: [8 channel pairs][2 channels][8 taps], one register per channel pair.
func dotIndex(form, c, i int) int {
	if form == formI8MM {
		return i/8*128 + c/2*16 + c%2*8 + i%8
	}
	return i/8*128 + i/4%2*64 + c*4 + i%4
}

// prepareGemm8 packs the weights for a dot-product form and requests its int8 row buffer.
func (g *convGeom) prepareGemm8(n *tflite.Node, w []int8, form int) error {
	gm := g.gemm
	k := gm.k
	gm.dot = form
	gm.k8 = (k + 7) &^ 7
	nb := (g.outC + 15) / 16
	gm.w8 = make([]int8, nb*16*gm.k8)
	for oc := 0; oc < g.outC; oc++ {
		blk := gm.w8[(oc/16)*16*gm.k8:]
		for i, v := range w[oc*k : (oc+1)*k] {
			blk[dotIndex(form, oc%16, i)] = v
		}
	}
	gm.q16 = quantTable(2*nb, gm.bias, gm.mult, g.shift, gm.outOff, gm.qMin, gm.qMax)
	per := g.outH * g.outW
	gm.rows8 = splitRows(per, max(4, maxColBytes/gm.k8&^3), gm.workers, 4)
	h, err := n.RequestScratch(gm.workers * gm.rows8 * gm.k8)
	if err != nil {
		return err
	}
	gm.x8Handle = h
	return nil
}

// convChunk8 is convChunk16 for the dot-product forms: int8 rows of k8 taps (im2col, or a
// copy of the input pixels for pointwise layers), the taps past k zero.
func (g *convGeom) convChunk8(buf, xb []int8, p0, rows int, y []int8) {
	gm := g.gemm
	k, k8 := gm.k, gm.k8
	for r := 0; r < rows; r++ {
		row := buf[r*k8 : (r+1)*k8]
		if gm.direct {
			copy(row[:k], xb[(p0+r)*k:])
		} else {
			im2colRow(g, xb, (p0+r)/g.outW, (p0+r)%g.outW, row[:k], gm.padVal)
		}
		clear(row[k:])
	}
	tiles := (rows + 3) &^ 3
	clear(buf[rows*k8 : tiles*k8])
	gm.gemm8(buf[:tiles*k8], rows, y)
}

// gemm8 is gemm16 for the dot-product forms.
func (gm *gemmInt8) gemm8(x8 []int8, pixels int, y []int8) {
	var tmp [64]int8
	k8, outC := gm.k8, gm.outC
	blk := 16 * k8
	full := outC / 16
	for p := 0; p < pixels; p += 4 {
		xt := x8[p*k8 : (p+4)*k8]
		nr := min(4, pixels-p)
		c0 := 0
		if nr == 4 && full > 0 {
			gemmRow4Dot(gm.dot, xt, k8, gm.w8, k8, gm.q16, y[p*outC:], outC, full)
			c0 = full * 16
		}
		for ; c0 < outC; c0 += 16 {
			b := c0 / 16
			gemmRow4Dot(gm.dot, xt, k8, gm.w8[b*blk:], k8, gm.q16[2*b*quantGroup:], tmp[:], 16, 1)
			nc := min(16, outC-c0)
			for r := 0; r < nr; r++ {
				copy(y[(p+r)*outC+c0:][:nc], tmp[r*16:])
			}
		}
	}
}

// gemmRow4Dot computes blocks tiles of 4 pixels x 16 channels: rows r of x (at r*stride, k8
// taps) times the channels of block j (w[j*16*k8:], packed by dotIndex for form), requantized
// with q's groups 2j and 2j+1 into y[r*yStride + 16j + c]. It checks the bounds once and runs
// the form's assembly where the CPU has it.
func gemmRow4Dot(form int, x []int8, stride int, w []int8, k8 int, q []int32, y []int8, yStride, blocks int) {
	if k8 <= 0 || k8%8 != 0 || blocks <= 0 || stride < k8 || len(x) < 3*stride+k8 || len(w) < blocks*16*k8 ||
		len(q) < blocks*2*quantGroup || yStride < 16*blocks || len(y) < 3*yStride+16*blocks {
		panic(fmt.Sprintf("gemmRow4Dot: %d blocks of %d taps, stride %d, len(x) %d, len(w) %d, len(q) %d, len(y) %d, y stride %d",
			blocks, k8, stride, len(x), len(w), len(q), len(y), yStride))
	}
	gemmRow4x16Dot(form, x, stride, w, k8, q, y, yStride, blocks)
}

// gemmRow4x16DotGo is the portable gemmRow4Dot kernel (the reference for the assembly ones).
func gemmRow4x16DotGo(form int, x []int8, stride int, w []int8, k8 int, q []int32, y []int8, yStride, blocks int) {
	for j := range blocks {
		wj := w[j*16*k8 : (j+1)*16*k8]
		for r := range 4 {
			xr := x[r*stride : r*stride+k8]
			for c := range 16 {
				var acc int32
				for i, v := range xr {
					acc += int32(v) * int32(wj[dotIndex(form, c, i)])
				}
				y[r*yStride+16*j+c] = requantGroup(acc, q[(2*j+c/8)*quantGroup:], c%8)
			}
		}
	}
}
