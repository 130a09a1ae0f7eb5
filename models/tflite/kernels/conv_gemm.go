package kernels

import (
	"fmt"
	"math/bits"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/outpost-ml/outpost/models/tflite"
)

// The int8 CONV_2D fast path: im2col plus a blocked GEMM with int32 accumulators over weights
// packed once in Prepare. The forms, chosen per node in Prepare, give identical bytes:
//   - portable (pure Go, every GOARCH): int8 weights in pairs of channels, held once. On
//     64-bit machines a chunk of several pixels widens a few blocks of 4 channels at a time to
//     int64 pairs in worker scratch, two MACs per 64-bit multiply, tiles of 2 pixels x 4 channels
//     (run); single pixels, and 32-bit machines (armv7, 386), where a 64-bit multiply takes
//     several instructions, multiply the int8 weights directly, one multiply-accumulate a
//     MAC, tiles of 2 pixels x 2 channels or 1 pixel x 4 (run8);
//   - SIMD (amd64 AVX2, conv_gemm_amd64.s; arm64 NEON, conv_gemm_arm64.s; unless built with
//     -tags purego or forced portable): taps widened to int16, weights as interleaved int8 tap
//     pairs widened as they are loaded, VPMADDWD or SMLAL in tiles of 4 pixels x 16 channels
//     with the requantization vectorized too (gemm16, gemmRow4);
//   - dot product, where the CPU has the instructions: the same tiles on byte taps and int8
//     weights, with VPDPBUSD (amd64 AVX-VNNI or AVX-512 VNNI), SDOT (arm64 DotProd) or SMMLA
//     (arm64 I8MM) (conv_gemm_dot.go; int8Form chooses).
// The differential tests in conv_gemm_test.go and fc_gemm_test.go force every form in turn
// (on its Go kernel where the CPU lacks the instruction) and hold each to the reference
// arithmetic.
//
// Why it is bit-exact with reference_integer_ops::ConvPerChannel: the reference sums
// w * (x + input_offset) over the taps inside the input, in int32. Here im2col writes the input
// zero point at taps outside the input, so (x + input_offset) is 0 there exactly as a skipped
// tap, and the sum is split as Σ w*x + input_offset * Σ w, with input_offset * Σ w folded into
// the bias at Prepare. Both are the same integer (and the same value modulo 2^32 should a
// pathological model overflow), so requantization sees an identical accumulator.

// portable forces the pure-Go kernels even where a SIMD path exists: for timing both paths on
// one machine and for checking that they agree. OUTPOST_PORTABLE=1 sets it at start-up.
var portable atomic.Bool

func init() {
	if os.Getenv("OUTPOST_PORTABLE") == "1" {
		portable.Store(true)
	}
}

// SetPortable forces (on) or releases (off) the pure-Go kernels for the interpreters created
// afterwards, and returns the previous setting; interpreters already built keep the path they
// chose in Prepare. Both paths give identical integer results.
func SetPortable(on bool) (was bool) { return portable.Swap(on) }

// KernelPath names the int8 convolution path that an interpreter created now would use: on
// amd64 "avx2+avxvnni" or "avx2+avx512vnni" (VPDPBUSD) or "avx2"; on arm64 "neon-i8mm"
// (SMMLA), "neon-dotprod" (SDOT) or "neon" (Advanced SIMD alone) — the best the CPU has, the
// dot-product ones unless SetDotProduct(false) or OUTPOST_NO_DOTPROD=1, none of them when
// built with the purego tag or forced off by SetPortable / OUTPOST_PORTABLE=1 — or
// "portable".
func KernelPath() string { return formNames[int8Form()] }

func useSIMD() bool { return haveSIMD && !portable.Load() }

// gemmBlock is the number of output channels one packed weight block holds.
const gemmBlock = 4

// pairMACs says whether the portable GEMM widens its int8 weights, a few blocks of four channels
// at a time, to int64 pairs (w[c] + w[c+1]<<32) before the pixels of a chunk pass it, so that each
// 64-bit multiply does two MACs. That pays on 64-bit machines, where the multiply is one
// instruction, and costs a worker's scratch of 16 bytes a tap rather than 4 bytes a weight held
// (the pairs were stored until the weights had to be held once on every firmware target). On
// 32-bit ones a 64-bit multiply is three multiplies and a carry add, and eight 64-bit
// accumulators do not fit the registers: under GOARCH=arm the pairs' loop is 62 instructions for
// 8 MACs (22 of them stack loads and stores), the int8 loop 16 for 4. A variable so that the
// tests run both kernels on every machine.
var pairMACs = bits.UintSize == 64

