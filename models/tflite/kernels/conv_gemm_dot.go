package kernels

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/outpost-ml/outpost/models/tflite"
)

// The int8 GEMM's forms and its dot-product forms, shared by both architectures. A dot-product
// form keeps the taps as bytes and packs the weights as int8 for an instruction that sums
// several byte products into each int32 lane:
//   - amd64 AVX-VNNI or AVX-512 VNNI (with VL): VPDPBUSD, unsigned bytes times signed bytes,
//     four products per lane (conv_gemm_amd64.s);
//   - arm64 DotProd: SDOT by element, signed bytes, four products per lane; arm64 I8MM: SMMLA,
//     a 2x8 by 8x2 signed matrix product per register (conv_gemm_arm64.s).
// All use gemm16's tiles (4 pixels x 16 channels), its quantTable and requantization, and the
// same split of the input offset into the bias, so the int32 accumulators are the reference's
// and the bytes identical. Each form also has a Go kernel (gemmRow4x16DotGo), which runs where
// the CPU lacks the instruction: tests force every form on every machine that way, so one
// form's packing and driver are checked on the other architecture too.
//
// VPDPBUSD's taps are unsigned: the int8 taps x are fed as u = x + 128 (x XOR 0x80), so each
// lane sums Σ w*u = Σ w*x + 128 Σ w, and the bias given to the requantization is
// bias - 128 Σ w (in wrapping int32, like the accumulator): accumulator plus bias is the same
// int32 as the reference's Σ w*(x + input_offset) + bias, modulo 2^32 as TFLite's own wraps.
// SDOT and SMMLA take the int8 taps as they are. No product saturates (|u*w| <= 255*128,
// |x*w| <= 128*128) and no four- or eight-term sum overflows a lane.

// The int8 GEMM forms. Prepare takes the first dot-product form in dotPreference that the CPU
// runs in assembly, else formWiden where there is SIMD, else formPortable.
const (
	formPortable   = iota // pure Go, int8 weights (conv_gemm.go: run)
	formWiden             // taps widened to int16: AVX2 VPMADDWD or NEON SMLAL (gemm16)
	formAVXVNNI           // offset bytes, VPDPBUSD VEX-encoded (AVX-VNNI)
	formAVX512VNNI        // offset bytes, VPDPBUSD EVEX-encoded (AVX-512 VNNI + VL)
	formSDOT              // int8 taps, SDOT by element (ARMv8.2 DotProd)
	formI8MM              // int8 taps, SMMLA (ARMv8.6 I8MM)
	numForms
)

// formNames are the KernelPath values. formWiden is "avx2" or "neon" (simdName); it is
// "int16" where there is no SIMD and it runs only when a test forces it.
var formNames = [numForms]string{
	formPortable:   "portable",
	formWiden:      simdName,
	formAVXVNNI:    "avx2+avxvnni",
	formAVX512VNNI: "avx2+avx512vnni",
	formSDOT:       "neon-dotprod",
	formI8MM:       "neon-i8mm",
}

// dotPreference orders the dot-product forms: on amd64 the VEX form where both exist (the
// same work without the EVEX encoding), on arm64 SMMLA (twice SDOT's products per
// instruction). Only one architecture's forms can be native on a CPU.
var dotPreference = [...]int{formI8MM, formSDOT, formAVXVNNI, formAVX512VNNI}

// unsignedTaps says whether a dot-product form takes its taps as offset bytes (x + 128).
func unsignedTaps(form int) bool { return form == formAVXVNNI || form == formAVX512VNNI }

// dotPad is the multiple a dot-product form's rows of taps are padded to (the extra taps are
// zero and meet zero weights): a quad for VPDPBUSD; 8 for SDOT and SMMLA, whose kernels step
// 8 taps at a time.
func dotPad(form int) int {
	if unsignedTaps(form) {
		return 4
	}
	return 8
}

// dotIndex is the offset of weight (channel c of a 16-channel block, tap i) in the block's
// packing for form; a block holds 16*kd weights (kd: the padded taps per row):
//   - VNNI: two groups of 8 channels, each [kd/4 quads][8 channels][4 taps], so one 32-byte
//     load holds a quad of taps for 8 channels (the shape of gemm16's tap pairs);
//   - SDOT: groups of 8 taps of 128 bytes, [2 quads][16 channels][4 taps], one register
//     holding 4 channels x 4 taps;
//   - SMMLA: groups of 8 taps of 128 bytes, [8 channel pairs][2 channels][8 taps], one
//     register per channel pair.
func dotIndex(form, kd, c, i int) int {
	switch form {
	case formI8MM:
		return i/8*128 + c/2*16 + c%2*8 + i%8
	case formSDOT:
		return i/8*128 + i/4%2*64 + c*4 + i%4
	}
	return c/8*8*kd + i/4*32 + c%8*4 + i%4
}

// noDot forces the int16 form on CPUs that have dot-product instructions: for timing both
// forms on one machine and checking that they agree. OUTPOST_NO_DOTPROD=1 sets it at
// start-up.
var noDot atomic.Bool

