package kernels

import (
	"fmt"
	"math"
	"slices"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// CONCATENATION, PACK, UNPACK, SPLIT and SPLIT_V: several inputs into one output or one input
// into several outputs, each part one strided copy. Quantized tensors must all share the
// output's scale and zero point (TFLite's concatenation.cc and TFLite Micro require it for
// int8/int16: no requantization). uint8 CONCATENATION is the exception: full TFLite
// requantizes inputs quantized differently from the output (ConcatenationWithScaling).

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpConcatenation, 1, 4, tflite.KernelFuncs{PrepareFn: prepareConcat, EvalFn: evalConcat})
		r.AddBuiltin(schema.OpPack, 1, 4, tflite.KernelFuncs{PrepareFn: preparePack, EvalFn: evalGather})
		r.AddBuiltin(schema.OpUnpack, 1, 4, tflite.KernelFuncs{PrepareFn: prepareUnpack, EvalFn: evalScatter})
		r.AddBuiltin(schema.OpSplit, 1, 4, tflite.KernelFuncs{PrepareFn: prepareSplit, EvalFn: evalScatter})
		r.AddBuiltin(schema.OpSplitV, 1, 3, tflite.KernelFuncs{PrepareFn: prepareSplitV, EvalFn: evalScatter})
	})
}

// partsData holds one strided copy per input (gather kind) or per output (scatter kind).
type partsData struct {
	es     int
	data   int // index of the one data input (scatter kind)
	blocks []moveBlock
}

// evalGather copies input i with blocks[i] into output 0.
func evalGather(n *tflite.Node) error {
	d := n.Data.(*partsData)
	out := n.Output(0).Bytes()
	for i := range d.blocks {
		d.blocks[i].run(out, n.Inputs[i].Bytes(), d.es)
	}
	return nil
}

// evalScatter copies the data input with blocks[i] into output i.
func evalScatter(n *tflite.Node) error {
	d := n.Data.(*partsData)
	in := n.Inputs[d.data].Bytes()
	for i := range d.blocks {
		d.blocks[i].run(n.Outputs[i].Bytes(), in, d.es)
	}
	return nil
}

// checkParts checks the element type and quantization of every tensor against ref.
func checkParts(ref *tensor.Tensor, ts []*tensor.Tensor, what string) (int, error) {
	return checkPartsWith(ref, ts, what, sameType)
}

// checkPartsDType is checkParts without the quantization check.
func checkPartsDType(ref *tensor.Tensor, ts []*tensor.Tensor, what string) (int, error) {
	return checkPartsWith(ref, ts, what, func(t, ref *tensor.Tensor) error {
		if t.DType() != ref.DType() {
			return fmt.Errorf("%q is %s, want %s", t.Name(), t.DType(), ref.DType())
		}
		return nil
	})
}

func checkPartsWith(ref *tensor.Tensor, ts []*tensor.Tensor, what string, same func(t, ref *tensor.Tensor) error) (int, error) {
	es, err := elemBytes(ref)
	if err != nil {
		return 0, err
	}
	for i, t := range ts {
		if t == nil {
			return 0, fmt.Errorf("%s %d is omitted", what, i)
		}
		if err := same(t, ref); err != nil {
			return 0, fmt.Errorf("%s %d: %w", what, i, err)
		}
		if err := checkRank(t, maxMoveRank); err != nil {
			return 0, err
		}
	}
	return es, nil
}