// gemmInt8 is the per-node state of the int8 GEMM path.
type gemmInt8 struct {
	k       int       // taps per output pixel: FH*FW*C
	packed8 [][2]int8 // the portable path's weights as [ceil(OC/4)][2][k] pairs of channels, zero-padded
	widen   bool      // pairMACs at Prepare: chunks of two or more pixels widen their blocks first
	wide    int       // the worker scratch they widen into: wideN blocks of [k] int64 pairs
	wideN   int       // blocks widened at once (maxWideBytes)
	direct  bool      // 1x1, stride 1: the input rows are the im2col rows
	padVal  int8      // the input zero point, written for taps outside the input
	outOff  int32
	qMin    int32
	qMax    int32
	outC    int
	colRows int
	// rq is the only per-channel requantization the node holds (9 bytes a channel): the
	// portable store reads it, and the SIMD forms' vector table (quantGroup int32 per 8
	// channels, four times bigger) is written from it into the scratch at each Invoke.
	rq chanQuant

	// The SIMD path (see gemm16): the int8 weights interleaved in pairs of taps, as
	// [OC/8 rounded up to even][kp/2][8 channels][2 taps], zero-padded; kp is k rounded up to
	// even. The kernels widen them to int16 as they load them, so the packed copy is no
	// bigger than the model's own. Rows of int16 input taps are built per chunk of rows16
	// pixels (a multiple of 4).
	simd      bool
	kp        int
	wp        []int8
	qGroups   int         // groups of 8 channels in the quantTable (OC/8 rounded up to even)
	qHandle   int         // worker scratch: each worker's copy of the quantTable
	filled    workerFlags // which workers have made their quantTable in this Invoke
	rows16    int
	x16Handle int

	// The dot-product forms (conv_gemm_dot.go): qGroups, qHandle, rows16 and x16Handle serve
	// them too (the scratch holding rows of kd bytes).
	dot int    // the form (formAVXVNNI ... formI8MM), or 0 for the others
	kd  int    // k rounded up to dotPad(dot)
	w8  []int8 // [OC/16 rounded up][16*kd], each block packed by dotIndex

	workers int     // Node.Workers at Prepare: the scratch holds one chunk per worker
	groups  int     // ranges of output-channel blocks the parts cover (splitWork), at least 1
	chunks  int     // chunks of output pixels per batch (splitWork); chunk gives their pixels
	tile    int     // the pixels of a chunk are whole tiles of this many (bar the last)
	job     convJob // the Invoke in progress, for RunPart
}

// convJob is one Invoke of an int8 CONV_2D (or FULLY_CONNECTED) split into chunks of output
// pixels and ranges of output channels: part i is chunk i%chunks of batch i/chunks%batches,
// over channel range i/(chunks*batches) (see splitWork).
type convJob struct {
	g      *convGeom
	n      *tflite.Node
	x, y   []int8
	chunks int // per batch
}

// chanQuant is the requantization of each output channel: the bias (with the input offset's
// share, input_offset * Σ w, folded in), the multiplier and the shift (left if positive),
// as three slices so that a channel takes 9 bytes.
type chanQuant struct {
	bias, mult []int32
	shift      []int8
}

func newChanQuant(n int) chanQuant {
	return chanQuant{bias: make([]int32, n), mult: make([]int32, n), shift: make([]int8, n)}
}

// set sets channel c; shift is in [-31, 30], QuantizeMultiplier's range.
func (q chanQuant) set(c int, bias, mult int32, shift int) {
	q.bias[c], q.mult[c], q.shift[c] = bias, mult, int8(shift)
}

// requantShift is requantInt32 with the shift in one signed value.
func requantShift(x, mult int32, shift int8) int32 {
	return requantInt32(x, mult, uint8(max(shift, 0)), uint8(max(-shift, 0)))
}

// maxColBytes bounds the im2col scratch buffer; larger layers run in chunks of output pixels.
const maxColBytes = 64 << 10

func (g *convGeom) prepareGemm(n *tflite.Node, w []int8, b []int32) error {
	k := g.fH * g.fW * g.inC
	nb := (g.outC + gemmBlock - 1) / gemmBlock
	gm := &gemmInt8{k: k, rq: newChanQuant(g.outC),
		padVal: int8(-g.inOff), outOff: g.outOff, qMin: g.qMin, qMax: g.qMax, outC: g.outC,
		workers: parallelWorkers(n, g.batches*g.outH*g.outW*k*g.outC)}
	form := int8Form()
	simd := form != formPortable
	if !simd {
		// Only the portable kernel reads these: the other forms pack their own int8 copy, so
		// building both would hold the weights twice.
		gm.packed8 = make([][2]int8, nb*2*k)
	}
	for oc := 0; oc < g.outC; oc++ {
		ws := w[oc*k : (oc+1)*k]
		j := oc % gemmBlock
		var sum int32
		for i, v := range ws {
			if !simd {
				// Channel j of the block goes to pair j/2's run of k taps, lane j%2.
				gm.packed8[(oc/2)*k+i][j%2] = v
			}
			sum += int32(v)
		}
		var bias int32
		if b != nil {
			bias = b[oc]
		}
		gm.rq.set(oc, bias+g.inOff*sum, g.mult[oc], g.shift[oc])
	}
	gm.direct = g.fH == 1 && g.fW == 1 && g.strideH == 1 && g.strideW == 1 && g.padH == 0 && g.padW == 0
	g.gemm = gm
	switch {
	case isDot(form):
		if err := g.prepareGemm8(n, w, form); err != nil {
			return err
		}
	case simd:
		if err := g.prepareGemm16(n, w); err != nil {
			return err
		}
	default:
		gm.colRows = gm.splitWork(g.outH*g.outW, max(1, maxColBytes/k), 2, gemmBlock)
		if !gm.direct {
			h, err := n.RequestWorkerScratch(gm.colRows * k)
			if err != nil {
				return err
			}
			g.colScratch = h
		}
		if pairMACs {
			gm.wideN = max(1, min(nb, maxWideBytes/(16*k))) // at least 1, or run would not advance
			h, err := n.RequestWorkerScratch(16 * k * gm.wideN)
			if err != nil {
				return err
			}
			gm.widen, gm.wide = true, h
		}
	}
	// The GEMM runs every Invoke of this node and reads only gm.rq: the geometry's copies of
	// the multipliers and shifts are not needed any more.
	g.mult, g.shift = nil, nil
	return nil
}

