package tflite

import (
	"fmt"
	"strings"

	"github.com/outpost-ml/outpost/models/tensor"
)

// Options configures an Interpreter.
type Options struct {
	// MaxBytes bounds the model's constants plus the arena, in bytes; 0 means DefaultMaxBytes.
	MaxBytes int
}

// Interpreter runs the main subgraph of a Model. All memory is planned and allocated by
// NewInterpreter; Invoke allocates nothing. An Interpreter is not safe for concurrent use.
type Interpreter struct {
	model   *Model
	tensors []*tensor.Tensor
	nodes   []Node
	kernels []Kernel
	inputs  []*tensor.Tensor
	outputs []*tensor.Tensor
	vars    []*tensor.Tensor
	arena   []byte
}

// NewInterpreter resolves every op of the main subgraph, runs Init and Prepare on each node and
// plans one arena for all non-constant tensors and scratch buffers. An op missing from r is an
// error naming it, its version and the model's full op list.
func NewInterpreter(m *Model, r OpResolver, opts Options) (ip *Interpreter, err error) {
	if m == nil || len(m.Subgraphs) == 0 {
		return nil, fmt.Errorf("new interpreter: no model")
	}
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	defer func() {
		if p := recover(); p != nil {
			ip, err = nil, fmt.Errorf("new interpreter: internal error (kernel panic in prepare): %v", p)
		}
	}()
	sg := &m.Subgraphs[0]
	ip = &Interpreter{model: m, tensors: make([]*tensor.Tensor, len(sg.Tensors))}
	for i := range sg.Tensors {
		ti := &sg.Tensors[i]
		t := tensor.New(ti.Name, ti.DType, ti.Shape, ti.Quant)
		t.SetVariable(ti.Variable)
		if ti.Constant() {
			t.SetConstant(true)
			t.SetData(ti.data)
		}
		ip.tensors[i] = t
	}
	if err := ip.resolve(r); err != nil {
		return nil, fmt.Errorf("new interpreter: %w", err)
	}
	for i := range ip.nodes {
		n := &ip.nodes[i]
		if n.Data, err = ip.kernels[i].Init(n); err != nil {
			return nil, fmt.Errorf("new interpreter: init op %d (%s): %w", i, n.Op, err)
		}
		if err := ip.kernels[i].Prepare(n); err != nil {
			return nil, fmt.Errorf("new interpreter: prepare op %d (%s): %w", i, n.Op, err)
		}
	}
	if err := ip.plan(maxBytes); err != nil {
		return nil, fmt.Errorf("new interpreter: %w", err)
	}
	for _, i := range sg.Inputs {
		ip.inputs = append(ip.inputs, ip.tensors[i])
	}
	for _, i := range sg.Outputs {
		ip.outputs = append(ip.outputs, ip.tensors[i])
	}
	ip.ResetVariables()
	return ip, nil
}

func (ip *Interpreter) resolve(r OpResolver) error {
	ops := ip.model.Operators()
	ip.nodes = make([]Node, len(ops))
	ip.kernels = make([]Kernel, len(ops))
	var missing []string
	seen := map[OpInfo]bool{}
	for i := range ops {
		op := &ops[i]
		var k Kernel
		ok := false
		if r != nil {
			k, ok = r.Lookup(op.Op.Builtin, op.Op.Version, op.Op.Custom)
		}
		if !ok || k == nil {
			if !seen[op.Op] {
				seen[op.Op] = true
				missing = append(missing, fmt.Sprintf("%s (op %d)", op.Op, i))
			}
			continue
		}
		ip.kernels[i] = k
		n := &ip.nodes[i]
		n.Index, n.Op, n.Options, n.CustomOptions = i, op.Op, op.Options, op.CustomOptions
		n.Inputs = ip.pick(op.Inputs)
		n.Outputs = ip.pick(op.Outputs)
		n.Intermediates = ip.pick(op.Intermediates)
	}
	if len(missing) > 0 {
		return fmt.Errorf("unsupported op %s; model ops: %s", strings.Join(missing, ", "), ip.model.OpNames())
	}
	return nil
}

func (ip *Interpreter) pick(idx []int) []*tensor.Tensor {
	out := make([]*tensor.Tensor, len(idx))
	for i, t := range idx {
		if t >= 0 {
			out[i] = ip.tensors[t]
		}
	}
	return out
}

