package kernels

import (
	"fmt"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpReshape, 1, 2, tflite.KernelFuncs{PrepareFn: prepareReshape, EvalFn: evalReshape})
	})
}

// prepareReshape resolves the output shape like TFLite: a constant shape tensor (input 1) wins,
// then the new_shape option, then the output tensor's stored shape; one -1 is inferred. The
// element count must not change.
func prepareReshape(n *tflite.Node) error {
	if err := n.CheckIO(1, 2, 1); err != nil {
		return err
	}
	in, shapeT, out := n.Input(0), n.Input(1), n.Output(0)
	if in.DType() != out.DType() {
		return fmt.Errorf("input %s, output %s: types differ", in.DType(), out.DType())
	}
	var want []int
	switch {
	case shapeT != nil && shapeT.Constant() && shapeT.DType() == tensor.Int32 && shapeT.Rank() == 1:
		for _, v := range shapeT.Int32() {
			want = append(want, int(v))
		}
	case shapeT != nil && !shapeT.Constant():
		// A computed shape is only known at Invoke; TFLite Micro then relies on the output's
		// static shape, and so do we.
		want = append(want, out.Shape()...)
	default:
		if o, ok := n.Options.(*tflite.ReshapeOptions); ok && o.NewShape != nil {
			want = append(want, o.NewShape...)
		} else {
			want = append(want, out.Shape()...)
		}
	}
	infer, known := -1, 1
	for i, v := range want {
		switch {
		case v == -1 && infer < 0:
			infer = i
		case v < 0:
			return fmt.Errorf("bad target shape %v", want)
		default:
			if tensor.NumElements([]int{known, v}) < 0 {
				return fmt.Errorf("target shape %v overflows", want)
			}
			known *= v
		}
	}
	total := in.NumElements()
	if infer >= 0 {
		if known == 0 || total%known != 0 {
			return fmt.Errorf("cannot infer -1 in %v for %d elements", want, total)
		}
		want[infer] = total / known
	}
	if tensor.NumElements(want) != total {
		return fmt.Errorf("shape %v does not hold the %d elements of input %q %v", want, total, in.Name(), in.Shape())
	}
	out.SetShape(want)
	return nil
}

func evalReshape(n *tflite.Node) error {
	copy(n.Output(0).Bytes(), n.Input(0).Bytes())
	return nil
}