// minParallelMACs is the least work, in multiply-accumulates, that a layer splits across
// workers. The helpers poll for work during an Invoke, so handing a part over costs well
// under a µs; what a split costs is the per-part set-up (im2col of the chunk's rows, the
// tile tails), which at 131,072 MACs (a few µs on the SIMD paths) is still small.
var minParallelMACs = 1 << 17 // a variable so that tests can split small layers

// parallelWorkers is the number of workers a layer of macs multiply-accumulates uses.
func parallelWorkers(n *tflite.Node, macs int) int {
	if macs < minParallelMACs {
		return 1
	}
	return n.Workers()
}

// partsPerWorker is how many chunks a split layer has per worker at least: with one chunk
// each, a worker that gets its core late makes the others wait at the end of the layer;
// with several, whoever runs takes the next one.
const partsPerWorker = 4

// splitChunks cuts per output pixels into chunks of whole tiles of tile pixels (the last
// tile may be short), each of at most limit pixels rounded up to a tile, and returns the
// number of chunks and the most pixels one holds (what a worker's scratch must take). With
// several workers there are at least partsPerWorker chunks a worker, as many as the tiles
// allow, and a multiple of the workers: chunk c covers tiles [c·T/chunks, (c+1)·T/chunks),
// so the chunks differ by a tile at most. Chunks of a fixed size left MobileNet's 14x14
// layers (49 tiles of 4) in 7 chunks, 4 to one worker and 3 to the other. The chunking
// decides only which goroutine computes a pixel, never how, so results do not depend on it.
func splitChunks(per, limit, workers, tile int) (chunks, rows int) {
	tiles := (per + tile - 1) / tile
	if tiles == 0 {
		return 0, tile // no output pixels (an empty tensor): no parts
	}
	most := max(1, (min(per, limit)+tile-1)/tile) // tiles a chunk may hold
	chunks = (tiles + most - 1) / most
	if workers > 1 {
		chunks = max(chunks, workers*partsPerWorker)
		chunks = (chunks + workers - 1) / workers * workers
		chunks = min(chunks, tiles)
	}
	return chunks, (tiles + chunks - 1) / chunks * tile
}

// chunk is the pixels [p0, p0+rows) of chunk c of the job (see splitChunks).
func (gm *gemmInt8) chunk(c, per int) (p0, rows int) {
	tiles := (per + gm.tile - 1) / gm.tile
	t0, t1 := c*tiles/gm.chunks, (c+1)*tiles/gm.chunks
	p0 = t0 * gm.tile
	return p0, min(t1*gm.tile, per) - p0
}

// splitWork chooses how an Invoke of the layer is cut into parts (per output pixels, at most
// limit per chunk in multiples of tile, blockC channels to a kernel block): gm.chunks and
// gm.tile as splitChunks has them, and it returns the most pixels a chunk holds; gm.groups is the number of ranges of whole
// channel blocks the chunks are crossed with. A layer of many more output channels than
// pixels (MobileNet's 7x7 expansions and last convolution, a FULLY_CONNECTED of one or a few
// rows) holds far more weights than input: split by pixels alone, every worker streams the
// whole weight matrix through its cache, and one row does not split at all. Such a layer is
// split by channel ranges as well (range-major, so that each worker owns a contiguous run of
// parts: its share of the weights, the same share at every Invoke), into enough parts for
// partsPerWorker each. Where the channels are fewer, the pixel split stays: a channel split
// builds each chunk's rows of taps once per range, and leaves the next layer's input pixels
// written half by one core and half by the other. Either way the split decides only which
// goroutine computes an output, never how.
func (gm *gemmInt8) splitWork(per, limit, tile, blockC int) int {
	w := gm.workers
	chunks, rows := splitChunks(per, limit, w, tile)
	gm.chunks, gm.tile, gm.groups = chunks, tile, 1
	if nb := (gm.outC + blockC - 1) / blockC; w > 1 && nb > 1 && gm.outC >= chanSplitRatio*per {
		gm.groups = min(nb, max(w, (w*partsPerWorker+chunks-1)/chunks))
	}
	return rows
}

// chanSplitRatio is how many times more output channels than output pixels a layer has at
// least for splitWork to split it by channels. Timed per node on MobileNet v2 with 2 threads,
// the 7x7 layers of 320 to 1280 channels and the 1000-unit FULLY_CONNECTED gained from it;
// the 7x7 ones of 160 channels did not, and at 14x14 (384 and 576 channels) what the
// expansions gained the projections after them lost. A variable so that tests can force it.
var chanSplitRatio = 4

// prepareGemm16 packs the weights for the SIMD path and requests its int16 row buffer.
func (g *convGeom) prepareGemm16(n *tflite.Node, w []int8) error {
	gm := g.gemm
	k := gm.k
	gm.simd = true
	gm.kp = k + k%2
	pairs := gm.kp / 2
	nb8 := (g.outC + 15) / 16 * 2
	gm.wp = make([]int8, nb8*pairs*16)
	for oc := 0; oc < g.outC; oc++ {
		blk := gm.wp[(oc/8)*pairs*16:]
		j := oc % 8
		for i, v := range w[oc*k : (oc+1)*k] {
			blk[(i/2)*16+j*2+i%2] = v
		}
	}
	if err := gm.requestQuantTable(n, nb8); err != nil {
		return err
	}
	per := g.outH * g.outW
	gm.rows16 = gm.splitWork(per, max(4, maxColBytes/(2*gm.kp)&^3), 4, 16)
	h, err := n.RequestWorkerScratch(gm.rows16 * gm.kp * 2)
	if err != nil {
		return err
	}
	gm.x16Handle = h
	return nil
}

