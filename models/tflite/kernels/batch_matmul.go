package kernels

import (
	"fmt"
	"math"
	"slices"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// BATCH_MATMUL as TFLite's reference kernel (reference/batch_matmul.h, TFLM batch_matmul.cc):
// out[..., i, j] = sum_k lhs[..., i, k] * rhs[..., k, j], with adj_x/adj_y transposing the last
// two dimensions and the batch dimensions (rank up to 5) broadcast. float32 accumulates in
// float32 in k order; int8 accumulates in int32 and int16 in int64, then rescale with the
// fixed-point multiplier of lhs_scale*rhs_scale/output_scale. There is no fused activation.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpBatchMatmul, 1, 4, withHybrid(tflite.KernelFuncs{PrepareFn: prepareBatchMatMul, EvalFn: evalBatchMatMul}, isHybrid(1), prepareBMMHybrid, evalBMMHybrid))
	})
}

type bmmData struct {
	batch                  [3]int // broadcast batch dimensions (leading 1s for lower ranks)
	lStride, rStride       [3]int // element strides of each batch dim in lhs/rhs, 0 when broadcast
	rows, cols, depth      int
	adjX, adjY             bool
	lhsOff, rhsOff, outOff int32
	mult                   int32
	shift                  int
	qMin, qMax             int32
}

func prepareBatchMatMul(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	lhs, rhs, out := n.Input(0), n.Input(1), n.Output(0)
	opts, _ := n.Options.(*tflite.BatchMatMulOptions)
	if opts == nil {
		opts = &tflite.BatchMatMulOptions{}
	}
	for _, t := range []*tensor.Tensor{lhs, rhs} {
		if t.Rank() < 2 || t.Rank() > 5 {
			return fmt.Errorf("input %q has rank %d, want 2 to 5", t.Name(), t.Rank())
		}
	}
	d := &bmmData{adjX: opts.AdjX, adjY: opts.AdjY}
	lr, lc := lhs.Dim(-2), lhs.Dim(-1)
	if d.adjX {
		lr, lc = lc, lr
	}
	rr, rc := rhs.Dim(-2), rhs.Dim(-1)
	if d.adjY {
		rr, rc = rc, rr
	}
	if lc != rr {
		return fmt.Errorf("lhs %q %v and rhs %q %v: contracted dimensions %d and %d differ (adj_x %v, adj_y %v)",
			lhs.Name(), lhs.Shape(), rhs.Name(), rhs.Shape(), lc, rr, d.adjX, d.adjY)
	}
	d.rows, d.depth, d.cols = lr, lc, rc
	ext := func(t *tensor.Tensor, i int) int { // batch dim i of 3 (right-aligned)
		k := i - (3 - (t.Rank() - 2))
		if k < 0 {
			return 1
		}
		return t.Dim(k)
	}
	lMat, rMat := lhs.Dim(-1)*lhs.Dim(-2), rhs.Dim(-1)*rhs.Dim(-2)
	ls, rs := lMat, rMat
	for i := 2; i >= 0; i-- {
		l, r := ext(lhs, i), ext(rhs, i)
		if l != r && l != 1 && r != 1 {
			return fmt.Errorf("batch dimensions of lhs %v and rhs %v do not broadcast", lhs.Shape(), rhs.Shape())
		}
		d.batch[i] = max(l, r)
		if l != 1 {
			d.lStride[i] = ls
		}
		if r != 1 {
			d.rStride[i] = rs
		}
		ls, rs = ls*l, rs*r
	}
	want := []int{}
	rank := max(lhs.Rank(), rhs.Rank())
	for i := 3 - (rank - 2); i < 3; i++ {
		want = append(want, d.batch[i])
	}
	want = append(want, d.rows, d.cols)
	if !slices.Equal(out.Shape(), want) {
		return fmt.Errorf("output %q has shape %v, want %v", out.Name(), out.Shape(), want)
	}
	if lhs.DType() != rhs.DType() || out.DType() != lhs.DType() {
		return fmt.Errorf("lhs %s, rhs %s, output %s must have one type", lhs.DType(), rhs.DType(), out.DType())
	}
	switch lhs.DType() {
	case tensor.Float32:
	case tensor.Int8, tensor.Int16:
		lS, lZ, err := perTensor(lhs)
		if err != nil {
			return err
		}
		rS, rZ, err := perTensor(rhs)
		if err != nil {
			return err
		}
		oS, oZ, err := perTensor(out)
		if err != nil {
			return err
		}
		if lhs.DType() == tensor.Int16 && (lZ != 0 || rZ != 0 || oZ != 0) {
			// The 16x16 kernel is symmetric (TFLM batch_matmul.cc checks zero points of 0).
			return fmt.Errorf("int16 lhs, rhs and output must have zero point 0 (have %d, %d, %d)", lZ, rZ, oZ)
		}
		d.lhsOff, d.rhsOff, d.outOff = -lZ, -rZ, oZ
		// GetQuantizedConvolutionMultipler: float32 product, float64 division.
		d.mult, d.shift = QuantizeMultiplier(float64(lS*rS) / float64(oS))
		d.qMin, d.qMax = qrange(lhs.DType())
	default:
		return fmt.Errorf("type %s not supported (float32, int8, int16)", lhs.DType())
	}
	n.Data = d
	return nil
}