// forceForm, when not negative, is the form Prepare takes whatever the settings and the CPU
// (tests: every form on one machine; a form the CPU lacks runs its Go kernel).
var forceForm atomic.Int32

func init() {
	if os.Getenv("OUTPOST_NO_DOTPROD") == "1" {
		noDot.Store(true)
	}
	forceForm.Store(-1)
}

// SetDotProduct allows (on) or forbids (off) the dot-product GEMM forms for the interpreters
// created afterwards, and returns the previous setting. Every form gives identical bytes.
func SetDotProduct(on bool) (was bool) { return !noDot.Swap(!on) }

// setInt8Form forces form f for the GEMMs prepared afterwards (-1: the settings' and the
// CPU's choice) and returns the previous setting.
func setInt8Form(f int) int { return int(forceForm.Swap(int32(f))) }

// int8Form is the form an int8 CONV_2D or FULLY_CONNECTED prepared now takes.
func int8Form() int {
	if f := forceForm.Load(); f >= 0 {
		return int(f)
	}
	if !useSIMD() {
		return formPortable
	}
	if !noDot.Load() {
		for _, f := range dotPreference {
			if haveForm[f] {
				return f
			}
		}
	}
	return formWiden
}

// isDot says whether form is a dot-product form.
func isDot(form int) bool { return form >= formAVXVNNI && form < numForms }

// prepareGemm8 packs the weights for dot-product form and requests its byte row buffer;
// gm.rq is set, and takes the unsigned forms' bias.
func (g *convGeom) prepareGemm8(n *tflite.Node, w []int8, form int) error {
	gm := g.gemm
	k := gm.k
	gm.simd, gm.dot = true, form
	pad := dotPad(form)
	gm.kd = (k + pad - 1) / pad * pad
	nb := (g.outC + 15) / 16
	gm.w8 = make([]int8, nb*16*gm.kd)
	for oc := 0; oc < g.outC; oc++ {
		blk := gm.w8[(oc/16)*16*gm.kd:]
		var sum int32
		for i, v := range w[oc*k : (oc+1)*k] {
			blk[dotIndex(form, gm.kd, oc%16, i)] = v
			sum += int32(v)
		}
		if unsignedTaps(form) {
			// Only the SIMD store reads rq on this form: it holds the form's bias.
			gm.rq.bias[oc] -= 128 * sum
		}
	}
	if err := gm.requestQuantTable(n, 2*nb); err != nil {
		return err
	}
	per := g.outH * g.outW
	gm.rows16 = gm.splitWork(per, max(4, maxColBytes/gm.kd&^3), 4, 16)
	h, err := n.RequestWorkerScratch(gm.rows16 * gm.kd)
	if err != nil {
		return err
	}
	gm.x16Handle = h
	return nil
}

// convChunk8 is convChunk16 for the dot-product forms: the taps of output pixels p0..p0+rows
// become rows of kd bytes in buf (im2col, or the input pixels themselves for pointwise
// layers; offset by 128 for the unsigned forms, the taps past k zero), then gemm8 multiplies
// them by the weights of channel blocks [lo, hi) into y.
func (g *convGeom) convChunk8(buf []byte, q []int32, xb []int8, p0, rows int, y []int8, lo, hi int) {
	gm := g.gemm
	k, kd := gm.k, gm.kd
	flip := unsignedTaps(gm.dot)
	if gm.direct && kd == k {
		// Input pixels and rows are both contiguous: one pass for the chunk.
		putTaps(buf[:rows*k], xb[p0*k:(p0+rows)*k], flip)
	} else {
		pad := byte(gm.padVal)
		if flip {
			pad ^= 0x80
		}
		oy, ox := p0/g.outW, p0%g.outW // stepped, not divided, per pixel
		for r := 0; r < rows; r++ {
			row := buf[r*kd : (r+1)*kd]
			if gm.direct {
				putTaps(row[:k], xb[(p0+r)*k:(p0+r+1)*k], flip)
			} else {
				g.im2colRow8(xb, oy, ox, row[:k], pad, flip)
			}
			if ox++; ox == g.outW {
				oy, ox = oy+1, 0
			}
			// The extra taps (up to 3, or 7 where the arm64 forms pad to 8) meet zero
			// weights; zero them so the products are plainly 0. A loop: clear would call
			// memclr for each pixel.
			for j := k; j < kd; j++ {
				row[j] = 0
			}
		}
	}
	// Whole tiles of four pixels: the pad rows' results are computed and discarded.
	tiles := (rows + 3) &^ 3
	clear(buf[rows*kd : tiles*kd])
	gm.gemm8(buf[:tiles*kd], q, rows, y, lo, hi)
}

// putTaps writes src into dst (of the same length) as bytes: offset by 128 when flip.
func putTaps(dst []byte, src []int8, flip bool) {
	if flip {
		flipBytes(dst, src)
	} else {
		copy(dst[:len(src)], int8Bytes(src))
	}
}