// requestQuantTable reserves the worker scratch of the SIMD forms' quantTable of groups
// groups. Each worker makes its own copy at its first part of an Invoke (quantTableOf): one
// copy, made by the caller and read by the others, came to them from the caller's cache at
// every layer, which on a host whose cores share no cache cost up to 30 µs a layer (docs/
// performance.md, "Threads, round 4").
func (gm *gemmInt8) requestQuantTable(n *tflite.Node, groups int) error {
	h, err := n.RequestWorkerScratch(groups * quantGroup * 4)
	gm.qGroups, gm.qHandle, gm.filled = groups, h, newWorkerFlags(n.Workers())
	return err
}

// quantTableOf is worker w's quantTable, made from gm.rq on its first call of the Invoke.
func (gm *gemmInt8) quantTableOf(n *tflite.Node, w int) []int32 {
	t := int32s(n.WorkerScratch(gm.qHandle, w), gm.qGroups*quantGroup)
	if gm.filled.first(w) {
		fillQuantTable(t, gm.rq, gm.outOff, gm.qMin, gm.qMax)
	}
	return t
}

// convInt8 runs the int8 CONV_2D: direct GEMM for pointwise layers, im2col chunks otherwise,
// the chunks spread over the node's workers.
func (g *convGeom) convInt8(n *tflite.Node, x, y []int8) {
	gm := g.gemm
	if gm.simd {
		gm.filled.reset()
	}
	gm.job = convJob{g: g, n: n, x: x, y: y, chunks: gm.chunks}
	parts := gm.groups * g.batches * gm.job.chunks
	if gm.workers == 1 {
		for i := range parts {
			gm.job.RunPart(0, i)
		}
	} else {
		n.Parallel(parts, &gm.job)
	}
	gm.job = convJob{}
}

// RunPart computes chunk part of the job on worker w's scratch.
func (j *convJob) RunPart(w, part int) {
	g := j.g
	gm := g.gemm
	per := g.outH * g.outW
	inSize := g.inH * g.inW * g.inC
	bc := g.batches * j.chunks
	grp, bt, c := part/bc, part%bc/j.chunks, part%j.chunks
	xb := j.x[bt*inSize : (bt+1)*inSize]
	yb := j.y[bt*per*g.outC : (bt+1)*per*g.outC]
	if gm.simd {
		// Channel range grp of the blocks of 16 channels.
		nb := (g.outC + 15) / 16
		lo, hi := grp*nb/gm.groups, (grp+1)*nb/gm.groups
		p0, rows := gm.chunk(c, per)
		ys := yb[p0*g.outC : (p0+rows)*g.outC]
		if gm.dot != 0 {
			buf := j.n.WorkerScratch(gm.x16Handle, w)[:gm.rows16*gm.kd]
			g.convChunk8(buf, gm.quantTableOf(j.n, w), xb, p0, rows, ys, lo, hi)
			return
		}
		buf := int16s(j.n.WorkerScratch(gm.x16Handle, w), gm.rows16*gm.kp)
		g.convChunk16(buf, gm.quantTableOf(j.n, w), xb, p0, rows, ys, lo, hi)
		return
	}
	nb := (g.outC + gemmBlock - 1) / gemmBlock
	lo, hi := grp*nb/gm.groups, (grp+1)*nb/gm.groups
	k := gm.k
	p0, rows := gm.chunk(c, per)
	ys := yb[p0*g.outC : (p0+rows)*g.outC]
	var wide [][2]int64
	if gm.widen && rows >= minWidenPixels {
		wide = pairs64(j.n.WorkerScratch(gm.wide, w), k*gm.wideN)
	}
	if gm.direct {
		gm.run(xb[p0*k:(p0+rows)*k], rows, ys, lo, hi, wide)
		return
	}
	col := int8s(j.n.WorkerScratch(g.colScratch, w), gm.colRows*k)
	oy, ox := p0/g.outW, p0%g.outW // stepped, not divided, per pixel
	for r := 0; r < rows; r++ {
		im2colRow(g, xb, oy, ox, col[r*k:(r+1)*k], gm.padVal)
		if ox++; ox == g.outW {
			oy, ox = oy+1, 0
		}
	}
	gm.run(col[:rows*k], rows, ys, lo, hi, wide)
}

// im2colRow writes the taps of output pixel (oy, ox) in filter order [FH][FW][C], pad for
// those outside the input (the int8 zero point, or 0 for float32).
func im2colRow[T int8 | float32](g *convGeom, x []T, oy, ox int, row []T, pad T) {
	iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
	c := g.inC
	i := 0
	// With unit dilation a filter row inside the input is FW·C contiguous values: one copy.
	whole := g.dilW == 1 && ix0 >= 0 && ix0+g.fW <= g.inW
	for fy := 0; fy < g.fH; fy++ {
		iy := iy0 + fy*g.dilH
		if whole && iy >= 0 && iy < g.inH {
			n := g.fW * c
			copy(row[i:i+n], x[(iy*g.inW+ix0)*c:])
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
				copy(dst, x[(iy*g.inW+ix)*c:])
			}
			i += c
		}
	}
}

