package kernels

import (
	"fmt"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Shape ops: SQUEEZE, EXPAND_DIMS, SHAPE, FILL, ZEROS_LIKE, BROADCAST_TO, BROADCAST_ARGS and
// TRANSPOSE. Shape-like parameters are constant tensors (TFLite Micro requires that), so
// every output shape is fixed in Prepare.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpSqueeze, 1, 2, tflite.KernelFuncs{PrepareFn: prepareSqueeze, EvalFn: copyKernel})
		r.AddBuiltin(schema.OpExpandDims, 1, 2, tflite.KernelFuncs{PrepareFn: prepareExpandDims, EvalFn: copyKernel})
		r.AddBuiltin(schema.OpShape, 1, 1, tflite.KernelFuncs{PrepareFn: prepareShape, EvalFn: evalShape})
		r.AddBuiltin(schema.OpFill, 1, 4, tflite.KernelFuncs{PrepareFn: prepareFill, EvalFn: evalFill})
		r.AddBuiltin(schema.OpZerosLike, 1, 1, tflite.KernelFuncs{PrepareFn: prepareZerosLike, EvalFn: evalZerosLike})
		r.AddBuiltin(schema.OpBroadcastTo, 1, 3, tflite.KernelFuncs{PrepareFn: prepareBroadcastTo, EvalFn: evalMove})
		r.AddBuiltin(schema.OpBroadcastArgs, 1, 1, tflite.KernelFuncs{PrepareFn: prepareBroadcastArgs, EvalFn: evalBroadcastArgs})
		r.AddBuiltin(schema.OpTranspose, 1, 6, tflite.KernelFuncs{PrepareFn: prepareTranspose, EvalFn: evalMove})
	})
}

// prepareReshapeLike checks an op whose output holds the input's bytes under a new shape.
func prepareReshapeLike(in, out *tensor.Tensor, shape []int) error {
	if _, err := elemBytes(in); err != nil {
		return err
	}
	if err := sameType(in, out); err != nil {
		return err
	}
	return setOutShape(out, shape)
}

func prepareSqueeze(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	var dims []int
	if o, ok := n.Options.(*tflite.SqueezeOptions); ok {
		dims = o.Dims
	}
	if err := checkRank(in, 8); err != nil {
		return err
	}
	drop := make([]bool, in.Rank())
	if len(dims) == 0 {
		// No squeeze_dims: every size-1 dimension goes.
		for i, s := range in.Shape() {
			drop[i] = s == 1
		}
	}
	for _, a := range dims {
		k, err := normAxis(a, in.Rank(), "squeeze dimension")
		if err != nil {
			return err
		}
		if in.Dim(k) != 1 {
			return fmt.Errorf("cannot squeeze dimension %d of size %d", k, in.Dim(k))
		}
		drop[k] = true
	}
	shape := []int{}
	for i, s := range in.Shape() {
		if !drop[i] {
			shape = append(shape, s)
		}
	}
	return prepareReshapeLike(in, out, shape)
}

func prepareExpandDims(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	av, err := constInts(n.Input(1), "axis")
	if err != nil {
		return err
	}
	if len(av) != 1 {
		return fmt.Errorf("axis has %d values, want 1", len(av))
	}
	axis, err := normAxis(av[0], in.Rank()+1, "axis")
	if err != nil {
		return err
	}
	shape := append(append(append([]int{}, in.Shape()[:axis]...), 1), in.Shape()[axis:]...)
	return prepareReshapeLike(in, out, shape)
}

func prepareShape(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if out.DType() != tensor.Int32 && out.DType() != tensor.Int64 {
		return fmt.Errorf("output %q is %s, want int32 or int64", out.Name(), out.DType())
	}
	if o, ok := n.Options.(*tflite.ShapeOptions); ok && o.OutType != schema.TensorTypeInt32 && o.OutType != schema.TensorTypeInt64 {
		return fmt.Errorf("out_type %s not supported", o.OutType)
	}
	return setOutShape(out, []int{in.Rank()})
}

func evalShape(n *tflite.Node) error {
	in, out := n.Input(0), n.Output(0)
	if v := out.Int32(); v != nil {
		for i, d := range in.Shape() {
			v[i] = int32(d)
		}
		return nil
	}
	v := out.Int64()
	for i, d := range in.Shape() {
		v[i] = int64(d)
	}
	return nil
}

// prepareFill: dims (constant int32/int64 vector) and a scalar value of the output's type.
func prepareFill(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	dt, val, out := n.Input(0), n.Input(1), n.Output(0)
	dims, err := constInts(dt, "dims")
	if err != nil {
		return err
	}
	if dt.Rank() != 1 {
		return fmt.Errorf("dims %q has rank %d, want 1", dt.Name(), dt.Rank())
	}
	for _, d := range dims {
		if d < 0 {
			return fmt.Errorf("dims %v has a negative dimension", dims)
		}
	}
	if tensor.NumElements(dims) < 0 {
		return fmt.Errorf("dims %v overflow", dims)
	}
	if val.NumElements() != 1 {
		return fmt.Errorf("value %q has %d elements, want 1", val.Name(), val.NumElements())
	}
	if _, err := elemBytes(val); err != nil {
		return err
	}
	if val.DType() != out.DType() {
		return fmt.Errorf("value %q is %s, output %q is %s", val.Name(), val.DType(), out.Name(), out.DType())
	}
	return setOutShape(out, dims)
}