func prepareConcat(n *tflite.Node) error {
	if len(n.Inputs) < 1 || len(n.Outputs) != 1 {
		return fmt.Errorf("%d inputs and %d outputs, want at least 1 and 1", len(n.Inputs), len(n.Outputs))
	}
	opts, _ := n.Options.(*tflite.ConcatenationOptions)
	if opts == nil {
		opts = &tflite.ConcatenationOptions{}
	}
	if opts.Activation != schema.ActivationNone {
		// TFLite's concatenation.cc: fused activations are not implemented.
		return fmt.Errorf("fused activation %d not supported", opts.Activation)
	}
	out := n.Output(0)
	// uint8 inputs quantized unlike the output are requantized (checked for dtype and rank
	// only); everything else must match the output exactly.
	requant := out.DType() == tensor.Uint8 && !allSameQuant(out, n.Inputs)
	check := checkParts
	if requant {
		check = checkPartsDType
	}
	es, err := check(out, n.Inputs, "input")
	if err != nil {
		return err
	}
	first := n.Inputs[0]
	r := first.Rank()
	axis, err := normAxis(opts.Axis, r, "axis")
	if err != nil {
		return err
	}
	shape := append([]int(nil), first.Shape()...)
	shape[axis] = 0
	for i, in := range n.Inputs {
		if in.Rank() != r {
			return fmt.Errorf("input %d %q has rank %d, want %d", i, in.Name(), in.Rank(), r)
		}
		for k := 0; k < r; k++ {
			if k != axis && in.Dim(k) != first.Dim(k) {
				return fmt.Errorf("input %d %q has shape %v, incompatible with %v on axis %d", i, in.Name(), in.Shape(), first.Shape(), axis)
			}
		}
		shape[axis] += in.Dim(axis)
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	if requant {
		return prepareConcatU8(n, axis)
	}
	ost := stridesOf(shape)
	d := &partsData{es: es}
	off := 0
	for _, in := range n.Inputs {
		d.blocks = append(d.blocks, moveBlock{dims: append([]int(nil), in.Shape()...), srcStride: stridesOf(in.Shape()), dstOff: off * ost[axis], dstStride: ost})
		off += in.Dim(axis)
	}
	n.Data = d
	return nil
}

func preparePack(n *tflite.Node) error {
	if len(n.Inputs) < 1 || len(n.Outputs) != 1 {
		return fmt.Errorf("%d inputs and %d outputs, want at least 1 and 1", len(n.Inputs), len(n.Outputs))
	}
	opts, _ := n.Options.(*tflite.PackOptions)
	if opts == nil {
		opts = &tflite.PackOptions{}
	}
	if opts.ValuesCount != len(n.Inputs) {
		return fmt.Errorf("values_count %d, but %d inputs", opts.ValuesCount, len(n.Inputs))
	}
	out := n.Output(0)
	es, err := checkParts(out, n.Inputs, "input")
	if err != nil {
		return err
	}
	first := n.Inputs[0]
	axis, err := normAxis(opts.Axis, first.Rank()+1, "axis")
	if err != nil {
		return err
	}
	for i, in := range n.Inputs {
		if !slices.Equal(in.Shape(), first.Shape()) {
			return fmt.Errorf("input %d %q has shape %v, want %v", i, in.Name(), in.Shape(), first.Shape())
		}
	}
	shape := append(append(append([]int(nil), first.Shape()[:axis]...), len(n.Inputs)), first.Shape()[axis:]...)
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	ost := stridesOf(shape)
	dst := append(append([]int(nil), ost[:axis]...), ost[axis+1:]...)
	d := &partsData{es: es}
	for i, in := range n.Inputs {
		d.blocks = append(d.blocks, moveBlock{dims: append([]int(nil), in.Shape()...), srcStride: stridesOf(in.Shape()), dstOff: i * ost[axis], dstStride: dst})
	}
	n.Data = d
	return nil
}

func prepareUnpack(n *tflite.Node) error {
	if len(n.Inputs) != 1 || len(n.Outputs) < 1 {
		return fmt.Errorf("%d inputs and %d outputs, want 1 and at least 1", len(n.Inputs), len(n.Outputs))
	}
	in := n.Input(0)
	opts, _ := n.Options.(*tflite.UnpackOptions)
	if opts == nil {
		opts = &tflite.UnpackOptions{}
	}
	es, err := checkParts(in, n.Outputs, "output")
	if err != nil {
		return err
	}
	if in.Rank() == 0 {
		return fmt.Errorf("input %q is a scalar", in.Name())
	}
	axis, err := normAxis(opts.Axis, in.Rank(), "axis")
	if err != nil {
		return err
	}
	if in.Dim(axis) != len(n.Outputs) || opts.Num != len(n.Outputs) {
		return fmt.Errorf("num %d and input dimension %d (%d) must equal the %d outputs", opts.Num, axis, in.Dim(axis), len(n.Outputs))
	}
	shape := append(append([]int(nil), in.Shape()[:axis]...), in.Shape()[axis+1:]...)
	ist := stridesOf(in.Shape())
	src := append(append([]int(nil), ist[:axis]...), ist[axis+1:]...)
	d := &partsData{es: es}
	for i, out := range n.Outputs {
		if err := setOutShape(out, shape); err != nil {
			return err
		}
		d.blocks = append(d.blocks, moveBlock{dims: shape, srcOff: i * ist[axis], srcStride: src, dstStride: stridesOf(shape)})
	}
	n.Data = d
	return nil
}

// splitParts builds the scatter blocks of SPLIT/SPLIT_V: output i takes sizes[i] entries of
// the axis.
func splitParts(n *tflite.Node, in *tensor.Tensor, axis int, sizes []int) error {
	es, err := checkParts(in, n.Outputs, "output")
	if err != nil {
		return err
	}
	ist := stridesOf(in.Shape())
	d := &partsData{es: es}
	if n.Op.Builtin == schema.OpSplit {
		d.data = 1
	}
	off := 0
	for i, out := range n.Outputs {
		shape := append([]int(nil), in.Shape()...)
		shape[axis] = sizes[i]
		if err := setOutShape(out, shape); err != nil {
			return err
		}
		d.blocks = append(d.blocks, moveBlock{dims: shape, srcOff: off * ist[axis], srcStride: ist, dstStride: stridesOf(shape)})
		off += sizes[i]
	}
	n.Data = d
	return nil
}

// prepareSplit: inputs (axis, value); num_splits equal parts.
func prepareSplit(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, len(n.Outputs)); err != nil {
		return err
	}
	in := n.Input(1)
	av, err := constInts(n.Input(0), "axis")
	if err != nil {
		return err
	}
	if len(av) != 1 {
		return fmt.Errorf("axis has %d values, want 1", len(av))
	}
	axis, err := normAxis(av[0], in.Rank(), "axis")
	if err != nil {
		return err
	}
	opts, _ := n.Options.(*tflite.SplitOptions)
	num := len(n.Outputs)
	if opts != nil && opts.NumSplits != num {
		return fmt.Errorf("num_splits %d, but %d outputs", opts.NumSplits, num)
	}
	if num == 0 || in.Dim(axis)%num != 0 {
		return fmt.Errorf("dimension %d of size %d does not split into %d equal parts", axis, in.Dim(axis), num)
	}
	sizes := make([]int, num)
	for i := range sizes {
		sizes[i] = in.Dim(axis) / num
	}
	return splitParts(n, in, axis, sizes)
}

