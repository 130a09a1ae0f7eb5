package kernels

import (
	"fmt"
	"math"

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
}

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
	n.Data = d
	return nil
}

func evalPool(n *tflite.Node) error {
	d := n.Data.(*poolData)
	in, out := n.Input(0), n.Output(0)
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