func evalFill(n *tflite.Node) error {
	fillPattern(n.Output(0).Bytes(), n.Input(1).Bytes()[:n.Input(1).DType().Size()])
	return nil
}

func prepareZerosLike(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	switch in.DType() {
	case tensor.Float32, tensor.Int32, tensor.Int64:
	default:
		return fmt.Errorf("input %q: type %s not supported (float32, int32, int64)", in.Name(), in.DType())
	}
	if in.DType() != out.DType() {
		return fmt.Errorf("input %q is %s, output %q is %s", in.Name(), in.DType(), out.Name(), out.DType())
	}
	return setOutShape(out, in.Shape())
}

func evalZerosLike(n *tflite.Node) error {
	clear(n.Output(0).Bytes())
	return nil
}

// broadcastStrides gives in's element strides seen through a broadcast to outRank dimensions:
// 0 on dimensions that in repeats.
func broadcastStrides(in []int, outRank int) []int {
	ist := stridesOf(in)
	s := make([]int, outRank)
	for i := range s {
		if j := len(in) - outRank + i; j >= 0 && in[j] != 1 {
			s[i] = ist[j]
		}
	}
	return s
}

func prepareBroadcastTo(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	shape, err := constInts(n.Input(1), "shape")
	if err != nil {
		return err
	}
	if len(shape) > 5 || len(shape) < in.Rank() {
		return fmt.Errorf("target shape %v: rank must be %d to 5", shape, in.Rank())
	}
	es, err := elemBytes(in)
	if err != nil {
		return err
	}
	if err := sameType(in, out); err != nil {
		return err
	}
	for i := range shape {
		j := i - (len(shape) - in.Rank())
		if shape[i] < 0 || j >= 0 && in.Dim(j) != shape[i] && in.Dim(j) != 1 {
			return fmt.Errorf("input %q of shape %v does not broadcast to %v", in.Name(), in.Shape(), shape)
		}
	}
	if tensor.NumElements(shape) < 0 {
		return fmt.Errorf("target shape %v overflows", shape)
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	n.Data = &moveData{es: es, block: moveBlock{dims: shape, srcStride: broadcastStrides(in.Shape(), len(shape)), dstStride: stridesOf(shape)}}
	return nil
}

// prepareBroadcastArgs: two int32/int64 shape vectors; the output is their broadcast shape,
// computed in Eval because the shapes may be computed by earlier ops.
func prepareBroadcastArgs(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	a, b, out := n.Input(0), n.Input(1), n.Output(0)
	for _, t := range []*tensor.Tensor{a, b} {
		if t.Rank() != 1 || (t.DType() != tensor.Int32 && t.DType() != tensor.Int64) || t.DType() != out.DType() {
			return fmt.Errorf("shape %q is %s, want a vector of the output type %s (int32 or int64)", t.Name(), t, out.DType())
		}
	}
	return setOutShape(out, []int{max(a.Dim(0), b.Dim(0))})
}

func evalBroadcastArgs(n *tflite.Node) error {
	a, b, out := n.Input(0), n.Input(1), n.Output(0)
	r := out.Dim(0)
	get := func(t *tensor.Tensor, i int) int64 {
		j := t.Dim(0) - r + i
		if j < 0 {
			return 1
		}
		if v := t.Int32(); v != nil {
			return int64(v[j])
		}
		return t.Int64()[j]
	}
	for i := 0; i < r; i++ {
		x, y := get(a, i), get(b, i)
		var v int64
		switch {
		case x == y || y == 1:
			v = x
		case x == 1:
			v = y
		default:
			return fmt.Errorf("shapes %q and %q are not broadcastable (dimension %d: %d vs %d)", a.Name(), b.Name(), i, x, y)
		}
		if o := out.Int32(); o != nil {
			o[i] = int32(v)
		} else {
			out.Int64()[i] = v
		}
	}
	return nil
}

func prepareTranspose(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	perm, err := constInts(n.Input(1), "perm")
	if err != nil {
		return err
	}
	r := in.Rank()
	if len(perm) != r {
		return fmt.Errorf("perm %v has %d entries for rank %d", perm, len(perm), r)
	}
	if err := checkRank(in, maxMoveRank); err != nil {
		return err
	}
	es, err := elemBytes(in)
	if err != nil {
		return err
	}
	if err := sameType(in, out); err != nil {
		return err
	}
	seen := make([]bool, r)
	ist := stridesOf(in.Shape())
	shape := make([]int, r)
	src := make([]int, r)
	for i, p := range perm {
		k, err := normAxis(p, r, "perm entry")
		if err != nil {
			return err
		}
		if seen[k] {
			return fmt.Errorf("perm %v repeats %d", perm, k)
		}
		seen[k] = true
		shape[i], src[i] = in.Dim(k), ist[k]
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	n.Data = &moveData{es: es, block: moveBlock{dims: shape, srcStride: src, dstStride: stridesOf(shape)}}
	return nil
}
