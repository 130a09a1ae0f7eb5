package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Elementwise activations: RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, PRELU, ELU, HARD_SWISH, TANH
// and LOGISTIC. float32 everywhere; int8/int16 for the RELU family, LEAKY_RELU, LOGISTIC and
// TANH (requantizing with the reference kernels' multipliers and fixed-point functions), int8
// for PRELU, ELU and HARD_SWISH.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpRelu, 1, 3, reluKernel(0, math.Inf(1)))
		r.AddBuiltin(schema.OpRelu6, 1, 3, reluKernel(0, 6))
		r.AddBuiltin(schema.OpReluN1To1, 1, 2, reluKernel(-1, 1))
		// The int8/int16 paths of these three live in elementwise_lut.go.
		r.AddBuiltin(schema.OpLogistic, 1, 3, transcKernel("LOGISTIC", false, logistic))
		r.AddBuiltin(schema.OpTanh, 1, 3, transcKernel("TANH", true, func(v float32) float32 { return float32(math.Tanh(float64(v))) }))
		r.AddBuiltin(schema.OpHardSwish, 1, 1, tflite.KernelFuncs{PrepareFn: prepareHardSwish, EvalFn: evalHardSwish})
		r.AddBuiltin(schema.OpLeakyRelu, 1, 2, tflite.KernelFuncs{PrepareFn: prepareLeakyRelu, EvalFn: evalLeakyRelu})
		r.AddBuiltin(schema.OpPrelu, 1, 1, tflite.KernelFuncs{PrepareFn: preparePrelu, EvalFn: evalPrelu})
		r.AddBuiltin(schema.OpElu, 1, 1, tflite.KernelFuncs{PrepareFn: prepareElu, EvalFn: evalElu})
	})
}

// logistic is 1/(1+e^-x) in float32; exp runs in float64 and rounds once.
func logistic(v float32) float32 {
	return float32(1 / (1 + math.Exp(-float64(v))))
}

