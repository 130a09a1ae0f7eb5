package kernels

import (
	"fmt"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Control flow and resource variables, as TFLite Micro's if.cc, while.cc, call_once.cc,
// var_handle.cc, assign_variable.cc and read_variable.cc. Subgraphs have static shapes here:
// every tensor passed into or out of a subgraph must match its counterpart's type and size,
// checked in Prepare, so Eval only copies bytes and invokes.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpIf, 1, 1, tflite.KernelFuncs{PrepareFn: prepareIf, EvalFn: evalIf})
		r.AddBuiltin(schema.OpWhile, 1, 1, tflite.KernelFuncs{PrepareFn: prepareWhile, EvalFn: evalWhile})
		r.AddBuiltin(schema.OpCallOnce, 1, 1, tflite.KernelFuncs{PrepareFn: prepareCallOnce, EvalFn: evalCallOnce})
		r.AddBuiltin(schema.OpVarHandle, 1, 1, tflite.KernelFuncs{PrepareFn: prepareVarHandle, EvalFn: evalVarHandle})
		r.AddBuiltin(schema.OpAssignVariable, 1, 1, tflite.KernelFuncs{PrepareFn: prepareAssignVariable, EvalFn: evalAssignVariable})
		r.AddBuiltin(schema.OpReadVariable, 1, 1, tflite.KernelFuncs{PrepareFn: prepareReadVariable, EvalFn: evalReadVariable})
	})
}

// MaxWhileIterations bounds one WHILE node's loop; a model whose condition never turns false
// fails Invoke with an error instead of hanging the device.
const MaxWhileIterations = 1 << 20

// sameLayout checks that data can be copied from src into dst byte for byte.
func sameLayout(what string, dst, src *tensor.Tensor) error {
	if dst.DType() != src.DType() || dst.ByteSize() != src.ByteSize() || dst.ByteSize() < 0 {
		return fmt.Errorf("%s: %s does not match %s (subgraph tensors must have the same type and static size)", what, dst, src)
	}
	return nil
}

func copyTensor(dst, src *tensor.Tensor) { copy(dst.Bytes(), src.Bytes()) }

func boolCond(what string, t *tensor.Tensor) error {
	if t.DType() != tensor.Bool || t.NumElements() != 1 {
		return fmt.Errorf("%s %s must be a bool with one element", what, t)
	}
	return nil
}

type ifData struct{ then, els *tflite.Graph }

// prepareIf: input 0 is the condition, the rest are passed to the chosen branch, whose outputs
// become the node's outputs.
func prepareIf(n *tflite.Node) error {
	opts, _ := n.Options.(*tflite.IfOptions)
	if opts == nil {
		return fmt.Errorf("missing IfOptions")
	}
	if err := n.CheckIO(1, len(n.Inputs), len(n.Outputs)); err != nil {
		return err
	}
	if err := boolCond("condition", n.Input(0)); err != nil {
		return err
	}
	d := &ifData{}
	var err error
	if d.then, err = n.Subgraph(opts.Then); err != nil {
		return fmt.Errorf("then branch: %w", err)
	}
	if d.els, err = n.Subgraph(opts.Else); err != nil {
		return fmt.Errorf("else branch: %w", err)
	}
	for _, g := range []*tflite.Graph{d.then, d.els} {
		if err := checkCall(g, n.Inputs[1:], n.Outputs); err != nil {
			return err
		}
	}
	n.Data = d
	return nil
}

// checkCall checks that ins can feed g's inputs and g's outputs can fill outs.
func checkCall(g *tflite.Graph, ins, outs []*tensor.Tensor) error {
	gi, goo := g.Inputs(), g.Outputs()
	if len(gi) != len(ins) || len(goo) != len(outs) {
		return fmt.Errorf("subgraph %d has %d inputs and %d outputs, the op passes %d and takes %d", g.Index(), len(gi), len(goo), len(ins), len(outs))
	}
	for i, t := range ins {
		if t == nil {
			return fmt.Errorf("input %d is omitted", i)
		}
		if err := sameLayout(fmt.Sprintf("subgraph %d input %d", g.Index(), i), gi[i], t); err != nil {
			return err
		}
	}
	for i, t := range outs {
		if err := sameLayout(fmt.Sprintf("subgraph %d output %d", g.Index(), i), t, goo[i]); err != nil {
			return err
		}
	}
	return nil
}