// putTaps8to16 is putTaps for 8 to 16 values: the first eight and the last eight, which
// overlap unless there are 16.
func putTaps8to16(dst []byte, src []int8, flip bool) {
	s := int8Bytes(src)
	n := len(s)
	dst = dst[:n]
	var m uint64
	if flip {
		m = 0x8080808080808080
	}
	lo, hi := binary.LittleEndian.Uint64(s[:8]), binary.LittleEndian.Uint64(s[n-8:])
	binary.LittleEndian.PutUint64(dst[:8], lo^m)
	binary.LittleEndian.PutUint64(dst[n-8:], hi^m)
}

// flipBytes writes src + 128 as unsigned bytes (x XOR 0x80) into dst (of the same length):
// whole 32-byte runs through flip32 (vectorised on amd64), the rest eight at a time.
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

// im2colRow8 is im2colRow writing bytes (offset ones when flip); pad is the zero point's byte
// as written.
func (g *convGeom) im2colRow8(x []int8, oy, ox int, row []byte, pad byte, flip bool) {
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
			if n >= 8 && n <= 16 {
				// A first layer's 3x3 filter row over RGB (9 taps): two overlapping 8-byte
				// moves rather than putTaps' calls, which took half of such a layer's time.
				putTaps8to16(row[i:i+n], x[(iy*g.inW+ix0)*c:][:n], flip)
			} else {
				putTaps(row[i:i+n], x[(iy*g.inW+ix0)*c:][:n], flip)
			}
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
				putTaps(dst, x[(iy*g.inW+ix)*c:][:c], flip)
			}
			i += c
		}
	}
}

// gemm8 is gemm16 for the dot-product forms: byte rows (a multiple of four, kd taps each)
// times the packed int8 weights of channel blocks [lo, hi), requantizing the first pixels
// rows into y.
func (gm *gemmInt8) gemm8(x8 []byte, q []int32, pixels int, y []int8, lo, hi int) {
	var tmp [64]int8
	kd, outC := gm.kd, gm.outC
	blk := 16 * kd           // one block of 16 channels
	full := min(hi, outC/16) // the whole blocks end
	end := min(outC, hi*16)
	for p := 0; p < pixels; p += 4 {
		xt := x8[p*kd : (p+4)*kd]
		nr := min(4, pixels-p)
		c0 := lo * 16
		if nr == 4 && full > lo {
			gemmRowDot(gm.dot, xt, kd, gm.w8[lo*blk:], kd, q[2*lo*quantGroup:], y[p*outC+c0:], outC, full-lo)
			c0 = full * 16
		}
		for ; c0 < end; c0 += 16 {
			b := c0 / 16
			gemmRowDot(gm.dot, xt, kd, gm.w8[b*blk:], kd, q[2*b*quantGroup:], tmp[:], 16, 1)
			nc := min(16, outC-c0)
			for r := 0; r < nr; r++ {
				copy(y[(p+r)*outC+c0:][:nc], tmp[r*16:])
			}
		}
	}
}

// gemmRowDot computes blocks tiles of 4 pixels x 16 channels for dot-product form: rows r of
// x (kd bytes at r*stride) times the channels of block j (w[j*16*kd:], packed by dotIndex),
// the wrapping int32 sums requantized with q's groups 2j and 2j+1 into y[r*yStride + 16j + c].
// It checks the bounds once and runs the form's assembly where the CPU has it, else its Go
// kernel.
func gemmRowDot(form int, x []byte, stride int, w []int8, kd int, q []int32, y []int8, yStride, blocks int) {
	if !isDot(form) || kd <= 0 || kd%dotPad(form) != 0 || blocks <= 0 || stride < kd || len(x) < 3*stride+kd ||
		len(w) < blocks*16*kd || len(q) < blocks*2*quantGroup || yStride < 16*blocks || len(y) < 3*yStride+16*blocks {
		panic(fmt.Sprintf("gemmRowDot: form %d, %d blocks of %d taps, stride %d, len(x) %d, len(w) %d, len(q) %d, len(y) %d, y stride %d",
			form, blocks, kd, stride, len(x), len(w), len(q), len(y), yStride))
	}
	if haveForm[form] {
		gemmRow4x16Dot(form, x, stride, w, kd, q, y, yStride, blocks)
		return
	}
	gemmRow4x16DotGo(form, x, stride, w, kd, q, y, yStride, blocks)
}

// gemmRow4x16DotGo is the portable gemmRowDot kernel of every dot-product form (the
// reference for the assembly ones): the taps read as unsigned or signed bytes by the form.
func gemmRow4x16DotGo(form int, x []byte, stride int, w []int8, kd int, q []int32, y []int8, yStride, blocks int) {
	var tap [256]int32
	for v := range tap {
		tap[v] = int32(int8(v))
		if unsignedTaps(form) {
			tap[v] = int32(v)
		}
	}
	for j := range blocks {
		wj := w[j*16*kd : (j+1)*16*kd]
		for r := range 4 {
			xr := x[r*stride : r*stride+kd]
			for c := range 16 {
				var acc int32
				for i, v := range xr {
					acc += tap[v] * int32(wj[dotIndex(form, kd, c, i)])
				}
				y[r*yStride+16*j+c] = requantGroup(acc, q[(2*j+c/8)*quantGroup:], c%8)
			}
		}
	}
}