// convChunk16 is the SIMD path's chunk: the input taps of output pixels p0..p0+rows of one
// batch are widened to int16 rows in buf (im2col, or the input pixels themselves for pointwise
// layers), then gemm16 multiplies them by the packed weights of channel blocks [lo, hi) into y.
func (g *convGeom) convChunk16(buf []int16, q []int32, xb []int8, p0, rows int, y []int8, lo, hi int) {
	gm := g.gemm
	k, kp := gm.k, gm.kp
	if gm.direct && kp == k {
		// Input pixels and int16 rows are both contiguous: one pass for the chunk.
		widen(buf[:rows*k], xb[p0*k:(p0+rows)*k])
	}
	oy, ox := p0/g.outW, p0%g.outW // stepped, not divided, per pixel
	for r := 0; r < rows && !(gm.direct && kp == k); r++ {
		row := buf[r*kp : (r+1)*kp]
		if gm.direct {
			widen(row[:k], xb[(p0+r)*k:(p0+r+1)*k])
		} else {
			g.im2colRow16(xb, oy, ox, row[:k], int16(gm.padVal))
		}
		if ox++; ox == g.outW {
			oy, ox = oy+1, 0
		}
	}
	if kp != k {
		// The odd tap's partner has a zero weight; zero the input too so the
		// products are plainly 0.
		for r := 0; r < rows; r++ {
			buf[r*kp+k] = 0
		}
	}
	// Whole tiles of four pixels: the pad rows' results are computed and discarded.
	tiles := (rows + 3) &^ 3
	clear(buf[rows*kp : tiles*kp])
	gm.gemm16(buf[:tiles*kp], q, rows, y, lo, hi)
}

// widen sign-extends src into dst (of the same length).
func widen(dst []int16, src []int8) {
	dst = dst[:len(src)]
	n := len(src) &^ 15
	if n > 0 {
		widen16(dst[:n], src[:n])
	}
	for i := n; i < len(src); i++ {
		dst[i] = int16(src[i])
	}
}

// widen16Go is the portable widen16: len(src) is a positive multiple of 16.
func widen16Go(dst []int16, src []int8) {
	for i, v := range src {
		dst[i] = int16(v)
	}
}

// im2colRow16 is im2colRow writing int16 taps.
func (g *convGeom) im2colRow16(x []int8, oy, ox int, row []int16, pad int16) {
	iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
	c := g.inC
	// A filter row whose taps all lie inside the input and touch (dilation 1) is one
	// contiguous run of fW*C values: widen it in one call, vectorised where widen16 is.
	rowInside := g.dilW == 1 && ix0 >= 0 && ix0+g.fW <= g.inW
	i := 0
	for fy := 0; fy < g.fH; fy++ {
		iy := iy0 + fy*g.dilH
		if rowInside && iy >= 0 && iy < g.inH {
			n := g.fW * c
			if n < 16 {
				// Too short for widen16 (a first layer's 3x3 filter row over RGB): a loop
				// here rather than widen's call.
				dst := row[i : i+n]
				for j, v := range x[(iy*g.inW+ix0)*c:][:n] {
					dst[j] = int16(v)
				}
			} else {
				widen(row[i:i+n], x[(iy*g.inW+ix0)*c:][:n])
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
				widen(dst, x[(iy*g.inW+ix)*c:][:len(dst)])
			}
			i += c
		}
	}
}

// gemm16 multiplies int16 rows (a multiple of four, kp taps each) by the packed int8 weights
// in tiles of 4 pixels x 16 channels, requantizing the first pixels rows of the channels of
// blocks [lo, hi) into y with q (the node's quantTable). Whole tiles are written in place;
// edge tiles go through tmp.
func (gm *gemmInt8) gemm16(x16 []int16, q []int32, pixels int, y []int8, lo, hi int) {
	var tmp [64]int8
	kp, outC := gm.kp, gm.outC
	pairs := kp / 2
	blk := pairs * 16
	full := min(hi, outC/16) // the whole 16-channel blocks end
	end := min(outC, hi*16)
	for p := 0; p < pixels; p += 4 {
		xt := x16[p*kp : (p+4)*kp]
		nr := min(4, pixels-p)
		c0 := lo * 16
		if nr == 4 && full > lo {
			gemmRow4(xt, kp, gm.wp[2*lo*blk:], pairs, q[2*lo*quantGroup:], y[p*outC+c0:], outC, full-lo)
			c0 = full * 16
		}
		for ; c0 < end; c0 += 16 {
			b := c0 / 8
			gemmRow4(xt, kp, gm.wp[b*blk:], pairs, q[b*quantGroup:], tmp[:], 16, 1)
			nc := min(16, outC-c0)
			for r := 0; r < nr; r++ {
				copy(y[(p+r)*outC+c0:][:nc], tmp[r*16:])
			}
		}
	}
}

// quantGroup is the size in int32 of one group of 8 channels in a quantTable.
const quantGroup = 9 * 8

// fillQuantTable lays out the per-channel requantization of rq in t for the SIMD kernels:
// for each group of 8 channels (len(t)/quantGroup of them, channels past len(rq) zero), 9
// vectors of 8 int32: bias, multiplier, left shift, right shift, RoundingDivideByPOT's mask
// and mask>>1, output offset, activation minimum and maximum. Nodes hold only rq and write
// the table into their scratch at each Invoke: it is 36 bytes a channel against rq's 9, and
// writing it costs a few stores per channel against the channel's pixels x taps
// multiply-adds.
func fillQuantTable(t []int32, rq chanQuant, outOff, qMin, qMax int32) {
	g0 := 0
	if full := min(len(t)/quantGroup, len(rq.bias)/8); full > 0 {
		g0 = fillQuantGroups(t[:full*quantGroup], rq, full, outOff, qMin, qMax)
	}
	fillQuantTableGo(t, rq, g0, outOff, qMin, qMax)
}