func evalIf(n *tflite.Node) error {
	d := n.Data.(*ifData)
	g := d.els
	if n.Input(0).Bool()[0] != 0 {
		g = d.then
	}
	for i, t := range g.Inputs() {
		copyTensor(t, n.Inputs[1+i])
	}
	if err := g.Invoke(); err != nil {
		return err
	}
	for i, t := range g.Outputs() {
		copyTensor(n.Outputs[i], t)
	}
	return nil
}

type whileData struct{ cond, body *tflite.Graph }

// prepareWhile: the node's inputs are the initial loop variables and its outputs the final ones;
// cond maps the variables to one bool, body maps them to their next values.
func prepareWhile(n *tflite.Node) error {
	opts, _ := n.Options.(*tflite.WhileOptions)
	if opts == nil {
		return fmt.Errorf("missing WhileOptions")
	}
	if len(n.Inputs) != len(n.Outputs) {
		return fmt.Errorf("%d inputs but %d outputs, want the same number", len(n.Inputs), len(n.Outputs))
	}
	for i, t := range n.Inputs {
		if t == nil {
			return fmt.Errorf("input %d is omitted", i)
		}
		if err := sameLayout(fmt.Sprintf("output %d", i), n.Outputs[i], t); err != nil {
			return err
		}
	}
	d := &whileData{}
	var err error
	if d.cond, err = n.Subgraph(opts.Cond); err != nil {
		return fmt.Errorf("cond: %w", err)
	}
	if d.body, err = n.Subgraph(opts.Body); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if len(d.cond.Outputs()) != 1 {
		return fmt.Errorf("cond subgraph %d has %d outputs, want 1", d.cond.Index(), len(d.cond.Outputs()))
	}
	if err := boolCond(fmt.Sprintf("cond subgraph %d output", d.cond.Index()), d.cond.Outputs()[0]); err != nil {
		return err
	}
	if len(d.cond.Inputs()) != len(n.Inputs) {
		return fmt.Errorf("cond: subgraph %d has %d inputs, the op passes %d", d.cond.Index(), len(d.cond.Inputs()), len(n.Inputs))
	}
	for i, t := range d.cond.Inputs() {
		if err := sameLayout(fmt.Sprintf("cond subgraph %d input %d", d.cond.Index(), i), t, n.Inputs[i]); err != nil {
			return err
		}
	}
	if err := checkCall(d.body, n.Inputs, n.Outputs); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	n.Data = d
	return nil
}

func evalWhile(n *tflite.Node) error {
	d := n.Data.(*whileData)
	for i, t := range n.Inputs {
		copyTensor(n.Outputs[i], t)
	}
	for it := 0; ; it++ {
		if it == MaxWhileIterations {
			return fmt.Errorf("loop did not finish within %d iterations", MaxWhileIterations)
		}
		for i, t := range d.cond.Inputs() {
			copyTensor(t, n.Outputs[i])
		}
		if err := d.cond.Invoke(); err != nil {
			return err
		}
		if d.cond.Outputs()[0].Bool()[0] == 0 {
			return nil
		}
		for i, t := range d.body.Inputs() {
			copyTensor(t, n.Outputs[i])
		}
		if err := d.body.Invoke(); err != nil {
			return err
		}
		for i, t := range d.body.Outputs() {
			copyTensor(n.Outputs[i], t)
		}
	}
}

type callOnceData struct {
	init *tflite.Graph
	res  *tflite.Resources
	ran  uint64 // Resources.Generation when init last ran; 0 = never
}

