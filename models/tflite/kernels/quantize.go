package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpQuantize, 1, 3, tflite.KernelFuncs{PrepareFn: prepareQuantize, EvalFn: evalQuantize})
		r.AddBuiltin(schema.OpDequantize, 1, 5, withHybrid(tflite.KernelFuncs{PrepareFn: prepareDequantize, EvalFn: evalDequantize}, isFloat16Input, prepareDequantizeF16, evalDequantizeF16))
	})
}

type quantizeData struct {
	inZP, outZP int32
	scale       float32 // float input: output scale
	mult        int32   // integer input: requantization multiplier
	shift       int
	lo, hi      int32
}

func isQuantInt(d tensor.DType) bool {
	return d == tensor.Int8 || d == tensor.Uint8 || d == tensor.Int16 || d == tensor.Int32
}

// prepareQuantize: float32 → int8/uint8/int16 (AffineQuantize), or integer → integer
// requantization (reference_ops::Requantize) with multiplier in_scale/out_scale.
func prepareQuantize(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if in.NumElements() != out.NumElements() {
		return fmt.Errorf("input has %d elements, output %d", in.NumElements(), out.NumElements())
	}
	if !isQuantInt(out.DType()) {
		return fmt.Errorf("output type %s not supported", out.DType())
	}
	outScale, outZP, err := perTensor(out)
	if err != nil {
		return err
	}
	d := &quantizeData{outZP: outZP, scale: outScale}
	d.lo, d.hi = qrange(out.DType())
	switch {
	case in.DType() == tensor.Float32:
	case isQuantInt(in.DType()):
		inScale, inZP, err := perTensor(in)
		if err != nil {
			return err
		}
		d.inZP = inZP
		d.mult, d.shift = QuantizeMultiplier(float64(inScale) / float64(outScale))
	default:
		return fmt.Errorf("input type %s not supported", in.DType())
	}
	n.Data = d
	return nil
}

func evalQuantize(n *tflite.Node) error {
	d := n.Data.(*quantizeData)
	in, out := n.Input(0), n.Output(0)
	switch in.DType() {
	case tensor.Float32:
		quantizeTo(d, in.Float32(), out)
	case tensor.Int8:
		quantizeTo(d, in.Int8(), out)
	case tensor.Uint8:
		quantizeTo(d, in.Uint8(), out)
	case tensor.Int16:
		quantizeTo(d, in.Int16(), out)
	case tensor.Int32:
		quantizeTo(d, in.Int32(), out)
	}
	return nil
}

type number interface {
	~float32 | ~int8 | ~uint8 | ~int16 | ~int32
}

type quantInt interface {
	~int8 | ~uint8 | ~int16 | ~int32
}

// quantizeTo dispatches once on the output type so the element loop is monomorphic.
func quantizeTo[I number](d *quantizeData, in []I, out *tensor.Tensor) {
	switch out.DType() {
	case tensor.Int8:
		quantizeLoop(d, in, out.Int8())
	case tensor.Uint8:
		quantizeLoop(d, in, out.Uint8())
	case tensor.Int16:
		quantizeLoop(d, in, out.Int16())
	case tensor.Int32:
		quantizeLoop(d, in, out.Int32())
	}
}

func quantizeLoop[I number, O quantInt](d *quantizeData, in []I, out []O) {
	for i, v := range in {
		var q int32
		if f, ok := any(v).(float32); ok {
			// AffineQuantize: round(x / scale) in float32, half away from zero, then + zp.
			q = int32(roundToInt(f/d.scale)) + d.outZP
		} else {
			q = MultiplyByQuantizedMultiplier(int32(v)-d.inZP, d.mult, d.shift) + d.outZP
		}
		out[i] = O(min(max(q, d.lo), d.hi))
	}
}

// roundToInt rounds half away from zero and saturates to int32 (NaN becomes 0).
func roundToInt(v float32) int64 {
	r := math.Round(float64(v))
	switch {
	case r != r:
		return 0
	case r > math.MaxInt32:
		return math.MaxInt32
	case r < math.MinInt32:
		return math.MinInt32
	}
	return int64(r)
}

// quantLoad reads element i of an integer tensor as int32.
func quantLoad(t *tensor.Tensor, i int) int32 {
	switch t.DType() {
	case tensor.Int8:
		return int32(t.Int8()[i])
	case tensor.Uint8:
		return int32(t.Uint8()[i])
	case tensor.Int16:
		return int32(t.Int16()[i])
	}
	return t.Int32()[i]
}

// dequantizeData holds per-tensor parameters (one scale) or per-channel ones (one per index of
// dimension dim, with inner elements per channel index).
type dequantizeData struct {
	scale    float64 // per-tensor
	zp       int32
	scales   []float32 // per-channel
	zps      []int32
	channels int
	inner    int
}

// prepareDequantize: int8/uint8/int16/int32 → float32. Per-tensor: scale * (q - zp) in
// float64, rounded once (reference_ops::Dequantize). Per-channel (int8 weights with
// quantized_dimension): (q - zp[c]) * scale[c] in float32 (reference_ops::PerChannelDequantize).
func prepareDequantize(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if out.DType() != tensor.Float32 || !isQuantInt(in.DType()) {
		return fmt.Errorf("input %s, output %s not supported", in.DType(), out.DType())
	}
	if in.NumElements() != out.NumElements() {
		return fmt.Errorf("input has %d elements, output %d", in.NumElements(), out.NumElements())
	}
	q := in.Quant()
	if q.PerChannel() {
		if q.Dim < 0 || q.Dim >= in.Rank() || in.Dim(q.Dim) != len(q.Scale) || len(q.ZeroPoint) != len(q.Scale) {
			return fmt.Errorf("input %q: %d per-channel scales on dimension %d of shape %v", in.Name(), len(q.Scale), q.Dim, in.Shape())
		}
		d := &dequantizeData{scales: q.Scale, channels: len(q.Scale), inner: 1}
		for _, z := range q.ZeroPoint {
			d.zps = append(d.zps, int32(z))
		}
		for _, s := range in.Shape()[q.Dim+1:] {
			d.inner *= s
		}
		n.Data = d
		return nil
	}
	scale, zp, err := perTensor(in)
	if err != nil {
		return err
	}
	n.Data = &dequantizeData{scale: float64(scale), zp: zp}
	return nil
}

func evalDequantize(n *tflite.Node) error {
	d := n.Data.(*dequantizeData)
	in, y := n.Input(0), n.Output(0).Float32()
	if d.scales != nil {
		for i := range y {
			c := (i / d.inner) % d.channels
			y[i] = float32(quantLoad(in, i)-d.zps[c]) * d.scales[c]
		}
		return nil
	}
	for i := range y {
		y[i] = float32(d.scale * float64(quantLoad(in, i)-d.zp))
	}
	return nil
}
