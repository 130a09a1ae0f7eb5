package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Pooling: AVERAGE_POOL_2D and MAX_POOL_2D in float32, int8 and int16, L2_POOL_2D in float32
// (the dtypes TFLite Micro has), NHWC. The quantized kernels work in the input's units, as
// reference_integer_ops::AveragePool and MaxPool do: no requantization, only the fused
// activation clamp in output units.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpAveragePool2D, 1, 3, poolKernel(poolAvg))
		r.AddBuiltin(schema.OpMaxPool2D, 1, 3, poolKernel(poolMax))
		r.AddBuiltin(schema.OpL2Pool2D, 1, 1, poolKernel(poolL2))
	})
}

type poolKind uint8

const (
	poolAvg poolKind = iota
	poolMax
	poolL2
)

type poolData struct {
	kind                 poolKind
	batches, inH, inW, c int
	outH, outW           int
	fH, fW               int
	strideH, strideW     int
	padH, padW           int
	fMin, fMax           float32
	qMin, qMax           int32
	dtype                tensor.DType

	// The quantized kernels (poolJob, poolIntRow) compute parts of chunk channels of one
	// output row, chunks parts per row, with per-worker accumulators in scratch.
	fast          bool // quantized average or maximum with no empty window
	chunk, chunks int
	scratch       int // handle: workers × poolScratchBytes(chunk)
	job           poolJob
}

// poolJob is a quantized pooling cut into parts of one output row and one run of channels.
type poolJob struct {
	d       *poolData
	n       *tflite.Node
	in, out *tensor.Tensor
	scratch [][]byte // the workers' scratch in tests; nil: the node's worker scratch
}

// minParallelPool is the least number of input reads (output elements × window taps) a
// quantized pooling splits across workers (a variable so that tests can split small ones).
// MobileNet v2's global average pool (7×7×1280) is 62,720.
var minParallelPool = 1 << 15

// poolParts is how many parts a pooling of few output rows is cut into by channels, and
// poolMinChunk the fewest channels of a part.
const (
	poolParts    = 8
	poolMinChunk = 64
)

func poolKernel(kind poolKind) tflite.Kernel {
	return tflite.KernelFuncs{
		PrepareFn: func(n *tflite.Node) error { return preparePool(n, kind) },
		EvalFn:    evalPool,
	}
}

// preparePool checks a pooling node: input [N,H,W,C], output [N,OH,OW,C] of the same dtype.
func preparePool(n *tflite.Node, kind poolKind) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	o, ok := n.Options.(*tflite.Pool2DOptions)
	if !ok {
		return fmt.Errorf("missing Pool2DOptions")
	}
	if err := rank4(in, "input"); err != nil {
		return err
	}
	if err := rank4(out, "output"); err != nil {
		return err
	}
	if err := checkStrides(o.StrideH, o.StrideW, 1, 1); err != nil {
		return err
	}
	if o.FilterHeight <= 0 || o.FilterWidth <= 0 {
		return fmt.Errorf("filter %dx%d, want positive", o.FilterHeight, o.FilterWidth)
	}
	d := &poolData{kind: kind, batches: in.Dim(0), inH: in.Dim(1), inW: in.Dim(2), c: in.Dim(3),
		fH: o.FilterHeight, fW: o.FilterWidth, strideH: o.StrideH, strideW: o.StrideW, dtype: in.DType()}
	d.outH = computeOutSize(o.Padding, d.inH, d.fH, d.strideH, 1)
	d.outW = computeOutSize(o.Padding, d.inW, d.fW, d.strideW, 1)
	if d.outH <= 0 || d.outW <= 0 {
		return fmt.Errorf("filter %dx%d larger than input %dx%d", d.fH, d.fW, d.inH, d.inW)
	}
	if err := checkOutShape(out, d.batches, d.outH, d.outW, d.c); err != nil {
		return err
	}
	d.padH = computePadding(d.strideH, 1, d.inH, d.fH, d.outH)
	d.padW = computePadding(d.strideW, 1, d.inW, d.fW, d.outW)
	if out.DType() != in.DType() {
		return fmt.Errorf("input %q is %s but output %q is %s", in.Name(), in.DType(), out.Name(), out.DType())
	}
	switch {
	case in.DType() == tensor.Float32:
		var err error
		if d.fMin, d.fMax, err = floatActivationRange(o.Activation); err != nil {
			return err
		}
	case kind != poolL2 && (in.DType() == tensor.Int8 || in.DType() == tensor.Int16 || in.DType() == tensor.Uint8):
		if _, _, err := perTensor(in); err != nil {
			return err
		}
		if _, _, err := perTensor(out); err != nil {
			return err
		}
		var err error
		if d.qMin, d.qMax, err = quantActivationRange(o.Activation, out); err != nil {
			return err
		}
	default:
		return fmt.Errorf("input %q is %s, not supported (float32; int8, int16 and uint8 for average and max pooling)", in.Name(), in.DType())
	}
	if d.dtype != tensor.Float32 && !d.emptyWindow() {
		d.fast = true
		d.chunk, d.chunks = d.c, 1
		if rows := d.batches * d.outH; rows < poolParts && d.c >= 2*poolMinChunk {
			// Few rows (a global pool has one): cut the channels instead, in runs of a
			// multiple of 8 (poolSum8's words).
			cuts := (poolParts + rows - 1) / rows
			d.chunk = max(poolMinChunk, ((d.c+cuts-1)/cuts+7)&^7)
			d.chunks = (d.c + d.chunk - 1) / d.chunk
		}
		h, err := n.RequestWorkerScratch(poolScratchBytes(d.chunk))
		if err != nil {
			return err
		}
		d.scratch = h
	}
	n.Data = d
	return nil
}