// fillQuantTableGo is fillQuantTable from group g0 on, in Go.
func fillQuantTableGo(t []int32, rq chanQuant, g0 int, outOff, qMin, qMax int32) {
	// Group by group, whole vectors at a time: this runs at every Invoke.
	for g := g0; g < len(t)/quantGroup; g++ {
		v := t[g*quantGroup : (g+1)*quantGroup : (g+1)*quantGroup]
		c0 := min(8*g, len(rq.bias))
		n := min(8, len(rq.bias)-c0)
		bias, mult, shift := rq.bias[c0:c0+n], rq.mult[c0:c0+n], rq.shift[c0:c0+n]
		copy(v[0:8], bias)
		copy(v[8:16], mult)
		for j, s := range shift {
			r := uint32(max(-s, 0))
			mask := int32(uint32(1)<<r - 1)
			v[16+j], v[24+j], v[32+j], v[40+j] = int32(max(s, 0)), int32(r), mask, mask>>1
		}
		if n < 8 {
			// Channels past the end (the last group's tail) are zero.
			for i := 0; i < 48; i += 8 {
				clear(v[i+n : i+8])
			}
		}
		for j := range 8 {
			v[48+j], v[56+j], v[64+j] = outOff, qMin, qMax
		}
	}
}

// requantGroup requantizes the accumulators of channels j of a quantTable group (the
// portable form of the assembly's REQUANT).
func requantGroup(a int32, q []int32, j int) int8 {
	v := requantInt32(a+q[j], q[8+j], uint8(q[16+j]), uint8(q[24+j])) + q[48+j]
	return int8(min(max(v, q[56+j]), q[64+j]))
}

// gemmRow4 computes blocks tiles of 4 pixels x 16 channels: for rows r of x (at r*stride)
// and the channels of block j (w[j*32*pairs:], two groups of 8 channels each [pairs][8][2]
// interleaved), the int32 sum of the products (wrapping as TFLite's accumulators),
// requantized with q's groups 2j and 2j+1 into y[r*yStride + 16j + c]. It checks the bounds
// once and runs the SIMD kernel where there is one.
func gemmRow4(x []int16, stride int, w []int8, pairs int, q []int32, y []int8, yStride, blocks int) {
	if pairs <= 0 || blocks <= 0 || stride < 2*pairs || len(x) < 3*stride+2*pairs || len(w) < blocks*32*pairs ||
		len(q) < blocks*2*quantGroup || yStride < 16*blocks || len(y) < 3*yStride+16*blocks {
		panic(fmt.Sprintf("gemmRow4: %d blocks of %d pairs, stride %d, len(x) %d, len(w) %d, len(q) %d, len(y) %d, y stride %d",
			blocks, pairs, stride, len(x), len(w), len(q), len(y), yStride))
	}
	gemmRow4x16(x, stride, w, pairs, q, y, yStride, blocks)
}

// gemmRow4x16Go is the portable gemmRow4 kernel (the reference for the assembly one).
func gemmRow4x16Go(x []int16, stride int, w []int8, pairs int, q []int32, y []int8, yStride, blocks int) {
	for j := range blocks {
		wj := w[j*32*pairs:]
		gemmTile4x16Go(x, stride, wj[:16*pairs], wj[16*pairs:32*pairs], pairs, q[2*j*quantGroup:], y[16*j:], yStride)
	}
}

// gemmTile4x16Go is one block of gemmRow4x16Go.
func gemmTile4x16Go(x []int16, stride int, w0, w1 []int8, pairs int, q []int32, y []int8, yStride int) {
	for r := 0; r < 4; r++ {
		xr := x[r*stride : r*stride+2*pairs]
		var a [16]int32
		for i := 0; i < pairs; i++ {
			x0, x1 := int32(xr[2*i]), int32(xr[2*i+1])
			u, v := w0[i*16:i*16+16], w1[i*16:i*16+16]
			for c := 0; c < 8; c++ {
				a[c] += x0*int32(u[2*c]) + x1*int32(u[2*c+1])
				a[8+c] += x0*int32(v[2*c]) + x1*int32(v[2*c+1])
			}
		}
		ys := y[r*yStride : r*yStride+16]
		for c := range 8 {
			ys[c] = requantGroup(a[c], q, c)
			ys[8+c] = requantGroup(a[8+c], q[quantGroup:], c)
		}
	}
}

// maxWideBytes bounds the worker scratch of blocks widened at once: a few blocks, so that a
// pair of pixels' taps is read from L1 for all of them (one block at a time, a chunk's 64 KB
// of taps streamed from L2 once per block made ResNet-8 13 % slower), few enough to stay in L1
// beside them.
const maxWideBytes = 16 << 10

// minWidenPixels is the fewest pixels for which a chunk widens its weights to int64 pairs:
// widening a block costs about what one pixel's pass over it saves, so a single pixel
// (FULLY_CONNECTED on one batch, where each weight is read once) takes the int8 kernel.
const minWidenPixels = 2

