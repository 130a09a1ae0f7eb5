package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpSoftmax, 1, 3, tflite.KernelFuncs{PrepareFn: prepareSoftmax, EvalFn: evalSoftmax})
	})
}

type softmaxData struct {
	beta  float32
	depth int
}

// prepareSoftmax: softmax over the last dimension, scaled by beta (reference_ops::Softmax).
func prepareSoftmax(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if err := sameFloatShape(in, out); err != nil {
		return err
	}
	if in.Rank() < 1 {
		return fmt.Errorf("input %q is a scalar, want rank >= 1", in.Name())
	}
	d := &softmaxData{beta: 1, depth: in.Dim(-1)}
	if o, ok := n.Options.(*tflite.SoftmaxOptions); ok {
		d.beta = o.Beta
	}
	n.Data = d
	return nil
}

func evalSoftmax(n *tflite.Node) error {
	d := n.Data.(*softmaxData)
	x, y := n.Input(0).Float32(), n.Output(0).Float32()
	if d.depth == 0 {
		return nil
	}
	for start := 0; start+d.depth <= len(x); start += d.depth {
		row, dst := x[start:start+d.depth], y[start:start+d.depth]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var sum float32
		for i, v := range row {
			e := float32(math.Exp(float64((v - mx) * d.beta)))
			dst[i] = e
			sum += e
		}
		for i := range dst {
			dst[i] /= sum
		}
	}
	return nil
}