// emptyWindow reports whether some output's window covers no input rows or no input
// columns; those poolings keep the loop of evalPool, which fails there as
// reference_integer_ops::AveragePool does.
func (d *poolData) emptyWindow() bool {
	empty := func(out, stride, pad, f, size int) bool {
		for o := range out {
			i0 := o*stride - pad
			if min(f, size-i0)-max(0, -i0) <= 0 {
				return true
			}
		}
		return false
	}
	return empty(d.outH, d.strideH, d.padH, d.fH, d.inH) || empty(d.outW, d.strideW, d.padW, d.fW, d.inW)
}

func evalPool(n *tflite.Node) error {
	d := n.Data.(*poolData)
	in, out := n.Input(0), n.Output(0)
	if d.fast {
		d.job = poolJob{d: d, n: n, in: in, out: out}
		parts := d.batches * d.outH * d.chunks
		if d.batches*d.outH*d.outW*d.fH*d.fW*d.c < minParallelPool {
			for p := range parts {
				d.job.RunPart(0, p)
			}
		} else {
			n.Parallel(parts, &d.job)
		}
		d.job = poolJob{}
		return nil
	}
	return d.poolLoop(in, out)
}

// poolLoop is pooling output by output and channel by channel, as the reference kernels are
// written: the float32 and L2 kernels, and the quantized ones where a window is empty.
func (d *poolData) poolLoop(in, out *tensor.Tensor) error {
	for bt := 0; bt < d.batches; bt++ {
		for oy := 0; oy < d.outH; oy++ {
			for ox := 0; ox < d.outW; ox++ {
				// The window clipped to the input, as the reference kernels compute it.
				iy0, ix0 := oy*d.strideH-d.padH, ox*d.strideW-d.padW
				fy0, fy1 := max(0, -iy0), min(d.fH, d.inH-iy0)
				fx0, fx1 := max(0, -ix0), min(d.fW, d.inW-ix0)
				count := (fy1 - fy0) * (fx1 - fx0)
				if count <= 0 {
					// reference_integer_ops::AveragePool returns false on an empty window.
					return fmt.Errorf("pooling window at output (%d,%d) covers no input", oy, ox)
				}
				o := ((bt*d.outH+oy)*d.outW + ox) * d.c
				base := (bt*d.inH+iy0)*d.inW + ix0
				switch d.dtype {
				case tensor.Float32:
					d.poolFloat(in.Float32(), out.Float32()[o:o+d.c], base, fy0, fy1, fx0, fx1, count)
				case tensor.Int8:
					poolInt(d, in.Int8(), out.Int8()[o:o+d.c], base, fy0, fy1, fx0, fx1, count)
				case tensor.Int16:
					poolInt(d, in.Int16(), out.Int16()[o:o+d.c], base, fy0, fy1, fx0, fx1, count)
				case tensor.Uint8:
					poolInt(d, in.Uint8(), out.Uint8()[o:o+d.c], base, fy0, fy1, fx0, fx1, count)
				}
			}
		}
	}
	return nil
}