func evalBatchMatMul(n *tflite.Node) error {
	d := n.Data.(*bmmData)
	lhs, rhs, out := n.Input(0), n.Input(1), n.Output(0)
	switch lhs.DType() {
	case tensor.Float32:
		bmm(d, lhs.Float32(), rhs.Float32(), out.Float32(), func(acc float32, l, r float32) float32 { return acc + l*r },
			func(acc float32) float32 { return acc })
	case tensor.Int8:
		bmm(d, lhs.Int8(), rhs.Int8(), out.Int8(), func(acc int32, l, r int8) int32 {
			return acc + (int32(l)+d.lhsOff)*(int32(r)+d.rhsOff)
		}, func(acc int32) int8 {
			v := MultiplyByQuantizedMultiplier(acc, d.mult, d.shift) + d.outOff
			return int8(min(max(v, d.qMin), d.qMax))
		})
	case tensor.Int16:
		bmm(d, lhs.Int16(), rhs.Int16(), out.Int16(), func(acc int64, l, r int16) int64 {
			return acc + int64(l)*int64(r)
		}, func(acc int64) int16 {
			v := multiplyByQuantizedMultiplier64(acc, d.mult, d.shift) + d.outOff
			return int16(min(max(v, d.qMin), d.qMax))
		})
	}
	return nil
}

// bmm walks the broadcast batches and computes each matrix product; mac accumulates one
// product and fin turns the accumulator into an output element.
func bmm[T, A, O any](d *bmmData, lhs, rhs []T, out []O, mac func(A, T, T) A, fin func(A) O) {
	o := 0
	for b0 := 0; b0 < d.batch[0]; b0++ {
		for b1 := 0; b1 < d.batch[1]; b1++ {
			for b2 := 0; b2 < d.batch[2]; b2++ {
				l := lhs[b0*d.lStride[0]+b1*d.lStride[1]+b2*d.lStride[2]:]
				r := rhs[b0*d.rStride[0]+b1*d.rStride[1]+b2*d.rStride[2]:]
				for i := 0; i < d.rows; i++ {
					for j := 0; j < d.cols; j++ {
						var acc A
						for k := 0; k < d.depth; k++ {
							li := i*d.depth + k // lhs [rows, depth]
							if d.adjX {
								li = k*d.rows + i // lhs stored [depth, rows]
							}
							ri := k*d.cols + j // rhs [depth, cols]
							if d.adjY {
								ri = j*d.depth + k // rhs stored [cols, depth]
							}
							acc = mac(acc, l[li], r[ri])
						}
						out[o] = fin(acc)
						o++
					}
				}
			}
		}
	}
}

// multiplyByQuantizedMultiplier64 is TFLite's MultiplyByQuantizedMultiplier for an int64
// accumulator (common.h): the multiplier is reduced to 16 bits with rounding, then one rounding
// right shift by 15-shift.
func multiplyByQuantizedMultiplier64(x int64, q int32, shift int) int32 {
	reduced := int64(0x7FFF)
	if q < 0x7FFF0000 {
		reduced = int64((q + 1<<15) >> 16)
	}
	total := 15 - shift
	round := int64(1) << (total - 1)
	r := (x*reduced + round) >> total
	return int32(min(max(r, math.MinInt32), math.MaxInt32))
}