// plan computes each non-constant tensor's lifetime once and places all of them, plus the
// nodes' scratch buffers, in one arena with the greedy planner. Variable tensors live for the
// whole run (their state persists across Invoke).
func (ip *Interpreter) plan(maxBytes int) error {
	sg := &ip.model.Subgraphs[0]
	nops := len(ip.nodes)
	last := max(nops-1, 0)
	first := make([]int, len(ip.tensors))
	lastUse := make([]int, len(ip.tensors))
	for i := range first {
		first[i], lastUse[i] = -1, -1
	}
	use := func(t, at int) {
		if first[t] < 0 || at < first[t] {
			first[t] = at
		}
		lastUse[t] = max(lastUse[t], at)
	}
	for _, t := range sg.Inputs {
		use(t, 0)
	}
	for i, op := range sg.Operators {
		for _, t := range op.Inputs {
			if t >= 0 {
				use(t, i)
			}
		}
		for _, t := range op.Outputs {
			use(t, i)
		}
		for _, t := range op.Intermediates {
			use(t, i)
		}
	}
	for _, t := range sg.Outputs {
		use(t, last)
	}
	written := make([]bool, len(ip.tensors))
	for _, t := range sg.Inputs {
		written[t] = true
	}
	for _, op := range sg.Operators {
		for _, t := range op.Outputs {
			written[t] = true
		}
	}
	var bufs []buffer
	var owners []*tensor.Tensor
	var scratchOwners [][2]int
	budget := maxBytes - ip.model.constBytes
	sum := 0
	add := func(size, f, l int) error {
		sum += alignUp(size)
		if size < 0 || sum > budget {
			return fmt.Errorf("memory cap of %d bytes exceeded (constants %d bytes, arena over %d)", maxBytes, ip.model.constBytes, sum)
		}
		bufs = append(bufs, buffer{size: size, first: f, last: l})
		return nil
	}
	for i, t := range ip.tensors {
		if t.Constant() || first[i] < 0 && !t.Variable() {
			continue
		}
		size := t.ByteSize()
		if size < 0 {
			return fmt.Errorf("tensor %d %q: %s%v has no fixed size (type not supported)", i, t.Name(), t.DType(), t.Shape())
		}
		f, l := first[i], lastUse[i]
		if t.Variable() || !written[i] {
			// State and never-written tensors keep their own memory for the whole run, so
			// they hold their value (zero, for the latter) across ops and Invokes.
			f, l = 0, last
		}
		if err := add(size, f, l); err != nil {
			return fmt.Errorf("tensor %d %q: %w", i, t.Name(), err)
		}
		owners = append(owners, t)
	}
	for ni := range ip.nodes {
		n := &ip.nodes[ni]
		n.scratch = make([][]byte, len(n.scratchSizes))
		for h, size := range n.scratchSizes {
			if err := add(size, ni, ni); err != nil {
				return fmt.Errorf("scratch of op %d (%s): %w", ni, n.Op, err)
			}
			scratchOwners = append(scratchOwners, [2]int{ni, h})
		}
	}
	size := planGreedy(bufs)
	ip.arena = alignedBytes(size)
	for i, t := range owners {
		b := bufs[i]
		t.SetData(ip.arena[b.offset : b.offset+b.size : b.offset+b.size])
		if t.Variable() {
			ip.vars = append(ip.vars, t)
		}
	}
	for i, so := range scratchOwners {
		b := bufs[len(owners)+i]
		ip.nodes[so[0]].scratch[so[1]] = ip.arena[b.offset : b.offset+b.size : b.offset+b.size]
	}
	return nil
}

// Invoke runs every node once in order. It allocates nothing on success.
func (ip *Interpreter) Invoke() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("invoke: internal error (kernel panic): %v", p)
		}
	}()
	for i := range ip.nodes {
		if err := ip.kernels[i].Eval(&ip.nodes[i]); err != nil {
			return fmt.Errorf("invoke op %d (%s): %w", i, ip.nodes[i].Op, err)
		}
	}
	return nil
}

// ResetVariables sets every variable tensor (e.g. LSTM state) back to zero: the zero point
// for quantized tensors, as TFLite Micro's ResetVariableTensors does.
func (ip *Interpreter) ResetVariables() {
	for _, t := range ip.vars {
		b := t.Bytes()
		clear(b)
		if q := t.Quant(); q != nil && len(q.ZeroPoint) > 0 && q.ZeroPoint[0] != 0 {
			switch t.DType() {
			case tensor.Int8:
				for i := range b {
					b[i] = byte(int8(q.ZeroPoint[0]))
				}
			case tensor.Int16:
				v := t.Int16()
				for i := range v {
					v[i] = int16(q.ZeroPoint[0])
				}
			}
		}
	}
}

// Model returns the model being run.
func (ip *Interpreter) Model() *Model { return ip.model }

// NumInputs and NumOutputs count the main subgraph's inputs and outputs.
func (ip *Interpreter) NumInputs() int  { return len(ip.inputs) }
func (ip *Interpreter) NumOutputs() int { return len(ip.outputs) }

// Input returns input i (write its data before Invoke), or nil if out of range.
func (ip *Interpreter) Input(i int) *tensor.Tensor {
	if i < 0 || i >= len(ip.inputs) {
		return nil
	}
	return ip.inputs[i]
}

// Output returns output i (valid until the next Invoke), or nil if out of range.
func (ip *Interpreter) Output(i int) *tensor.Tensor {
	if i < 0 || i >= len(ip.outputs) {
		return nil
	}
	return ip.outputs[i]
}

// ArenaBytes is the size of the planned arena in bytes (tensors and scratch; constants are
// counted by Model.ConstBytes).
func (ip *Interpreter) ArenaBytes() int { return len(ip.arena) }

// Tensor returns tensor i of the main subgraph, or nil if out of range. Activations share arena
// memory, so an intermediate tensor's contents are only meaningful while its op's consumers run;
// constants are shared by all interpreters of the model and must not be written.
func (ip *Interpreter) Tensor(i int) *tensor.Tensor {
	if i < 0 || i >= len(ip.tensors) {
		return nil
	}
	return ip.tensors[i]
}