func (d *poolData) poolFloat(x, y []float32, base, fy0, fy1, fx0, fx1, count int) {
	for c := range y {
		var acc float32
		if d.kind == poolMax {
			acc = float32(math.Inf(-1))
		}
		for fy := fy0; fy < fy1; fy++ {
			for fx := fx0; fx < fx1; fx++ {
				v := x[(base+fy*d.inW+fx)*d.c+c]
				switch d.kind {
				case poolAvg:
					acc += v
				case poolMax:
					acc = max(acc, v)
				case poolL2:
					acc += v * v
				}
			}
		}
		switch d.kind {
		case poolAvg:
			acc /= float32(count)
		case poolL2:
			acc = float32(math.Sqrt(float64(acc / float32(count))))
		}
		y[c] = clampF(acc, d.fMin, d.fMax)
	}
}

// poolInt is reference_integer_ops::AveragePool / MaxPool for int8 and int16: the average is
// the int32 sum divided by the window size rounding half away from zero; the maximum starts
// at the type's lowest value; both are clamped to the activation range.
func poolInt[T int8 | int16 | uint8](d *poolData, x, y []T, base, fy0, fy1, fx0, fx1, count int) {
	for c := range y {
		var acc int32
		if d.kind == poolMax {
			acc = math.MinInt32
		}
		for fy := fy0; fy < fy1; fy++ {
			for fx := fx0; fx < fx1; fx++ {
				v := int32(x[(base+fy*d.inW+fx)*d.c+c])
				if d.kind == poolMax {
					acc = max(acc, v)
				} else {
					acc += v
				}
			}
		}
		if d.kind == poolAvg {
			n := int32(count)
			if acc > 0 {
				acc = (acc + n/2) / n
			} else {
				acc = (acc - n/2) / n
			}
		}
		y[c] = T(min(max(acc, d.qMin), d.qMax))
	}
}

// poolScratchBytes is one worker's scratch for parts of chunk channels: chunk int32 sums and,
// for poolSum8, two uint64 words of four 16-bit lanes per 8 channels.
func poolScratchBytes(chunk int) int {
	c8 := (chunk + 7) &^ 7
	return 4*c8 + 2*c8
}

func (j *poolJob) RunPart(worker, part int) {
	d := j.d
	row, k := part/d.chunks, part%d.chunks
	c0 := k * d.chunk
	c1 := min(c0+d.chunk, d.c)
	var s []byte
	if j.scratch != nil {
		s = j.scratch[worker]
	} else {
		s = j.n.WorkerScratch(d.scratch, worker)
	}
	c8 := (d.chunk + 7) &^ 7
	acc, lanes := int32s(s, c8), uint64s(s[4*c8:], c8/4)
	switch d.dtype {
	case tensor.Int8:
		poolIntRow(d, j.in.Int8(), j.out.Int8(), j.in.Bytes(), row, c0, c1, acc, lanes)
	case tensor.Uint8:
		poolIntRow(d, j.in.Uint8(), j.out.Uint8(), j.in.Bytes(), row, c0, c1, acc, lanes)
	case tensor.Int16:
		poolIntRow(d, j.in.Int16(), j.out.Int16(), nil, row, c0, c1, acc, lanes)
	}
}

// poolIntRow computes channels [c0, c1) of output row row (batch × output height) of a
// quantized average or max pool, with the integers of poolInt: the window's int32 sum (or
// maximum) of each channel, here taken tap by tap over a run of channels (for 8-bit averages
// eight channels a word, poolSum8), then divided rounding half away from zero, and clamped.
// Integer sums (wrapping, as int32 arithmetic does) and maxima do not depend on the order
// they are taken in.
func poolIntRow[T int8 | int16 | uint8](d *poolData, x, y []T, xb []byte, row, c0, c1 int, acc []int32, lanes []uint64) {
	bt, oy := row/d.outH, row%d.outH
	cn := c1 - c0
	acc = acc[:cn]
	iy0 := oy*d.strideH - d.padH
	fy0, fy1 := max(0, -iy0), min(d.fH, d.inH-iy0)
	c8 := 0 // channels [0, c8) of the run go through poolSum8
	flip, bias := uint64(0), int32(0)
	if d.kind == poolAvg && xb != nil {
		c8 = cn &^ 7
		if d.dtype == tensor.Int8 {
			flip, bias = signs8, 128
		}
	}
	lanes = lanes[:c8/4]
	for ox := 0; ox < d.outW; ox++ {
		ix0 := ox*d.strideW - d.padW
		fx0, fx1 := max(0, -ix0), min(d.fW, d.inW-ix0)
		rowTaps := fx1 - fx0
		count := (fy1 - fy0) * rowTaps
		first := ((bt*d.inH+iy0+fy0)*d.inW+ix0+fx0)*d.c + c0 // tap (fy0, fx0), channel c0
		if d.kind == poolMax {
			for i := range acc {
				acc[i] = math.MinInt32
			}
		} else {
			clear(acc)
		}
		if c8 > 0 {
			// Up to 256 taps of at most 255 fit a 16-bit lane.
			ty, tx := 0, 0
			for done := 0; done < count; {
				nt := min(count-done, 256)
				clear(lanes)
				ty, tx = poolSum8(lanes, xb, first, rowTaps, d.c, d.inW*d.c, ty, tx, nt, c8, flip)
				poolUnpack8(acc[:c8], lanes, bias*int32(nt))
				done += nt
			}
		}
		if c8 < cn {
			a := acc[c8:]
			for fy := 0; fy < fy1-fy0; fy++ {
				for fx := range rowTaps {
					o := first + (fy*d.inW+fx)*d.c
					xs := x[o+c8 : o+cn]
					if d.kind == poolMax {
						for i, v := range xs {
							a[i] = max(a[i], int32(v))
						}
					} else {
						for i, v := range xs {
							a[i] += int32(v)
						}
					}
				}
			}
		}
		o := ((bt*d.outH+oy)*d.outW+ox)*d.c + c0
		ys := y[o : o+cn]
		if d.kind == poolMax {
			for i, v := range acc {
				ys[i] = T(min(max(v, d.qMin), d.qMax))
			}
			continue
		}
		n := int32(count)
		for i, v := range acc {
			if v > 0 {
				v = (v + n/2) / n
			} else {
				v = (v - n/2) / n
			}
			ys[i] = T(min(max(v, d.qMin), d.qMax))
		}
	}
}