// run multiplies rows (pixels x k, row-major) by the packed weights of channel blocks
// [lo, hi) into y (pixels x OC), requantizing each accumulator. With wide (pairMACs, and
// enough pixels) each block is first widened into it as int64 pairs, and each 64-bit multiply
// then does two MACs: x * (w0 + w1<<32) accumulates Σx*w0 in the low 32 bits and Σx*w1 above
// them (the low sum's sign borrows from the high half, undone in split); two pixels and four
// channels per step share every load. The dot loops are small leaf functions so that their
// accumulators stay in registers.
func (gm *gemmInt8) run(rows []int8, pixels int, y []int8, lo, hi int, wide [][2]int64) {
	if wide == nil {
		gm.run8(rows, pixels, y, lo, hi)
		return
	}
	k, outC := gm.k, gm.outC
	for g0 := lo; g0 < hi; g0 += gm.wideN {
		g1 := min(g0+gm.wideN, hi)
		for b := g0; b < g1; b++ {
			widenBlock(wide[(b-g0)*k:(b-g0+1)*k], gm.packed8[2*b*k:(2*b+1)*k], gm.packed8[(2*b+1)*k:(2*b+2)*k])
		}
		p := 0
		for ; p+2 <= pixels; p += 2 {
			x0, x1 := rows[p*k:p*k+k], rows[p*k+k:p*k+2*k]
			ys := y[p*outC : (p+2)*outC]
			for b := g0; b < g1; b++ {
				a01, a23, b01, b23 := dot2x4(x0, x1, wide[(b-g0)*k:(b-g0+1)*k])
				gm.store2(ys, b*gemmBlock, a01, a23)
				gm.store2(ys[outC:], b*gemmBlock, b01, b23)
			}
		}
		if p < pixels {
			x0, y0 := rows[p*k:p*k+k], y[p*outC:p*outC+outC]
			for b := g0; b < g1; b++ {
				a01, a23 := dot1x4(x0, wide[(b-g0)*k:(b-g0+1)*k])
				gm.store2(y0, b*gemmBlock, a01, a23)
			}
		}
	}
}

// widenBlock writes a block's int8 weights (channels 0 and 1 in w01, 2 and 3 in w23) to dst
// as the pairs w[c] + w[c+1]<<32 that dot2x4 and dot1x4 multiply by.
func widenBlock(dst [][2]int64, w01, w23 [][2]int8) {
	w01 = w01[:len(dst)]
	w23 = w23[:len(dst)]
	for i := range dst {
		dst[i] = [2]int64{int64(w01[i][0]) + int64(w01[i][1])<<32, int64(w23[i][0]) + int64(w23[i][1])<<32}
	}
}

// run8 is run on the int8 packing: per block, two pixels times each pair of channels, four
// int32 accumulators, what 32-bit ARM's registers hold beside the pointers.
func (gm *gemmInt8) run8(rows []int8, pixels int, y []int8, lo, hi int) {
	k, outC := gm.k, gm.outC
	w := gm.packed8
	p := 0
	for ; p+2 <= pixels; p += 2 {
		x0, x1 := rows[p*k:p*k+k], rows[p*k+k:p*k+2*k]
		ys := y[p*outC : (p+2)*outC]
		for b := lo; b < hi; b++ {
			a0, a1, b0, b1 := dot2x2(x0, x1, w[2*b*k:(2*b+1)*k])
			a2, a3, b2, b3 := dot2x2(x0, x1, w[(2*b+1)*k:(2*b+2)*k])
			gm.store(ys, b*gemmBlock, a0, a1, a2, a3)
			gm.store(ys[outC:], b*gemmBlock, b0, b1, b2, b3)
		}
	}
	for ; p < pixels; p++ {
		x0 := rows[p*k : p*k+k]
		y0 := y[p*outC : p*outC+outC]
		for b := lo; b < hi; b++ {
			a0, a1, a2, a3 := dot1x4b(x0, w[2*b*k:(2*b+1)*k], w[(2*b+1)*k:(2*b+2)*k])
			gm.store(y0, b*gemmBlock, a0, a1, a2, a3)
		}
	}
}

// dot2x2 returns the sums of two rows of taps with a pair of channels' int8 weights.
//
//go:noinline
func dot2x2(x0, x1 []int8, w [][2]int8) (a0, a1, b0, b1 int32) {
	w = w[:len(x0)]
	x1 = x1[:len(x0)]
	for i, v := range x0 {
		u, t := int32(v), int32(x1[i])
		w0, w1 := int32(w[i][0]), int32(w[i][1])
		a0 += u * w0
		b0 += t * w0
		a1 += u * w1
		b1 += t * w1
	}
	return
}

// dot1x4b is dot2x2 for one row and both pairs of a block: one load of each tap for four
// channels (the last pixel of a chunk, and FULLY_CONNECTED on one batch).
//
//go:noinline
func dot1x4b(x0 []int8, w01, w23 [][2]int8) (a0, a1, a2, a3 int32) {
	w01 = w01[:len(x0)]
	w23 = w23[:len(x0)]
	for i, v := range x0 {
		u := int32(v)
		a0 += u * int32(w01[i][0])
		a1 += u * int32(w01[i][1])
		a2 += u * int32(w23[i][0])
		a3 += u * int32(w23[i][1])
	}
	return
}

// dot2x4 returns the paired sums of two rows of taps with a block of packed weights.
//
//go:noinline
func dot2x4(x0, x1 []int8, w [][2]int64) (a01, a23, b01, b23 int64) {
	w = w[:len(x0)]
	x1 = x1[:len(x0)]
	for i, v := range x0 {
		p01, p23 := w[i][0], w[i][1]
		u, t := int64(v), int64(x1[i])
		a01 += u * p01
		a23 += u * p23
		b01 += t * p01
		b23 += t * p23
	}
	return
}

