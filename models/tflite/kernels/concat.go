package kernels

import (
	"fmt"
	"slices"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// CONCATENATION, PACK, UNPACK, SPLIT and SPLIT_V: several inputs into one output or one input
// into several outputs, each part one strided copy. Quantized tensors must all share the
// output's scale and zero point (TFLite's concatenation.cc and TFLite Micro require it for
// int8/int16: no requantization).

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpConcatenation, 1, 4, tflite.KernelFuncs{PrepareFn: prepareConcat, EvalFn: evalGather})
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

// checkParts checks the element type of every tensor against ref.
func checkParts(ref *tensor.Tensor, ts []*tensor.Tensor, what string) (int, error) {
	es, err := elemBytes(ref)
	if err != nil {
		return 0, err
	}
	if ref.DType() == tensor.Uint8 {
		return 0, fmt.Errorf("tensor %q: type uint8 not supported", ref.Name())
	}
	for i, t := range ts {
		if t == nil {
			return 0, fmt.Errorf("%s %d is omitted", what, i)
		}
		if err := sameType(t, ref); err != nil {
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
	es, err := checkParts(out, n.Inputs, "input")
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
