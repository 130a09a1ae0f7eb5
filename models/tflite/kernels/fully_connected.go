package kernels

import (
	"fmt"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpFullyConnected, 1, 12, withHybrid(tflite.KernelFuncs{PrepareFn: prepareFC, EvalFn: evalFC}, isHybrid(1), prepareFCHybrid, evalFCHybrid))
	})
}

// fcData is FULLY_CONNECTED's per-node state, computed in Prepare.
type fcData struct {
	batches, depth, units int
	fMin, fMax            float32 // float fused activation bounds
	f32simd               bool    // float32: the SIMD form (gemm_f32_simd.go), chosen at Prepare

	// int8: offsets and the output multiplier(s), one per unit when the filter is per-channel.
	inOff, filterOff, outOff int32
	mult                     []int32
	shift                    []int
	qMin, qMax               int32
	gemm                     *convGeom // int8 with constant symmetric weights (fc_gemm.go)
}

// prepareFC checks FULLY_CONNECTED: input [..., depth] (any rank, flattened to batches x depth),
// filter [units, depth], optional bias [units] (-1 to omit), output batches x units elements
// (shape [..., units] with keep_num_dims, else [batches, units]).
func prepareFC(n *tflite.Node) error {
	if err := n.CheckIO(2, 3, 1); err != nil {
		return err
	}
	in, filter, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Output(0)
	opts, _ := n.Options.(*tflite.FullyConnectedOptions)
	if opts == nil {
		opts = &tflite.FullyConnectedOptions{}
	}
	if opts.WeightsFormat != 0 {
		return fmt.Errorf("weights format %d not supported", opts.WeightsFormat)
	}
	if filter.Rank() != 2 {
		return fmt.Errorf("filter %q has rank %d, want 2", filter.Name(), filter.Rank())
	}
	d := &fcData{units: filter.Dim(0), depth: filter.Dim(1)}
	if d.depth == 0 || in.NumElements()%d.depth != 0 {
		return fmt.Errorf("input %q of %d elements is not a multiple of filter depth %d", in.Name(), in.NumElements(), d.depth)
	}
	d.batches = in.NumElements() / d.depth
	if bias != nil && bias.NumElements() != d.units {
		return fmt.Errorf("bias %q has %d elements, want %d", bias.Name(), bias.NumElements(), d.units)
	}
	if out.NumElements() != d.batches*d.units {
		return fmt.Errorf("output %q has %d elements, want %d x %d", out.Name(), out.NumElements(), d.batches, d.units)
	}
	if opts.KeepNumDims && in.Rank() > 0 {
		shape := append([]int(nil), in.Shape()...)
		shape[len(shape)-1] = d.units
		out.SetShape(shape)
	}
	switch {
	case in.DType() == tensor.Float32 && filter.DType() == tensor.Float32 && out.DType() == tensor.Float32:
		if bias != nil && bias.DType() != tensor.Float32 {
			return fmt.Errorf("bias %q is %s, want float32", bias.Name(), bias.DType())
		}
		var err error
		if d.fMin, d.fMax, err = floatActivationRange(opts.Activation); err != nil {
			return err
		}
		d.f32simd = useF32SIMD(d.depth)
	case in.DType() == tensor.Int8 && filter.DType() == tensor.Int8 && out.DType() == tensor.Int8:
		if err := prepareFCInt8(d, in, filter, bias, out, opts.Activation); err != nil {
			return err
		}
		if err := prepareFCGemm(n, d, filter, bias); err != nil {
			return err
		}
	default:
		return fmt.Errorf("input %s, filter %s, output %s not supported (float32 or int8 only)", in.DType(), filter.DType(), out.DType())
	}
	n.Data = d
	return nil
}

func prepareFCInt8(d *fcData, in, filter, bias, out *tensor.Tensor, act schema.Activation) error {
	if bias != nil && bias.DType() != tensor.Int32 {
		return fmt.Errorf("bias %q is %s, want int32", bias.Name(), bias.DType())
	}
	inScale, inZP, err := perTensor(in)
	if err != nil {
		return err
	}
	outScale, outZP, err := perTensor(out)
	if err != nil {
		return err
	}
	fq := filter.Quant()
	if fq == nil {
		return fmt.Errorf("filter %q is not quantized", filter.Name())
	}
	if len(fq.Scale) != 1 && (len(fq.Scale) != d.units || fq.Dim != 0) {
		return fmt.Errorf("filter %q: %d scales on dimension %d, want 1 or %d on dimension 0", filter.Name(), len(fq.Scale), fq.Dim, d.units)
	}
	d.inOff, d.filterOff, d.outOff = -inZP, -int32(fq.ZeroPoint[0]), outZP
	for _, fs := range fq.Scale {
		// GetQuantizedConvolutionMultipler: the scale product is formed in float32, then the
		// division in float64. Keeping that order is what makes the result bit-exact.
		m := float64(inScale*fs) / float64(outScale)
		q, s := QuantizeMultiplier(m)
		d.mult, d.shift = append(d.mult, q), append(d.shift, s)
	}
	d.qMin, d.qMax, err = quantActivationRange(act, out)
	return err
}

func evalFC(n *tflite.Node) error {
	d := n.Data.(*fcData)
	in, filter, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Output(0)
	if d.gemm != nil {
		d.gemm.convInt8(n, in.Int8(), out.Int8())
		return nil
	}
	if in.DType() == tensor.Int8 {
		evalFCInt8(d, in.Int8(), filter.Int8(), bias.Int32(), out.Int8())
		return nil
	}
	x, w, y := in.Float32(), filter.Float32(), out.Float32()
	b := bias.Float32() // nil when the bias is omitted
	if d.f32simd {
		gemmF32SIMD(x[:d.batches*d.depth], d.batches, d.depth, w, b, d.units, y, d.fMin, d.fMax)
		return nil
	}
	gemmF32(x[:d.batches*d.depth], d.batches, d.depth, w, b, d.units, y, d.fMin, d.fMax)
	return nil
}

// evalFCFloat is reference_ops::FullyConnected for float32: gemmF32 sums in its order.
func evalFCFloat(d *fcData, x, w, b, y []float32) {
	for i := 0; i < d.batches; i++ {
		xi := x[i*d.depth : (i+1)*d.depth]
		for o := 0; o < d.units; o++ {
			wo := w[o*d.depth : (o+1)*d.depth]
			var acc float32
			for k, v := range xi {
				acc += v * wo[k]
			}
			if b != nil {
				acc += b[o]
			}
			y[i*d.units+o] = clampF(acc, d.fMin, d.fMax)
		}
	}
}

// evalFCInt8 is reference_integer_ops::FullyConnected (per-tensor or per-channel filter).
func evalFCInt8(d *fcData, x, w []int8, b []int32, y []int8) {
	for i := 0; i < d.batches; i++ {
		xi := x[i*d.depth : (i+1)*d.depth]
		for o := 0; o < d.units; o++ {
			wo := w[o*d.depth : (o+1)*d.depth]
			var acc int32
			for k, v := range xi {
				acc += (int32(wo[k]) + d.filterOff) * (int32(v) + d.inOff)
			}
			if b != nil {
				acc += b[o]
			}
			c := 0
			if len(d.mult) > 1 {
				c = o
			}
			acc = MultiplyByQuantizedMultiplier(acc, d.mult[c], d.shift[c]) + d.outOff
			y[i*d.units+o] = int8(min(max(acc, d.qMin), d.qMax))
		}
	}
}
