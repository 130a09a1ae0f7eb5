package kernels

import (
	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Kernels for one more dtype of an op, kept out of the op's own file: a dtypeKernel sends the
// nodes of that dtype to its own Prepare and Eval and every other node to the kernel registered
// before it (registerWrapper runs after every register).

// wrappedEvaluator is the node state of a node a dtypeKernel prepared: Eval hands the node to
// it.
type wrappedEvaluator interface {
	evalWrapped(n *tflite.Node) error
}

// dtypeKernel prepares and runs the nodes match selects itself and hands every other node to
// the kernel registered before it.
type dtypeKernel struct {
	inner   tflite.Kernel
	match   func(n *tflite.Node) bool
	prepare func(n *tflite.Node) error // sets n.Data to a wrappedEvaluator
}

func (k dtypeKernel) Init(n *tflite.Node) (any, error) { return k.inner.Init(n) }

func (k dtypeKernel) Prepare(n *tflite.Node) error {
	if k.match(n) {
		return k.prepare(n)
	}
	return k.inner.Prepare(n)
}

func (k dtypeKernel) Eval(n *tflite.Node) error {
	if e, ok := n.Data.(wrappedEvaluator); ok {
		return e.evalWrapped(n)
	}
	return k.inner.Eval(n)
}

// wrapDType routes the nodes of op (every registered version) whose input 0 is dt to prepare.
func wrapDType(r *Resolver, op schema.BuiltinOperator, dt tensor.DType, prepare func(*tflite.Node) error) {
	wrapWhen(r, op, func(n *tflite.Node) bool {
		in := n.Input(0)
		return in != nil && in.DType() == dt
	}, prepare)
}

// wrapWhen routes the nodes of op (every registered version) that match selects to prepare.
func wrapWhen(r *Resolver, op schema.BuiltinOperator, match func(*tflite.Node) bool, prepare func(*tflite.Node) error) {
	for key, k := range r.builtins {
		if key.op == op {
			r.builtins[key] = dtypeKernel{inner: k, match: match, prepare: prepare}
		}
	}
}