// dot1x4 is dot2x4 for one row.
//
//go:noinline
func dot1x4(x0 []int8, w [][2]int64) (a01, a23 int64) {
	w = w[:len(x0)]
	for i, v := range x0 {
		u := int64(v)
		a01 += u * w[i][0]
		a23 += u * w[i][1]
	}
	return
}

// store2 splits two paired accumulators and requantizes them into channels oc..oc+3 of y.
func (gm *gemmInt8) store2(y []int8, oc int, a01, a23 int64) {
	a0, a1 := split(a01)
	a2, a3 := split(a23)
	gm.store(y, oc, a0, a1, a2, a3)
}

// split separates the two int32 sums of a paired accumulator.
func split(a int64) (lo, hi int32) {
	lo = int32(a)
	return lo, int32((a - int64(lo)) >> 32)
}

// store requantizes up to four accumulators of channels oc..oc+3 into y.
func (gm *gemmInt8) store(y []int8, oc int, a0, a1, a2, a3 int32) {
	if oc+gemmBlock <= gm.outC {
		// Constant indexes into slices of length 4: no bounds checks below.
		b, m, s := gm.rq.bias[oc:oc+4:oc+4], gm.rq.mult[oc:oc+4:oc+4], gm.rq.shift[oc:oc+4:oc+4]
		ys := y[oc : oc+4 : oc+4]
		lo, hi, off := gm.qMin, gm.qMax, gm.outOff
		ys[0] = int8(min(max(requantShift(a0+b[0], m[0], s[0])+off, lo), hi))
		ys[1] = int8(min(max(requantShift(a1+b[1], m[1], s[1])+off, lo), hi))
		ys[2] = int8(min(max(requantShift(a2+b[2], m[2], s[2])+off, lo), hi))
		ys[3] = int8(min(max(requantShift(a3+b[3], m[3], s[3])+off, lo), hi))
		return
	}
	for j, a := range [gemmBlock]int32{a0, a1, a2, a3} {
		if oc+j < gm.outC {
			gm.store1(y, oc+j, a)
		}
	}
}

func (gm *gemmInt8) store1(y []int8, c int, a int32) {
	q := gm.rq
	v := requantShift(a+q.bias[c], q.mult[c], q.shift[c]) + gm.outOff
	y[c] = int8(min(max(v, gm.qMin), gm.qMax))
}

// requantInt32 is MultiplyByQuantizedMultiplier with the shift pre-split into its left and
// right parts: SaturatingRoundingDoublingHighMul(x << left, q), then RoundingDivideByPOT, in
// a branch-free form that gives the same integers:
//   - q is never negative here (QuantizeMultiplier of a positive scale), so the high multiply's
//     saturating case (x == q == MinInt32) cannot occur, and its rounding, (ab + nudge) / 2^31
//     truncating with nudge = 2^30 or 1-2^30 by the sign of ab, equals floor((ab + 2^30) / 2^31)
//     for either sign;
//   - RoundingDivideByPOT rounds half away from zero: floor((h + 2^(right-1) - [h < 0]) / 2^right)
//     for right > 0, computed in 64 bits so h + 2^(right-1) cannot overflow.
func requantInt32(x, q int32, left, right uint8) int32 {
	x <<= left
	if bits.UintSize == 32 {
		return requantNarrow(x, q, right)
	}
	h := (int64(x)*int64(q) + 1<<30) >> 31
	half := int64(1) << right >> 1
	return int32((h + half + (h>>63)&(-half>>63)) >> right)
}

// requantNarrow is requantInt32 after the left shift, in 32-bit operations for 32-bit
// machines, where the 64-bit form's multiply is three multiplies and its variable 64-bit
// shifts need a dozen instructions more (GOARCH=arm: 44 instructions, this form 24):
//   - the high multiply is one unsigned 32x32 multiply, its high word made signed by
//     subtracting q where x is negative (q is never negative), 2^30 carried in, and the
//     product's bits 31..62 taken: they are h, which fits an int32 since |x*q| < 2^62;
//   - RoundingDivideByPOT as TFLite writes it, in int32: the remainder under the mask
//     against a threshold of half the mask, one more for a negative h, the comparison taken
//     as the sign of their difference (both lie in [0, 2^31), so it cannot overflow).
func requantNarrow(x, q int32, right uint8) int32 {
	hi, lo := bits.Mul32(uint32(x), uint32(q))
	hi -= uint32(q) & uint32(x>>31)
	lo, carry := bits.Add32(lo, 1<<30, 0)
	h := int32((hi+carry)<<1 | lo>>31)
	mask := int32(1)<<right - 1
	thr := mask>>1 + int32(uint32(h)>>31)
	return h>>right - (thr-h&mask)>>31
}

// int32s and int64s view scratch bytes (16-byte aligned by the planner) as n integers.
func int32s(b []byte, n int) []int32 {
	return unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(b[:4*n]))), n)
}

func int8s(b []byte, n int) []int8 {
	return unsafe.Slice((*int8)(unsafe.Pointer(unsafe.SliceData(b[:n]))), n)
}

// int8Bytes views v as bytes.
func int8Bytes(v []int8) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v))
}

func int16s(b []byte, n int) []int16 {
	return unsafe.Slice((*int16)(unsafe.Pointer(unsafe.SliceData(b[:2*n]))), n)
}

func pairs64(b []byte, n int) [][2]int64 {
	return unsafe.Slice((*[2]int64)(unsafe.Pointer(unsafe.SliceData(b[:16*n]))), n)
}

func int64s(b []byte, n int) []int64 {
	return unsafe.Slice((*int64)(unsafe.Pointer(unsafe.SliceData(b[:8*n]))), n)
}