// unaryFloat builds a kernel applying f to every element of a float32 tensor.
func unaryFloat(name string, f func(float32) float32) tflite.Kernel {
	return tflite.KernelFuncs{
		PrepareFn: func(n *tflite.Node) error {
			if err := n.CheckIO(1, 1, 1); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := sameFloatShape(n.Input(0), n.Output(0)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		},
		EvalFn: func(n *tflite.Node) error {
			x, y := n.Input(0).Float32(), n.Output(0).Float32()
			for i, v := range x {
				y[i] = f(v)
			}
			return nil
		},
	}
}

func sameFloatShape(in, out *tensor.Tensor) error {
	if in.DType() != tensor.Float32 || out.DType() != tensor.Float32 {
		return fmt.Errorf("input %s, output %s not supported (float32 only)", in.DType(), out.DType())
	}
	return sameElements(in, out)
}

func sameElements(in, out *tensor.Tensor) error {
	if in.NumElements() != out.NumElements() {
		return fmt.Errorf("input %q has %d elements, output %q has %d", in.Name(), in.NumElements(), out.Name(), out.NumElements())
	}
	out.SetShape(in.Shape())
	return nil
}

// unaryIO checks one input, one output of the same type and element count.
func unaryIO(n *tflite.Node, name string) (in, out *tensor.Tensor, err error) {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	in, out = n.Input(0), n.Output(0)
	if in.DType() != out.DType() {
		return nil, nil, fmt.Errorf("%s: input %q is %s, output %q is %s", name, in.Name(), in.DType(), out.Name(), out.DType())
	}
	if err := sameElements(in, out); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return in, out, nil
}

// requant is a per-tensor requantization x -> outZP + (x - inZP) * mult, with [qMin, qMax].
type requant struct {
	inZP, outZP int32
	mult        int32
	shift       int
	qMin, qMax  int32
}

type reluData struct {
	fMin, fMax float32
	q          requant
}

// reluKernel is RELU (lo 0, hi +Inf), RELU6 and RELU_N1_TO_1. Quantized it is TFLite's
// QuantizedReluX: requantize by in_scale/out_scale, then clamp to the bounds quantized with
// the output's parameters (activations.cc, TFLite Micro activations_common.cc).
func reluKernel(lo, hi float64) tflite.Kernel {
	name := map[float64]string{0: "RELU", -1: "RELU_N1_TO_1"}[lo]
	if hi == 6 {
		name = "RELU6"
	}
	return tflite.KernelFuncs{
		PrepareFn: func(n *tflite.Node) error {
			in, out, err := unaryIO(n, name)
			if err != nil {
				return err
			}
			d := &reluData{fMin: float32(lo), fMax: float32(hi)}
			switch in.DType() {
			case tensor.Float32:
			case tensor.Int8, tensor.Int16, tensor.Uint8:
				if err := prepareReluQuant(&d.q, in, out, lo, hi); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			default:
				return fmt.Errorf("%s: type %s not supported", name, in.DType())
			}
			n.Data = d
			return nil
		},
		EvalFn: func(n *tflite.Node) error {
			d := n.Data.(*reluData)
			in, out := n.Input(0), n.Output(0)
			switch in.DType() {
			case tensor.Float32:
				y := out.Float32()
				for i, v := range in.Float32() {
					y[i] = clampF(v, d.fMin, d.fMax)
				}
			case tensor.Int8:
				requantize(&d.q, in.Int8(), out.Int8())
			case tensor.Int16:
				requantize(&d.q, in.Int16(), out.Int16())
			case tensor.Uint8:
				requantize(&d.q, in.Uint8(), out.Uint8())
			}
			return nil
		},
	}
}

func prepareReluQuant(q *requant, in, out *tensor.Tensor, lo, hi float64) error {
	si, zi, so, zo, err := ioQuantParams(in, out)
	if err != nil {
		return err
	}
	if in.DType() == tensor.Int16 && (zi != 0 || zo != 0) {
		// TFLite Micro's ReluPrepare requires symmetric int16.
		return fmt.Errorf("int16 zero points must be 0 (input %d, output %d)", zi, zo)
	}
	q.inZP, q.outZP = zi, zo
	if q.mult, q.shift, err = quantizeMultiplierChecked(float64(si) / float64(so)); err != nil {
		return err
	}
	tmin, tmax := qrange(out.DType())
	// roundf(act / scale) in float32, as CalculateReluOpData does.
	quant := func(f float64) int32 { return zo + int32(math.Round(float64(float32(f)/so))) }
	q.qMin = max(tmin, quant(lo))
	q.qMax = tmax
	if !math.IsInf(hi, 1) {
		q.qMax = min(tmax, quant(hi))
	}
	return nil
}

func requantize[T int8 | int16 | uint8](q *requant, x, y []T) {
	for i, v := range x {
		r := q.outZP + MultiplyByQuantizedMultiplier(int32(v)-q.inZP, q.mult, q.shift)
		y[i] = T(clamp32(r, q.qMin, q.qMax))
	}
}

// LEAKY_RELU: x > 0 ? x : alpha*x. Quantized (reference_ops::QuantizeLeakyRelu, multipliers
// from TFLite Micro's leaky_relu_common.cc): x - inZP is requantized with in_scale/out_scale
// when it is >= 0, else with in_scale*alpha/out_scale, then offset and clamped to the type.

type leakyData struct {
	alpha              float32
	inZP, outZP        int32
	multID, multAlpha  int32
	shiftID, shiftAlph int
}

func prepareLeakyRelu(n *tflite.Node) error {
	in, out, err := unaryIO(n, "LEAKY_RELU")
	if err != nil {
		return err
	}
	d := &leakyData{}
	if o, ok := n.Options.(*tflite.LeakyReluOptions); ok {
		d.alpha = o.Alpha
	}
	switch in.DType() {
	case tensor.Float32:
	case tensor.Int8, tensor.Int16, tensor.Uint8:
		si, zi, so, zo, err := ioQuantParams(in, out)
		if err != nil {
			return fmt.Errorf("LEAKY_RELU: %w", err)
		}
		d.inZP, d.outZP = zi, zo
		// The products and quotients are float32, widened at the end (leaky_relu_common.cc).
		ma := float64(si * d.alpha / so)
		if math.IsNaN(ma) || math.IsInf(ma, 0) || math.Abs(ma) >= 1<<30 {
			return fmt.Errorf("LEAKY_RELU: alpha %g gives multiplier %g", d.alpha, ma)
		}
		d.multAlpha, d.shiftAlph = QuantizeMultiplier(ma)
		if d.multID, d.shiftID, err = quantizeMultiplierChecked(float64(si / so)); err != nil {
			return fmt.Errorf("LEAKY_RELU: %w", err)
		}
	default:
		return fmt.Errorf("LEAKY_RELU: type %s not supported", in.DType())
	}
	n.Data = d
	return nil
}

func evalLeakyRelu(n *tflite.Node) error {
	d := n.Data.(*leakyData)
	in, out := n.Input(0), n.Output(0)
	switch in.DType() {
	case tensor.Float32:
		y := out.Float32()
		for i, v := range in.Float32() {
			if v > 0 {
				y[i] = v
			} else {
				y[i] = v * d.alpha
			}
		}
	case tensor.Int8:
		leakyQuant(d, in.Int8(), out.Int8(), math.MinInt8, math.MaxInt8)
	case tensor.Int16:
		leakyQuant(d, in.Int16(), out.Int16(), math.MinInt16, math.MaxInt16)
	case tensor.Uint8:
		leakyQuant(d, in.Uint8(), out.Uint8(), 0, math.MaxUint8)
	}
	return nil
}

func leakyQuant[T int8 | int16 | uint8](d *leakyData, x, y []T, lo, hi int32) {
	for i, v := range x {
		iv := int32(v) - d.inZP
		var r int32
		if iv >= 0 {
			r = MultiplyByQuantizedMultiplier(iv, d.multID, d.shiftID)
		} else {
			r = MultiplyByQuantizedMultiplier(iv, d.multAlpha, d.shiftAlph)
		}
		y[i] = T(clamp32(r+d.outZP, lo, hi))
	}
}

// PRELU: x >= 0 ? x : alpha*x with alpha broadcast against x (reference_ops::
// BroadcastPrelu4DSlow). int8 uses two multipliers, in/out and in*alpha/out, as TFLite
// Micro's prelu_common.cc computes them.

type preluData struct {
	bc                     Broadcast
	inOff, alphaOff, outZP int32
	mult1, mult2           int32
	shift1, shift2         int
}

func preparePrelu(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return fmt.Errorf("PRELU: %w", err)
	}
	in, alpha, out := n.Input(0), n.Input(1), n.Output(0)
	if in.DType() != alpha.DType() || in.DType() != out.DType() {
		return fmt.Errorf("PRELU: input %s, alpha %s, output %s must match", in.DType(), alpha.DType(), out.DType())
	}
	shape, err := BroadcastShape(in.Shape(), alpha.Shape())
	if err != nil {
		return fmt.Errorf("PRELU: input %q and alpha %q: %w", in.Name(), alpha.Name(), err)
	}
	out.SetShape(shape)
	d := &preluData{}
	if d.bc, err = NewBroadcast(shape, in.Shape(), alpha.Shape()); err != nil {
		return fmt.Errorf("PRELU: %w", err)
	}
	switch in.DType() {
	case tensor.Float32:
	case tensor.Int8:
		si, zi, err := quantParams(in)
		if err != nil {
			return fmt.Errorf("PRELU: %w", err)
		}
		sa, za, err := quantParams(alpha)
		if err != nil {
			return fmt.Errorf("PRELU: %w", err)
		}
		so, zo, err := quantParams(out)
		if err != nil {
			return fmt.Errorf("PRELU: %w", err)
		}
		d.inOff, d.alphaOff, d.outZP = -zi, -za, zo
		if d.mult1, d.shift1, err = quantizeMultiplierChecked(float64(si) / float64(so)); err != nil {
			return fmt.Errorf("PRELU: %w", err)
		}
		if d.mult2, d.shift2, err = quantizeMultiplierChecked(float64(si) * float64(sa) / float64(so)); err != nil {
			return fmt.Errorf("PRELU: %w", err)
		}
	default:
		return fmt.Errorf("PRELU: type %s not supported", in.DType())
	}
	n.Data = d
	return nil
}

