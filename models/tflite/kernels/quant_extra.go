package kernels

import (
	"errors"
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Per-channel QUANTIZE float32 → int8/int16 (reference_ops::PerChannelQuantize, full TFLite;
// TFLite Micro refuses it), int8 RSQRT (elementwise.cc RsqrtEvalQuantized, the same in full TFLite and TFLite Micro) and
// int8 CUMSUM (TFLite Micro's cumsum.cc with reference_ops::CumSum for int8; full TFLite has
// no int8 CUMSUM). Both wrap the float kernels registered for their op codes (wrapDType).

func init() {
	registerWrapper(func(r *Resolver) {
		wrapDType(r, schema.OpRsqrt, tensor.Int8, prepareRsqrtInt8)
		wrapDType(r, schema.OpCumsum, tensor.Int8, prepareCumsumInt8)
		wrapWhen(r, schema.OpQuantize, perChannelQuantize, preparePerChannelQuantize)
	})
}

type rsqrtInt8 struct {
	inZP, outZP int32
	mult        int32
	shift       int
}

// prepareRsqrtInt8 computes 1 / (sqrt(input_scale) × output_scale) as a Q31 multiplier.
func prepareRsqrtInt8(n *tflite.Node) error {
	in, out, err := unaryIO(n, "RSQRT")
	if err != nil {
		return err
	}
	if out.DType() != tensor.Int8 {
		return fmt.Errorf("RSQRT: int8 input %q, %s output %q", in.Name(), out.DType(), out.Name())
	}
	si, zi, so, zo, err := ioQuantParams(in, out)
	if err != nil {
		return fmt.Errorf("RSQRT: %w", err)
	}
	m := 1 / (math.Sqrt(float64(si)) * float64(so))
	d := &rsqrtInt8{inZP: zi, outZP: zo}
	if d.mult, d.shift, err = quantizeMultiplierChecked(m); err != nil {
		return fmt.Errorf("RSQRT: %w", err)
	}
	n.Data = d
	return nil
}

// errRsqrtNegative is RSQRT's run-time refusal of an input below the zero point, as the
// reference kernels refuse it ("Rsqrt is only defined for positive values").
var errRsqrtNegative = errors.New("RSQRT: input below its zero point (a negative value)")

func (d *rsqrtInt8) evalWrapped(n *tflite.Node) error {
	x, y := n.Input(0).Int8(), n.Output(0).Int8()
	for _, v := range x {
		if int32(v) < d.inZP {
			return errRsqrtNegative
		}
	}
	const kShift = 20 // keeps the inverse square root an integer
	for i, v := range x {
		value := int32(v) - d.inZP
		if value == 0 {
			y[i] = math.MaxInt8 // a value near 0 maps to the largest output
			continue
		}
		im, is := invSqrtQuantizedMultiplierExp(value, -1)
		data := MultiplyByQuantizedMultiplier(1, im, is+kShift)
		o := MultiplyByQuantizedMultiplier(data, d.mult, d.shift-kShift) + d.outZP
		y[i] = int8(min(max(o, math.MinInt8), math.MaxInt8))
	}
	return nil
}

type cumsumInt8 struct {
	cumsumData
	inOff, outOff     int32
	leftShift         int
	inMult, outMult   int32
	inShift, outShift int
	qMin, qMax        int32
}

// prepareCumsumInt8 is TFLite Micro's int8 CUMSUM Prepare: ADD's general rescaling with one
// input (left shift 20, input multiplier in_scale / 2·in_scale, output multiplier
// 2·in_scale / (2^20 · out_scale)).
func prepareCumsumInt8(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if out.DType() != tensor.Int8 {
		return fmt.Errorf("int8 input %q, %s output %q", in.Name(), out.DType(), out.Name())
	}
	g, err := cumsumGeometry(n)
	if err != nil {
		return err
	}
	si, zi, so, zo, err := ioQuantParams(in, out)
	if err != nil {
		return err
	}
	d := &cumsumInt8{cumsumData: *g, inOff: -zi, outOff: zo, leftShift: 20}
	twice := 2 * float64(si)
	if d.inMult, d.inShift, err = quantizeMultiplierSmallerThanOne(float64(si) / twice); err != nil {
		return err
	}
	if d.outMult, d.outShift, err = quantizeMultiplierSmallerThanOne(twice / (float64(int32(1)<<d.leftShift) * float64(so))); err != nil {
		return fmt.Errorf("output %q scale %g too small for input scale %g: %w", out.Name(), so, si, err)
	}
	if d.qMin, d.qMax, err = quantActivationRange(schema.ActivationNone, out); err != nil {
		return err
	}
	n.Data = d
	return nil
}

// evalWrapped is reference_ops::CumSum for int8. The accumulator starts at the rescaled input
// offset, not at zero (the reference's "accumulator = 0" comment notwithstanding), and every
// partial sum is rescaled to the output on its own.
func (d *cumsumInt8) evalWrapped(n *tflite.Node) error {
	x, y := n.Input(0).Int8(), n.Output(0).Int8()
	scale := func(v int32) int32 {
		return MultiplyByQuantizedMultiplier(v*(int32(1)<<d.leftShift), d.inMult, d.inShift)
	}
	for o := 0; o < d.outer; o++ {
		for i := 0; i < d.inner; i++ {
			acc := scale(d.inOff)
			for k := 0; k < d.axis; k++ {
				j := k
				if d.reverse {
					j = d.axis - 1 - k
				}
				p := (o*d.axis+j)*d.inner + i
				v := scale(d.inOff + int32(x[p]))
				var s int32
				if d.exclusive {
					s, acc = acc, acc+v
				} else {
					acc += v
					s = acc
				}
				r := MultiplyByQuantizedMultiplier(s, d.outMult, d.outShift) + d.outOff
				y[p] = int8(min(max(r, d.qMin), d.qMax))
			}
		}
	}
	return nil
}

// perChannelQuantize selects float32 QUANTIZE nodes whose output has several scales.
func perChannelQuantize(n *tflite.Node) bool {
	in, out := n.Input(0), n.Output(0)
	if in == nil || out == nil || in.DType() != tensor.Float32 {
		return false
	}
	q := out.Quant()
	return q != nil && len(q.Scale) > 1
}

type perChannelQuant struct {
	outer, ch, inner int // the output's shape around its quantized dimension
	scale            []float32
	zp               []int32
}

func preparePerChannelQuantize(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if out.DType() != tensor.Int8 && out.DType() != tensor.Int16 {
		return fmt.Errorf("per-channel output %q is %s, want int8 or int16", out.Name(), out.DType())
	}
	if err := setOutShape(out, in.Shape()); err != nil {
		return err
	}
	q := out.Quant()
	if q.Dim < 0 || q.Dim >= out.Rank() || out.Dim(q.Dim) != len(q.Scale) || len(q.ZeroPoint) != len(q.Scale) {
		return fmt.Errorf("output %q: %d scales on dimension %d of shape %v", out.Name(), len(q.Scale), q.Dim, out.Shape())
	}
	d := &perChannelQuant{outer: 1, inner: 1, ch: len(q.Scale), scale: q.Scale}
	for i, s := range out.Shape() {
		switch {
		case i < q.Dim:
			d.outer *= s
		case i > q.Dim:
			d.inner *= s
		}
	}
	for _, z := range q.ZeroPoint {
		d.zp = append(d.zp, int32(z))
	}
	n.Data = d
	return nil
}

// evalWrapped is PerChannelQuantize: round(x / scale[c]) in float32, half away from zero,
// plus zero_point[c], clamped to the output type.
func (d *perChannelQuant) evalWrapped(n *tflite.Node) error {
	x, out := n.Input(0).Float32(), n.Output(0)
	lo, hi := qrange(out.DType())
	i := 0
	for o := 0; o < d.outer; o++ {
		for c := 0; c < d.ch; c++ {
			for k := 0; k < d.inner; k++ {
				v := min(max(int32(roundToInt(x[i]/d.scale[c]))+d.zp[c], lo), hi)
				if out.DType() == tensor.Int8 {
					out.Int8()[i] = int8(v)
				} else {
					out.Int16()[i] = int16(v)
				}
				i++
			}
		}
	}
	return nil
}