const (
	lanes16 = 0x00FF00FF00FF00FF
	signs8  = 0x8080808080808080
)

// poolSum8 adds n taps of c8 8-bit channels into lanes, starting at tap (ty, tx) of a window
// whose rows hold rowTaps taps colStride bytes apart, the rows rowStride bytes apart, tap
// (0, 0) at x[first:]; it returns the tap after the last. Word 2w of lanes holds channels 8w,
// 8w+2, 8w+4, 8w+6 as 16-bit lanes, word 2w+1 the odd ones. int8 input is biased to 0..255 by
// flipping its sign bits (flip is signs8; poolUnpack8 takes the bias off), uint8 is not (flip
// 0). With n at most 256 no lane carries into the next.
func poolSum8(lanes []uint64, x []byte, first, rowTaps, colStride, rowStride, ty, tx, n, c8 int, flip uint64) (int, int) {
	next := func() []byte {
		o := first + ty*rowStride + tx*colStride
		if tx++; tx == rowTaps {
			ty, tx = ty+1, 0
		}
		return x[o : o+c8]
	}
	for ; n >= 4; n -= 4 {
		r0, r1, r2, r3 := next(), next(), next(), next()
		for w := 0; w+1 < len(lanes); w += 2 {
			i := 4 * w
			a := binary.LittleEndian.Uint64(r0[i:]) ^ flip
			b := binary.LittleEndian.Uint64(r1[i:]) ^ flip
			c := binary.LittleEndian.Uint64(r2[i:]) ^ flip
			e := binary.LittleEndian.Uint64(r3[i:]) ^ flip
			lanes[w] += a&lanes16 + b&lanes16 + c&lanes16 + e&lanes16
			lanes[w+1] += a>>8&lanes16 + b>>8&lanes16 + c>>8&lanes16 + e>>8&lanes16
		}
	}
	for ; n > 0; n-- {
		r := next()
		for w := 0; w+1 < len(lanes); w += 2 {
			a := binary.LittleEndian.Uint64(r[4*w:]) ^ flip
			lanes[w] += a & lanes16
			lanes[w+1] += a >> 8 & lanes16
		}
	}
	return ty, tx
}

// poolUnpack8 adds the 16-bit lanes of poolSum8, less bias each, to acc (8 channels per two
// words).
func poolUnpack8(acc []int32, lanes []uint64, bias int32) {
	for w := 0; w+1 < len(lanes); w += 2 {
		e, o := lanes[w], lanes[w+1]
		a := acc[4*w : 4*w+8]
		a[0] += int32(e&0xffff) - bias
		a[1] += int32(o&0xffff) - bias
		a[2] += int32(e>>16&0xffff) - bias
		a[3] += int32(o>>16&0xffff) - bias
		a[4] += int32(e>>32&0xffff) - bias
		a[5] += int32(o>>32&0xffff) - bias
		a[6] += int32(e>>48) - bias
		a[7] += int32(o>>48) - bias
	}
}

func uint64s(b []byte, n int) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b[:8*n]))), n)
}
