package kernels

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Reductions: MEAN, SUM, REDUCE_MAX, REDUCE_MIN, REDUCE_PROD (reference_ops::ReduceGeneric,
// Mean, QuantizedMeanOrSum as TFLite Micro's reduce_common.cc calls them), ARG_MAX, ARG_MIN
// (reference_ops::ArgMinMax) and CUMSUM (reference_ops::CumSum). Axes are constant.
// Elements are accumulated in the reference's order: input in row-major order into its
// output element, so float sums round the same way.

func init() {
	register(func(r *Resolver) {
		for _, op := range []schema.BuiltinOperator{schema.OpMean, schema.OpSum, schema.OpReduceMax, schema.OpReduceMin, schema.OpReduceProd} {
			r.AddBuiltin(op, 1, 3, tflite.KernelFuncs{PrepareFn: prepareReduce, EvalFn: evalReduce})
		}
		r.AddBuiltin(schema.OpArgMax, 1, 3, tflite.KernelFuncs{PrepareFn: prepareArg, EvalFn: evalArg})
		r.AddBuiltin(schema.OpArgMin, 1, 3, tflite.KernelFuncs{PrepareFn: prepareArg, EvalFn: evalArg})
		r.AddBuiltin(schema.OpCumsum, 1, 1, tflite.KernelFuncs{PrepareFn: prepareCumsum, EvalFn: evalCumsum})
	})
}

type reduceData struct {
	op      schema.BuiltinOperator
	inShape []int
	outIdx  []int // per input dimension: output stride, 0 on reduced dimensions
	iter    []int // odometer scratch
	count   int   // input elements per output element
	inZP    int32
	outZP   int32
	mult    int32
	shift   int
	lo, hi  int32
	// uint8 MEAN follows full TFLite's reduce.cc, which picks one of three arithmetics.
	u8Mode u8MeanMode
	u8Bias int32   // u8Mean4D: output zero point minus the rounded rescaled input zero point
	acc    []int32 // quantized accumulators, one per output element
	seen   []bool  // int8 REDUCE_PROD: output element already started

	// When the reduced dimensions are one run (dimensions of size 1 aside), the input is
	// [outer, span, inner] reduced over span, and quantized MEAN and SUM add whole rows of
	// inner values (reduceSumBlock); lanes is poolSum8's scratch.
	block              bool
	outer, span, inner int
	lanes              []uint64
}

// reduceBlockRun is the most channels reduceSumBlock takes in one pass of poolSum8 (its lanes
// then fill 2 KB).
const reduceBlockRun = 1024

func prepareReduce(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	keep := false
	if o, ok := n.Options.(*tflite.ReducerOptions); ok {
		keep = o.KeepDims
	}
	axes, err := constInts(n.Input(1), "axis")
	if err != nil {
		return err
	}
	if err := checkRank(in, 5); err != nil {
		return err
	}
	op := n.Op.Builtin
	dt := in.DType()
	switch {
	case dt == tensor.Float32:
	case dt == tensor.Int32 && op != schema.OpMean:
	case (dt == tensor.Int8 || dt == tensor.Int16) && op != schema.OpReduceProd:
	case dt == tensor.Int8 && op == schema.OpReduceProd:
	case dt == tensor.Uint8 && (op == schema.OpMean || op == schema.OpReduceMax || op == schema.OpReduceMin):
	default:
		return fmt.Errorf("input %q: type %s not supported", in.Name(), dt)
	}
	if out.DType() != dt {
		return fmt.Errorf("input %q is %s, output %q is %s", in.Name(), dt, out.Name(), out.DType())
	}
	r := in.Rank()
	reduced := make([]bool, r)
	for _, a := range axes {
		k, err := normAxis(a, r, "axis")
		if err != nil {
			return err
		}
		reduced[k] = true
	}
	var shape []int
	d := &reduceData{op: op, inShape: append([]int(nil), in.Shape()...), outIdx: make([]int, r), iter: make([]int, r), count: 1}
	for i, s := range in.Shape() {
		switch {
		case reduced[i] && keep:
			shape = append(shape, 1)
		case !reduced[i]:
			shape = append(shape, s)
		}
		if reduced[i] {
			d.count *= s
		}
	}
	if shape == nil {
		shape = []int{}
	}
	// Output strides seen from the input's dimensions.
	stride := 1
	for i := r - 1; i >= 0; i-- {
		if !reduced[i] {
			d.outIdx[i] = stride
			stride *= in.Dim(i)
		}
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	d.setBlock(reduced)
	if dt == tensor.Int8 || dt == tensor.Int16 || dt == tensor.Uint8 {
		inScale, inZP, err := perTensor(in)
		if err != nil {
			return err
		}
		outScale, outZP, err := perTensor(out)
		if err != nil {
			return err
		}
		d.inZP, d.outZP = inZP, outZP
		d.lo, d.hi = qrange(dt)
		switch op {
		case schema.OpReduceMax, schema.OpReduceMin:
			if inScale != outScale || inZP != outZP {
				// TFLite Micro: max/min compare raw values, so the quantization must match.
				return fmt.Errorf("input %q and output %q have different quantization", in.Name(), out.Name())
			}
		case schema.OpReduceProd:
			// GetQuantProdScaling: every product step (and the final value) is rescaled by
			// in_scale / out_scale^(1/count), so the count-fold product lands on out_scale.
			m := float64(inScale) / math.Pow(float64(outScale), 1/float64(max(d.count, 1)))
			d.mult, d.shift = QuantizeMultiplier(m)
			if d.shift > 7 || d.shift < -31 {
				return fmt.Errorf("REDUCE_PROD: rescale %g out of range", m)
			}
			d.seen = make([]bool, max(out.NumElements(), 0))
		case schema.OpMean, schema.OpSum:
			// TFLite Micro (the judge for int8/int16, see docs/tflite.md) requantizes every
			// integer MEAN through QuantizedMeanOrSum, equal parameters included: the sum
			// minus count×zero point times in_scale/out_scale/count, rounded by
			// MultiplyByQuantizedMultiplier. The reference's plain integer mean (sum / count,
			// truncated) is 1 LSB off it in about half the outputs.
			d.mult, d.shift = QuantizeMultiplier(float64(inScale) / float64(outScale))
			if op == schema.OpMean && d.count > 0 {
				// Fold 1/count into the multiplier, as QuantizedMeanOrSum does.
				s := 63 - bits.LeadingZeros64(uint64(d.count))
				s = min(s, 32, 31+d.shift)
				d.mult = int32((int64(d.mult) << s) / int64(d.count))
				d.shift -= s
			}
		}
		d.acc = make([]int32, max(out.NumElements(), 0))
		if dt == tensor.Uint8 && op == schema.OpMean {
			prepareMeanU8(d, reduced, keep, inScale, outScale)
		}
	}
	n.Data = d
	return nil
}

// setBlock finds whether the reduced dimensions of size above 1 are consecutive, and the
// sizes outer, span, inner of the input seen as [outer, span, inner] reduced over span.
func (d *reduceData) setBlock(reduced []bool) {
	d.outer, d.span, d.inner = 1, 1, 1
	phase := 0 // 0: before the reduced run, 1: in it, 2: after it
	for i, s := range d.inShape {
		switch {
		case s == 0:
			return
		case s == 1:
			continue
		case reduced[i] && phase == 2:
			return
		case reduced[i]:
			phase = 1
			d.span *= s
		case phase == 0:
			d.outer *= s
		default:
			phase = 2
			d.inner *= s
		}
	}
	d.block = true
	if c8 := min(d.inner, reduceBlockRun) &^ 7; c8 > 0 {
		d.lanes = make([]uint64, c8/4)
	}
}

// next advances the odometer over the input and returns the output index of the new
// position, or -1 when the walk is over.
func (d *reduceData) next(o int) int {
	for k := len(d.iter) - 1; k >= 0; k-- {
		d.iter[k]++
		o += d.outIdx[k]
		if d.iter[k] < d.inShape[k] {
			return o
		}
		o -= d.outIdx[k] * d.iter[k]
		d.iter[k] = 0
	}
	return -1
}

func evalReduce(n *tflite.Node) error {
	d := n.Data.(*reduceData)
	in, out := n.Input(0), n.Output(0)
	switch in.DType() {
	case tensor.Float32:
		reduceGeneric(d, in.Float32(), out.Float32())
		if d.op == schema.OpMean && d.count > 0 {
			y := out.Float32()
			c := float32(d.count)
			for i := range y {
				y[i] /= c
			}
		}
	case tensor.Int32:
		reduceGeneric(d, in.Int32(), out.Int32())
	case tensor.Int8:
		reduceQuant(d, in.Int8(), out.Int8())
	case tensor.Int16:
		reduceQuant(d, in.Int16(), out.Int16())
	case tensor.Uint8:
		if d.op == schema.OpMean {
			meanU8(d, in.Uint8(), out.Uint8())
		} else {
			reduceGeneric(d, in.Uint8(), out.Uint8())
		}
	}
	return nil
}

// reduceGeneric is ReduceGeneric: output initialised to the reducer's identity, then every
// input element folded in, in row-major order. MEAN on floats is a SUM here; the caller divides.
func reduceGeneric[T float32 | int32 | int8 | int16 | uint8](d *reduceData, x, y []T) {
	var init T
	switch d.op {
	case schema.OpReduceMax:
		init = lowest[T]()
	case schema.OpReduceMin:
		init = highest[T]()
	case schema.OpReduceProd:
		init = 1
	}
	for i := range y {
		y[i] = init
	}
	if len(x) == 0 {
		return
	}
	clear(d.iter)
	o := 0
	for _, v := range x {
		switch d.op {
		case schema.OpMean, schema.OpSum:
			y[o] += v
		case schema.OpReduceMax:
			if v > y[o] {
				y[o] = v
			}
		case schema.OpReduceMin:
			if v < y[o] {
				y[o] = v
			}
		case schema.OpReduceProd:
			y[o] *= v
		}
		o = d.next(o)
	}
}

func lowest[T float32 | int32 | int8 | int16 | uint8]() T {
	var z T
	switch any(z).(type) {
	case uint8:
		return 0
	case float32:
		return T(math.Inf(-1)) // std::numeric_limits<float>::lowest() compares the same
	case int32:
		v := int64(math.MinInt32)
		return T(v)
	case int16:
		v := int64(math.MinInt16)
		return T(v)
	}
	v := int64(math.MinInt8)
	return T(v)
}

func highest[T float32 | int32 | int8 | int16 | uint8]() T {
	var z T
	switch any(z).(type) {
	case uint8:
		v := int64(math.MaxUint8)
		return T(v)
	case float32:
		return T(math.Inf(1))
	case int32:
		v := int64(math.MaxInt32)
		return T(v)
	case int16:
		v := int64(math.MaxInt16)
		return T(v)
	}
	v := int64(math.MaxInt8)
	return T(v)
}

// reduceQuant handles int8/int16: MAX/MIN on raw values, MEAN and SUM through
// QuantizedMeanOrSum.
func reduceQuant[T int8 | int16](d *reduceData, x, y []T) {
	if d.op == schema.OpReduceMax || d.op == schema.OpReduceMin {
		reduceGeneric(d, x, y)
		return
	}
	if d.op == schema.OpReduceProd {
		reduceProdQuant(d, x, y)
		return
	}
	clear(d.acc)
	if d.block && len(x) > 0 {
		reduceSumBlock(d, x)
	} else if len(x) > 0 {
		clear(d.iter)
		o := 0
		for _, v := range x {
			d.acc[o] += int32(v) // int32 sums wrap, as AddTensorValuesWithExpectedOverflow
			o = d.next(o)
		}
	}
	if d.count == 0 {
		clear(y)
		return
	}
	for i, s := range d.acc {
		shifted := int32(int64(s) - int64(d.inZP)*int64(d.count))
		v := MultiplyByQuantizedMultiplier(shifted, d.mult, d.shift) + d.outZP
		y[i] = T(min(max(v, d.lo), d.hi))
	}
}

// reduceSumBlock adds the input, seen as [outer, span, inner], into acc ([outer, inner]): the
// int32 sums of the odometer's walk (they wrap alike and do not depend on the order), a row
// of inner values at a time, for 8-bit input eight channels a word with poolSum8.
func reduceSumBlock[T int8 | int16 | uint8](d *reduceData, x []T) {
	var xb []byte
	flip, bias := uint64(0), int32(0)
	switch x := any(x).(type) {
	case []int8:
		xb, flip, bias = int8Bytes(x), signs8, 128
	case []uint8:
		xb = x
	}
	for o := range d.outer {
		acc := d.acc[o*d.inner : (o+1)*d.inner]
		first := o * d.span * d.inner
		c8 := 0
		if xb != nil {
			c8 = d.inner &^ 7
		}
		for c0 := 0; c0 < c8; c0 += reduceBlockRun {
			run := min(c8-c0, reduceBlockRun)
			lanes := d.lanes[:run/4]
			ty, tx := 0, 0
			for done := 0; done < d.span; {
				nt := min(d.span-done, 256)
				clear(lanes)
				ty, tx = poolSum8(lanes, xb, first+c0, d.span, d.inner, 0, ty, tx, nt, run, flip)
				poolUnpack8(acc[c0:c0+run], lanes, bias*int32(nt))
				done += nt
			}
		}
		if c8 < d.inner {
			a := acc[c8:]
			for r := range d.span {
				row := x[first+r*d.inner+c8 : first+(r+1)*d.inner]
				for i, v := range row {
					a[i] += int32(v)
				}
			}
		}
	}
}

type argData struct {
	outer, axis, inner int
	max                bool
}

func prepareArg(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	switch in.DType() {
	case tensor.Float32, tensor.Int8, tensor.Int16, tensor.Int32, tensor.Uint8:
	default:
		return fmt.Errorf("input %q: type %s not supported", in.Name(), in.DType())
	}
	if out.DType() != tensor.Int32 && out.DType() != tensor.Int64 {
		return fmt.Errorf("output %q is %s, want int32 or int64", out.Name(), out.DType())
	}
	if o, ok := n.Options.(*tflite.ArgOptions); ok && o.OutputType != schema.TensorTypeInt32 && o.OutputType != schema.TensorTypeInt64 {
		return fmt.Errorf("output_type %s not supported", o.OutputType)
	}
	av, err := constInts(n.Input(1), "axis")
	if err != nil {
		return err
	}
	if len(av) != 1 {
		return fmt.Errorf("axis has %d values, want 1", len(av))
	}
	if in.Rank() == 0 {
		return fmt.Errorf("input %q is a scalar", in.Name())
	}
	axis, err := normAxis(av[0], in.Rank(), "axis")
	if err != nil {
		return err
	}
	if in.Dim(axis) == 0 {
		return fmt.Errorf("input %q: reduced dimension %d is empty", in.Name(), axis)
	}
	d := &argData{outer: 1, inner: 1, axis: in.Dim(axis), max: n.Op.Builtin == schema.OpArgMax}
	for i, s := range in.Shape() {
		switch {
		case i < axis:
			d.outer *= s
		case i > axis:
			d.inner *= s
		}
	}
	shape := append(append([]int{}, in.Shape()[:axis]...), in.Shape()[axis+1:]...)
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	n.Data = d
	return nil
}

func evalArg(n *tflite.Node) error {
	d := n.Data.(*argData)
	in, out := n.Input(0), n.Output(0)
	switch in.DType() {
	case tensor.Float32:
		argMinMax(d, in.Float32(), out)
	case tensor.Int8:
		argMinMax(d, in.Int8(), out)
	case tensor.Uint8:
		argMinMax(d, in.Uint8(), out)
	case tensor.Int16:
		argMinMax(d, in.Int16(), out)
	case tensor.Int32:
		argMinMax(d, in.Int32(), out)
	}
	return nil
}

// argMinMax keeps the first index on ties: the reference replaces only on a strict
// std::greater / std::less.
func argMinMax[T float32 | int8 | uint8 | int16 | int32](d *argData, x []T, out *tensor.Tensor) {
	o32, o64 := out.Int32(), out.Int64()
	for o := 0; o < d.outer; o++ {
		for i := 0; i < d.inner; i++ {
			base := o*d.axis*d.inner + i
			best, bi := x[base], 0
			for k := 1; k < d.axis; k++ {
				v := x[base+k*d.inner]
				if d.max && v > best || !d.max && v < best {
					best, bi = v, k
				}
			}
			if o32 != nil {
				o32[o*d.inner+i] = int32(bi)
			} else {
				o64[o*d.inner+i] = int64(bi)
			}
		}
	}
}

type cumsumData struct {
	outer, axis, inner int
	exclusive, reverse bool
}

func prepareCumsum(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	switch in.DType() {
	case tensor.Float32, tensor.Int32, tensor.Int64:
	default:
		// TFLite's cumsum.cc supports float32, int32 and int64.
		return fmt.Errorf("input %q: type %s not supported (float32, int32, int64)", in.Name(), in.DType())
	}
	if out.DType() != in.DType() {
		return fmt.Errorf("input %q is %s, output %q is %s", in.Name(), in.DType(), out.Name(), out.DType())
	}
	d, err := cumsumGeometry(n)
	if err != nil {
		return err
	}
	n.Data = d
	return nil
}

// cumsumGeometry reads CUMSUM's constant axis and options and sets the output shape.
func cumsumGeometry(n *tflite.Node) (*cumsumData, error) {
	in := n.Input(0)
	av, err := constInts(n.Input(1), "axis")
	if err != nil {
		return nil, err
	}
	if len(av) != 1 {
		return nil, fmt.Errorf("axis has %d values, want 1", len(av))
	}
	if in.Rank() == 0 {
		return nil, fmt.Errorf("input %q is a scalar", in.Name())
	}
	axis, err := normAxis(av[0], in.Rank(), "axis")
	if err != nil {
		return nil, err
	}
	d := &cumsumData{outer: 1, inner: 1, axis: in.Dim(axis)}
	if o, ok := n.Options.(*tflite.CumsumOptions); ok {
		d.exclusive, d.reverse = o.Exclusive, o.Reverse
	}
	for i, s := range in.Shape() {
		switch {
		case i < axis:
			d.outer *= s
		case i > axis:
			d.inner *= s
		}
	}
	if err := setOutShape(n.Output(0), in.Shape()); err != nil {
		return nil, err
	}
	return d, nil
}

func evalCumsum(n *tflite.Node) error {
	d := n.Data.(*cumsumData)
	in, out := n.Input(0), n.Output(0)
	switch in.DType() {
	case tensor.Float32:
		cumsum(d, in.Float32(), out.Float32())
	case tensor.Int32:
		cumsum(d, in.Int32(), out.Int32())
	case tensor.Int64:
		cumsum(d, in.Int64(), out.Int64())
	}
	return nil
}

func cumsum[T float32 | int32 | int64](d *cumsumData, x, y []T) {
	for o := 0; o < d.outer; o++ {
		for i := 0; i < d.inner; i++ {
			var acc T
			for k := 0; k < d.axis; k++ {
				j := k
				if d.reverse {
					j = d.axis - 1 - k
				}
				p := (o*d.axis+j)*d.inner + i
				if d.exclusive {
					y[p] = acc
					acc += x[p]
				} else {
					acc += x[p]
					y[p] = acc
				}
			}
		}
	}
}

// u8MeanMode is the arithmetic full TFLite's reduce.cc picks for a uint8 MEAN (TFLite Micro has
// no uint8 MEAN, so the full runtime's reference kernels are the specification).
type u8MeanMode int

const (
	u8MeanQuantized u8MeanMode = iota // QuantizedMeanOrSum, as for int8
	u8Mean4D                          // 4-D, axes {1, 2}, keep_dims: reference_ops::Mean for uint8
	u8MeanTruncated                   // equal quantization: the int32 sum / count, truncated
)

// prepareMeanU8 chooses the uint8 MEAN arithmetic and, for the 4-D case, its constants:
// in_scale / (count × out_scale) in float32 as a Q31 multiplier, and the output zero point
// minus the input zero point rescaled in float32 and rounded half away from zero.
func prepareMeanU8(d *reduceData, reduced []bool, keep bool, inScale, outScale float32) {
	switch {
	case keep && len(reduced) == 4 && !reduced[0] && reduced[1] && reduced[2] && !reduced[3]:
		d.u8Mode = u8Mean4D
		temp := float32(d.inZP) * inScale / outScale
		if temp > 0 {
			temp += 0.5
		} else {
			temp -= 0.5
		}
		d.u8Bias = d.outZP - int32(temp)
		d.mult, d.shift = QuantizeMultiplier(float64(inScale / (float32(d.count) * outScale)))
	case inScale == outScale && d.inZP == d.outZP:
		d.u8Mode = u8MeanTruncated
	default:
		d.u8Mode = u8MeanQuantized
	}
}

// meanU8 is uint8 MEAN in the arithmetic prepareMeanU8 chose.
func meanU8(d *reduceData, x, y []uint8) {
	clear(d.acc)
	if d.block && len(x) > 0 {
		reduceSumBlock(d, x)
	} else if len(x) > 0 {
		clear(d.iter)
		o := 0
		for _, v := range x {
			d.acc[o] += int32(v)
			o = d.next(o)
		}
	}
	if d.count == 0 {
		clear(y)
		return
	}
	for i, s := range d.acc {
		var v int32
		switch d.u8Mode {
		case u8Mean4D:
			v = MultiplyByQuantizedMultiplier(s, d.mult, d.shift) + d.u8Bias
		case u8MeanTruncated:
			v = s / int32(d.count)
		default:
			v = MultiplyByQuantizedMultiplier(int32(int64(s)-int64(d.inZP)*int64(d.count)), d.mult, d.shift) + d.outZP
		}
		y[i] = uint8(min(max(v, 0), math.MaxUint8))
	}
}

// reduceProdQuant is reference_ops::QuantizedReduceProd (full TFLite; TFLite Micro has no
// REDUCE_PROD): each output starts at its first input minus the zero point, every further
// factor multiplies in int64 and is rescaled at once (64-bit MultiplyByQuantizedMultiplier),
// and the product is rescaled once more, offset and clamped. An empty reduction gives the
// output zero point's rescaled 0.
func reduceProdQuant[T int8 | int16](d *reduceData, x, y []T) {
	clear(d.acc)
	clear(d.seen)
	if len(x) > 0 {
		clear(d.iter)
		o := 0
		for _, v := range x {
			f := int32(v) - d.inZP
			if !d.seen[o] {
				d.acc[o], d.seen[o] = f, true
			} else {
				d.acc[o] = MultiplyByQuantizedMultiplier64(int64(d.acc[o])*int64(f), d.mult, d.shift)
			}
			o = d.next(o)
		}
	}
	for i, a := range d.acc {
		v := MultiplyByQuantizedMultiplier64(int64(a), d.mult, d.shift) + d.outZP
		y[i] = T(min(max(v, d.lo), d.hi))
	}
}
