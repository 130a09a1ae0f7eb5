package kernels

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/outpost-ml/outpost/models/tflite"
)

// The dot-product form of the SIMD int8 GEMM, for CPUs with byte dot-product instructions
// (amd64 AVX-VNNI or AVX-512 VNNI with VL: VPDPBUSD). It replaces gemm16 in Prepare when the
// CPU has them; conv and FULLY_CONNECTED share it through prepareGemm.
//
// VPDPBUSD multiplies unsigned bytes by signed bytes, four products summed into each int32
// lane, wrapping. The int8 taps x are fed as u = x + 128 (x XOR 0x80), so each lane sums
// Σ w*u = Σ w*x + 128 Σ w; the bias given to the requantization is bias - 128 Σ w (in
// wrapping int32, like the accumulator), so the accumulator plus bias is the same int32 as
// the reference's Σ w*(x + input_offset) + bias, modulo 2^32 as TFLite's own wraps. No
// product saturates (|u*w| <= 255*128) and the four-term sums cannot overflow a lane.
//
// Layout: taps as rows of kq bytes (k rounded up to a multiple of 4, the extra taps 0), built
// per chunk of rows16 pixels; weights as [OC/8 rounded up to even][kq/4][8 channels][4 taps]
// int8, zero-padded, so one 32-byte load holds a quad of taps for 8 channels, the shape of
// gemm16's tap pairs. The tiles are gemm16's: 4 pixels x 16 channels.

// noDot forces the AVX2 (VPMADDWD) form on CPUs that have dot-product instructions: for
// timing both forms on one machine and checking that they agree. OUTPOST_NO_DOTPROD=1 sets it
// at start-up.
var noDot atomic.Bool

func init() {
	if os.Getenv("OUTPOST_NO_DOTPROD") == "1" {
		noDot.Store(true)
	}
}

// SetDotProduct allows (on) or forbids (off) the dot-product GEMM for the interpreters created
// afterwards, and returns the previous setting. Both forms give identical bytes.
func SetDotProduct(on bool) (was bool) { return !noDot.Swap(!on) }

// useDot reports whether a GEMM prepared now takes the dot-product form.
func useDot() bool { return haveDot && useSIMD() && !noDot.Load() }

// prepareGemm8 packs the weights for the dot-product form and requests its byte row buffer;
// gm.bias, mult and the shifts are set.
func (g *convGeom) prepareGemm8(n *tflite.Node, w []int8) error {
	gm := g.gemm
	k := gm.k
	gm.simd, gm.dot = true, true
	gm.kq = (k + 3) &^ 3
	quads := gm.kq / 4
	nb8 := (g.outC + 15) / 16 * 2
	gm.w8 = make([]int8, nb8*quads*32)
	bias := make([]int32, g.outC)
	for oc := 0; oc < g.outC; oc++ {
		blk := gm.w8[(oc/8)*quads*32:]
		j := oc % 8
		var sum int32
		for i, v := range w[oc*k : (oc+1)*k] {
			blk[(i/4)*32+j*4+i%4] = v
			sum += int32(v)
		}
		bias[oc] = gm.bias[oc] - 128*sum
	}
	gm.q16 = quantTable(nb8, bias, gm.mult, g.shift, gm.outOff, gm.qMin, gm.qMax)
	per := g.outH * g.outW
	gm.rows16 = splitRows(per, max(4, maxColBytes/gm.kq&^3), gm.workers, 4)
	h, err := n.RequestScratch(gm.workers * gm.rows16 * gm.kq)
	if err != nil {
		return err
	}
	gm.x16Handle = h
	return nil
}

// convChunk8 is convChunk16 for the dot-product form: the taps of output pixels p0..p0+rows
// become rows of offset bytes in buf, then gemm8 multiplies them into y.
func (g *convGeom) convChunk8(buf []byte, xb []int8, p0, rows int, y []int8) {
	gm := g.gemm
	k, kq := gm.k, gm.kq
	if gm.direct && kq == k {
		flipBytes(buf[:rows*k], xb[p0*k:(p0+rows)*k])
	} else {
		pad := byte(gm.padVal) ^ 0x80
		for r := 0; r < rows; r++ {
			row := buf[r*kq : (r+1)*kq]
			if gm.direct {
				flipBytes(row[:k], xb[(p0+r)*k:(p0+r+1)*k])
			} else {
				g.im2colRowU8(xb, (p0+r)/g.outW, (p0+r)%g.outW, row[:k], pad)
			}
			// The extra taps meet zero weights; zero them so the products are plainly 0.
			clear(row[k:])
		}
	}
	// Whole tiles of four pixels: the pad rows' results are computed and discarded.
	tiles := (rows + 3) &^ 3
	clear(buf[rows*kq : tiles*kq])
	gm.gemm8(buf[:tiles*kq], rows, y)
}

// flipBytes writes src + 128 as unsigned bytes (x XOR 0x80) into dst (of the same length):
// whole 32-byte runs through flip32 (vectorised where the dot-product kernels are), the
// rest eight at a time.
func flipBytes(dst []byte, src []int8) {
	dst = dst[:len(src)]
	n := len(src) &^ 31
	if n > 0 {
		flip32(dst[:n], src[:n])
	}
	flip32Go(dst[n:], src[n:])
}