func evalPrelu(n *tflite.Node) error {
	d := n.Data.(*preluData)
	in, alpha, out := n.Input(0), n.Input(1), n.Output(0)
	if in.DType() == tensor.Float32 {
		x, a, y := in.Float32(), alpha.Float32(), out.Float32()
		d.bc.Each2(func(o, i, j int) {
			if x[i] >= 0 {
				y[o] = x[i]
			} else {
				y[o] = x[i] * a[j]
			}
		})
		return nil
	}
	x, a, y := in.Int8(), alpha.Int8(), out.Int8()
	d.bc.Each2(func(o, i, j int) {
		iv := d.inOff + int32(x[i])
		var r int32
		if iv >= 0 {
			r = MultiplyByQuantizedMultiplier(iv, d.mult1, d.shift1)
		} else {
			r = MultiplyByQuantizedMultiplier(iv*(d.alphaOff+int32(a[j])), d.mult2, d.shift2)
		}
		y[o] = int8(clamp32(r+d.outZP, math.MinInt8, math.MaxInt8))
	})
	return nil
}

// ELU: x < 0 ? expm1(x) : x. int8 goes through a 256-entry table built in Prepare from the
// float function, the way TFLite's elu.cc (LUTPopulate) does: dequantize, apply, multiply by
// the inverse output scale, round, add the zero point, clamp.

type eluData struct{ lut [256]int8 }

func prepareElu(n *tflite.Node) error {
	in, out, err := unaryIO(n, "ELU")
	if err != nil {
		return err
	}
	switch in.DType() {
	case tensor.Float32:
		return nil
	case tensor.Int8:
		d := &eluData{}
		si, zi, so, zo, err := ioQuantParams(in, out)
		if err != nil {
			return fmt.Errorf("ELU: %w", err)
		}
		inv := 1 / so // LUTPopulate multiplies by the inverse output scale
		for v := math.MinInt8; v <= math.MaxInt8; v++ {
			x := si * float32(int32(v)-zi)
			y := elu(x)
			r := float32(math.Round(float64(y * inv)))
			q := int32(max(min(r+float32(zo), math.MaxInt8), math.MinInt8))
			d.lut[uint8(int8(v))] = int8(q)
		}
		n.Data = d
		return nil
	}
	return fmt.Errorf("ELU: type %s not supported", in.DType())
}

func elu(x float32) float32 {
	if x < 0 {
		return float32(math.Expm1(float64(x)))
	}
	return x
}

func evalElu(n *tflite.Node) error {
	in, out := n.Input(0), n.Output(0)
	if in.DType() == tensor.Float32 {
		y := out.Float32()
		for i, v := range in.Float32() {
			y[i] = elu(v)
		}
		return nil
	}
	d := n.Data.(*eluData)
	y := out.Int8()
	for i, v := range in.Int8() {
		y[i] = d.lut[uint8(v)]
	}
	return nil
}