// prepareSplitV: inputs (value, size_splits, axis); one size may be -1 (the rest).
func prepareSplitV(n *tflite.Node) error {
	if err := n.CheckIO(3, 3, len(n.Outputs)); err != nil {
		return err
	}
	in := n.Input(0)
	sizes, err := constInts(n.Input(1), "size_splits")
	if err != nil {
		return err
	}
	av, err := constInts(n.Input(2), "axis")
	if err != nil {
		return err
	}
	if len(av) != 1 {
		return fmt.Errorf("axis has %d values, want 1", len(av))
	}
	axis, err := normAxis(av[0], in.Rank(), "axis")
	if err != nil {
		return err
	}
	if len(sizes) != len(n.Outputs) || len(sizes) == 0 {
		return fmt.Errorf("%d size_splits for %d outputs", len(sizes), len(n.Outputs))
	}
	infer, sum := -1, 0
	for i, s := range sizes {
		switch {
		case s == -1 && infer < 0:
			infer = i
		case s < 0:
			return fmt.Errorf("bad size_splits %v", sizes)
		default:
			sum += s
		}
	}
	dim := in.Dim(axis)
	if infer >= 0 {
		if sum > dim {
			return fmt.Errorf("size_splits %v exceed dimension %d of size %d", sizes, axis, dim)
		}
		sizes[infer] = dim - sum
	} else if sum != dim {
		return fmt.Errorf("size_splits %v do not add up to dimension %d of size %d", sizes, axis, dim)
	}
	return splitParts(n, in, axis, sizes)
}

// evalConcat is evalGather, or the uint8 requantizing concatenation.
func evalConcat(n *tflite.Node) error {
	if d, ok := n.Data.(*concatU8Data); ok {
		concatU8(d, n)
		return nil
	}
	return evalGather(n)
}

func allSameQuant(out *tensor.Tensor, ins []*tensor.Tensor) bool {
	for _, in := range ins {
		if in != nil && !sameQuant(in.Quant(), out.Quant()) {
			return false
		}
	}
	return true
}

// concatU8Data is reference_ops::ConcatenationWithScaling: per outer index, each input's block
// of copy[i] values is copied, or requantized when its quantization differs from the output's.
type concatU8Data struct {
	outer int
	copy  []int
	scale []float32 // input_scale / output_scale in float32; 0 where the block is copied
	bias  []float32 // -input_zero_point × scale
	outZP int32
}

func prepareConcatU8(n *tflite.Node, axis int) error {
	out := n.Output(0)
	os, oz, err := perTensor(out)
	if err != nil {
		return err
	}
	d := &concatU8Data{outer: 1, outZP: oz}
	for i := 0; i < axis; i++ {
		d.outer *= out.Dim(i)
	}
	inner := 1
	for i := axis + 1; i < out.Rank(); i++ {
		inner *= out.Dim(i)
	}
	inv := 1 / os
	for _, in := range n.Inputs {
		is, iz, err := perTensor(in)
		if err != nil {
			return err
		}
		d.copy = append(d.copy, in.Dim(axis)*inner)
		var sc, b float32
		if is != os || iz != oz {
			sc = is * inv
			b = -float32(iz) * sc
		}
		d.scale, d.bias = append(d.scale, sc), append(d.bias, b)
	}
	n.Data = d
	return nil
}

func concatU8(d *concatU8Data, n *tflite.Node) {
	y := n.Output(0).Uint8()
	o := 0
	for k := 0; k < d.outer; k++ {
		for i, in := range n.Inputs {
			c := d.copy[i]
			x := in.Uint8()[k*c : (k+1)*c]
			if d.scale[i] == 0 {
				copy(y[o:o+c], x)
			} else {
				for j, v := range x {
					// TfLiteRound(input * scale + bias) in float32; the explicit conversion
					// keeps Go from fusing the multiply-add.
					f := float32(float32(v)*d.scale[i]) + d.bias[i]
					r := int32(math.Round(float64(f))) + d.outZP
					y[o+j] = uint8(min(max(r, 0), math.MaxUint8))
				}
			}
			o += c
		}
	}
}
