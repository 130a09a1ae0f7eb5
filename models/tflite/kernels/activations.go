package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Elementwise activations: RELU, RELU6, LOGISTIC (float32 for now; quantized variants come with
// the integer op set).

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpRelu, 1, 3, unaryFloat(func(v float32) float32 { return max(v, 0) }))
		r.AddBuiltin(schema.OpRelu6, 1, 3, unaryFloat(func(v float32) float32 { return min(max(v, 0), 6) }))
		r.AddBuiltin(schema.OpLogistic, 1, 3, unaryFloat(logistic))
	})
}

// logistic is 1/(1+e^-x) in float32; exp runs in float64 and rounds once.
func logistic(v float32) float32 {
	return float32(1 / (1 + math.Exp(-float64(v))))
}

// unaryFloat builds a kernel applying f to every element of a float32 tensor.
func unaryFloat(f func(float32) float32) tflite.Kernel {
	return tflite.KernelFuncs{
		PrepareFn: func(n *tflite.Node) error {
			if err := n.CheckIO(1, 1, 1); err != nil {
				return err
			}
			return sameFloatShape(n.Input(0), n.Output(0))
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
	if in.NumElements() != out.NumElements() {
		return fmt.Errorf("input %q has %d elements, output %q has %d", in.Name(), in.NumElements(), out.Name(), out.NumElements())
	}
	return nil
}