// prepareCallOnce: the init subgraph takes and returns nothing; it runs on the first Invoke and
// again after ResetVariables (it typically assigns the resource variables' initial values).
func prepareCallOnce(n *tflite.Node) error {
	opts, _ := n.Options.(*tflite.CallOnceOptions)
	if opts == nil {
		return fmt.Errorf("missing CallOnceOptions")
	}
	if len(n.Inputs) != 0 || len(n.Outputs) != 0 {
		return fmt.Errorf("%d inputs and %d outputs, want none", len(n.Inputs), len(n.Outputs))
	}
	g, err := n.Subgraph(opts.Init)
	if err != nil {
		return err
	}
	if len(g.Inputs()) != 0 || len(g.Outputs()) != 0 {
		return fmt.Errorf("init subgraph %d has %d inputs and %d outputs, want none", g.Index(), len(g.Inputs()), len(g.Outputs()))
	}
	n.Data = &callOnceData{init: g, res: n.Resources()}
	return nil
}

func evalCallOnce(n *tflite.Node) error {
	d := n.Data.(*callOnceData)
	gen := d.res.Generation()
	if d.ran == gen {
		return nil
	}
	if err := d.init.Invoke(); err != nil {
		return err
	}
	d.ran = gen
	return nil
}

type varHandleData struct{ id int }

func prepareVarHandle(n *tflite.Node) error {
	if len(n.Inputs) != 0 || len(n.Outputs) != 1 {
		return fmt.Errorf("%d inputs and %d outputs, want 0 and 1", len(n.Inputs), len(n.Outputs))
	}
	opts, _ := n.Options.(*tflite.VarHandleOptions)
	if opts == nil {
		opts = &tflite.VarHandleOptions{} // no options: the unnamed variable, as in TFLite
	}
	id := n.Resources().ID(opts.Container, opts.SharedName)
	if err := tflite.SetResourceID(n.Output(0), id); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	n.Data = &varHandleData{id: id}
	return nil
}

func evalVarHandle(n *tflite.Node) error {
	return tflite.SetResourceID(n.Output(0), n.Data.(*varHandleData).id)
}

func checkHandle(t *tensor.Tensor) error {
	if t.DType() != tensor.Resource && (t.DType() != tensor.Int32 || t.NumElements() != 1) {
		return fmt.Errorf("resource input %s is not a resource handle", t)
	}
	return nil
}

func handleID(t *tensor.Tensor) int {
	if t.DType() == tensor.Int32 {
		if v := t.Int32(); len(v) == 1 {
			return int(v[0])
		}
		return -1
	}
	return tflite.ResourceID(t)
}

// prepareAssignVariable sizes the variable from the value when the handle's id is already
// known (its VAR_HANDLE ran Prepare earlier); TFLM does the same.
func prepareAssignVariable(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 0); err != nil {
		return err
	}
	if err := checkHandle(n.Input(0)); err != nil {
		return err
	}
	if n.Input(1).ByteSize() < 0 {
		return fmt.Errorf("value %s has no fixed size", n.Input(1))
	}
	if id := handleID(n.Input(0)); id >= 0 && n.Input(0).DType() == tensor.Resource {
		return n.Resources().Allocate(id, n.Input(1))
	}
	return nil
}

func evalAssignVariable(n *tflite.Node) error {
	return n.Resources().Assign(handleID(n.Input(0)), n.Input(1))
}

func prepareReadVariable(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	if err := checkHandle(n.Input(0)); err != nil {
		return err
	}
	if n.Output(0).ByteSize() < 0 {
		return fmt.Errorf("output %s has no fixed size", n.Output(0))
	}
	if id := handleID(n.Input(0)); id >= 0 && n.Input(0).DType() == tensor.Resource {
		return n.Resources().Allocate(id, n.Output(0))
	}
	return nil
}

func evalReadVariable(n *tflite.Node) error {
	return n.Resources().Read(handleID(n.Input(0)), n.Output(0))
}