// flip32Go is the portable flip32, for any length.
func flip32Go(dst []byte, src []int8) {
	s := int8Bytes(src)
	dst = dst[:len(s)]
	n := len(s) &^ 7
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(s[i:])^0x8080808080808080)
	}
	for i := n; i < len(s); i++ {
		dst[i] = s[i] ^ 0x80
	}
}

// im2colRowU8 is im2colRow writing offset bytes; pad is the zero point's byte.
func (g *convGeom) im2colRowU8(x []int8, oy, ox int, row []byte, pad byte) {
	iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
	c := g.inC
	// A filter row whose taps all lie inside the input and touch (dilation 1) is one
	// contiguous run of fW*C values.
	rowInside := g.dilW == 1 && ix0 >= 0 && ix0+g.fW <= g.inW
	i := 0
	for fy := 0; fy < g.fH; fy++ {
		iy := iy0 + fy*g.dilH
		if rowInside && iy >= 0 && iy < g.inH {
			n := g.fW * c
			flipBytes(row[i:i+n], x[(iy*g.inW+ix0)*c:][:n])
			i += n
			continue
		}
		for fx := 0; fx < g.fW; fx++ {
			ix := ix0 + fx*g.dilW
			dst := row[i : i+c]
			if iy < 0 || iy >= g.inH || ix < 0 || ix >= g.inW {
				for j := range dst {
					dst[j] = pad
				}
			} else {
				flipBytes(dst, x[(iy*g.inW+ix)*c:][:c])
			}
			i += c
		}
	}
}

// gemm8 is gemm16 for the dot-product form: byte rows (a multiple of four, kq taps each)
// times the packed int8 weights, requantizing the first pixels rows into y.
func (gm *gemmInt8) gemm8(x8 []byte, pixels int, y []int8) {
	var tmp [64]int8
	kq, outC := gm.kq, gm.outC
	quads := kq / 4
	blk := quads * 32 // one group of 8 channels
	full := outC / 16
	for p := 0; p < pixels; p += 4 {
		xt := x8[p*kq : (p+4)*kq]
		nr := min(4, pixels-p)
		c0 := 0
		if nr == 4 && full > 0 {
			gemmRowU8(xt, kq, gm.w8, quads, gm.q16, y[p*outC:], outC, full)
			c0 = full * 16
		}
		for ; c0 < outC; c0 += 16 {
			b := c0 / 8
			gemmRowU8(xt, kq, gm.w8[b*blk:], quads, gm.q16[b*quantGroup:], tmp[:], 16, 1)
			nc := min(16, outC-c0)
			for r := 0; r < nr; r++ {
				copy(y[(p+r)*outC+c0:][:nc], tmp[r*16:])
			}
		}
	}
}

// gemmRowU8 computes blocks tiles of 4 pixels x 16 channels: for rows r of x (offset bytes
// at r*stride) and the channels of block j (w[j*64*quads:], two groups of 8 channels each
// [quads][8][4]), the wrapping int32 sum of the products, requantized with q's groups 2j and
// 2j+1 into y[r*yStride + 16j + c]. It checks the bounds once and runs the dot-product kernel
// where there is one.
func gemmRowU8(x []byte, stride int, w []int8, quads int, q []int32, y []int8, yStride, blocks int) {
	if quads <= 0 || blocks <= 0 || stride < 4*quads || len(x) < 3*stride+4*quads || len(w) < blocks*64*quads ||
		len(q) < blocks*2*quantGroup || yStride < 16*blocks || len(y) < 3*yStride+16*blocks {
		panic(fmt.Sprintf("gemmRowU8: %d blocks of %d quads, stride %d, len(x) %d, len(w) %d, len(q) %d, len(y) %d, y stride %d",
			blocks, quads, stride, len(x), len(w), len(q), len(y), yStride))
	}
	gemmRow4x16U8(x, stride, w, quads, q, y, yStride, blocks)
}

// gemmRow4x16U8Go is the portable gemmRowU8 kernel (the reference for the assembly ones).
func gemmRow4x16U8Go(x []byte, stride int, w []int8, quads int, q []int32, y []int8, yStride, blocks int) {
	for j := range blocks {
		w0 := w[j*64*quads : j*64*quads+32*quads]
		w1 := w[j*64*quads+32*quads : (j+1)*64*quads]
		qj := q[2*j*quantGroup:]
		for r := 0; r < 4; r++ {
			xr := x[r*stride : r*stride+4*quads]
			var a [16]int32
			for i := 0; i < quads; i++ {
				u, v := w0[i*32:i*32+32], w1[i*32:i*32+32]
				for t := 0; t < 4; t++ {
					xv := int32(xr[4*i+t])
					for c := 0; c < 8; c++ {
						a[c] += xv * int32(u[4*c+t])
						a[8+c] += xv * int32(v[4*c+t])
					}
				}
			}
			ys := y[r*yStride+16*j : r*yStride+16*j+16]
			for c := range 8 {
				ys[c] = requantGroup(a[c], qj, c)
				ys[8+c] = requantGroup(a[8+c], qj[quantGroup:], c)
			}
		}
	}
}
