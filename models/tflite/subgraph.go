package tflite

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/models/tensor"
)

// MaxSubgraphDepth bounds how deeply control-flow ops (IF, WHILE, CALL_ONCE) may nest subgraph
// calls. Recursive calls are rejected outright: unbounded recursion through IF/WHILE is one of
// the bug classes of the TFLite CVEs.
const MaxSubgraphDepth = 16

// Graph is one subgraph of a running Interpreter. Control-flow kernels get it from
// Node.Subgraph: in Prepare to check its inputs and outputs against their own, in Eval to copy
// data into its inputs, Invoke it and copy its outputs out. Its tensors have memory of their own
// (the inputs and outputs hold their data between calls), planned with the rest of the arena.
type Graph struct {
	ip      *Interpreter
	index   int
	sg      *Subgraph
	tensors []*tensor.Tensor
	nodes   []Node
	kernels []Kernel
	inputs  []*tensor.Tensor
	outputs []*tensor.Tensor
	running bool // guards against re-entry: a subgraph's memory serves one activation only
}

// Index is the subgraph's index in the model.
func (g *Graph) Index() int { return g.index }

// Inputs and Outputs are the subgraph's input and output tensors in order; the slices must not
// be modified.
func (g *Graph) Inputs() []*tensor.Tensor  { return g.inputs }
func (g *Graph) Outputs() []*tensor.Tensor { return g.outputs }

// Invoke runs every node of the subgraph once in order. It allocates nothing on success and
// fails if the subgraph is already running (a recursive call).
func (g *Graph) Invoke() error { return g.invoke(nil) }

// invoke is Invoke, adding each node's wall-clock time to times[i] unless times is nil.
func (g *Graph) invoke(times []time.Duration) error {
	if g.running {
		return fmt.Errorf("subgraph %d is already running (recursive call)", g.index)
	}
	g.running = true
	defer func() { g.running = false }()
	for i := range g.nodes {
		var start time.Time
		if times != nil {
			start = time.Now()
		}
		if err := g.kernels[i].Eval(&g.nodes[i]); err != nil {
			return fmt.Errorf("%sinvoke op %d (%s): %w", g.label(), i, g.nodes[i].Op, err)
		}
		if times != nil {
			times[i] += time.Since(start)
		}
	}
	return nil
}

// calls lists the subgraphs an operator runs (IF, WHILE, CALL_ONCE), taken from its options.
func calls(op *Operator) []int {
	switch o := op.Options.(type) {
	case *IfOptions:
		return []int{o.Then, o.Else}
	case *WhileOptions:
		return []int{o.Cond, o.Body}
	case *CallOnceOptions:
		return []int{o.Init}
	}
	return nil
}

// callOrder returns every subgraph index with callees before their callers, so each subgraph is
// prepared before the control-flow ops that check it. It rejects recursion (a cycle of calls)
// and call chains deeper than MaxSubgraphDepth.
func callOrder(m *Model) ([]int, error) {
	const (
		unseen = iota
		active
		done
	)
	state := make([]int, len(m.Subgraphs))
	var order []int
	var stack []string
	var visit func(si, depth int) error
	visit = func(si, depth int) error {
		if depth > MaxSubgraphDepth {
			return fmt.Errorf("subgraph calls nest deeper than %d: %s", MaxSubgraphDepth, strings.Join(stack, " -> "))
		}
		switch state[si] {
		case active:
			return fmt.Errorf("recursive subgraph call: %s", strings.Join(stack, " -> "))
		case done:
			return nil
		}
		state[si] = active
		for i := range m.Subgraphs[si].Operators {
			op := &m.Subgraphs[si].Operators[i]
			for _, callee := range calls(op) {
				if callee < 0 || callee >= len(m.Subgraphs) {
					return fmt.Errorf("subgraph %d op %d (%s): subgraph index %d out of range [0,%d)", si, i, op.Op, callee, len(m.Subgraphs))
				}
				stack = append(stack, fmt.Sprintf("subgraph %d op %d (%s) calls subgraph %d", si, i, op.Op.Name(), callee))
				if err := visit(callee, depth+1); err != nil {
					return err
				}
				stack = stack[:len(stack)-1]
			}
		}
		state[si] = done
		order = append(order, si)
		return nil
	}
	for si := range m.Subgraphs {
		if err := visit(si, 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// allOpNames lists the distinct ops of every subgraph, e.g. "WHILE v1, ADD v1, LESS v1".
func (m *Model) allOpNames() string {
	seen := map[OpInfo]bool{}
	var names []string
	for si := range m.Subgraphs {
		for _, o := range m.Subgraphs[si].Operators {
			if !seen[o.Op] {
				seen[o.Op] = true
				names = append(names, o.Op.String())
			}
		}
	}
	return strings.Join(names, ", ")
}

// resourceHandleBytes is the size of a resource tensor: one int32 resource id, as in TFLite.
const resourceHandleBytes = 4

// ResourceID returns the resource id held by a resource-handle tensor (the output of
// VAR_HANDLE), or -1 if none is known yet.
func ResourceID(t *tensor.Tensor) int {
	b := t.Bytes()
	if len(b) < resourceHandleBytes {
		return -1
	}
	return int(int32(binary.LittleEndian.Uint32(b)))
}

func putResourceID(t *tensor.Tensor, id int) {
	binary.LittleEndian.PutUint32(t.Bytes(), uint32(int32(id)))
}

// SetResourceID stores id in a resource-handle tensor (VAR_HANDLE does this in Prepare). It
// fails when t is not a resource tensor with handle memory.
func SetResourceID(t *tensor.Tensor, id int) error {
	if t.DType() != tensor.Resource || len(t.Bytes()) < resourceHandleBytes {
		return fmt.Errorf("tensor %q is %s, not a resource handle", t.Name(), t.DType())
	}
	putResourceID(t, id)
	return nil
}

// Resources holds the resource variables of one Interpreter (VAR_HANDLE, ASSIGN_VARIABLE,
// READ_VARIABLE), shared by all its subgraphs, like TFLite Micro's MicroResourceVariables. A
// variable's storage is allocated while preparing (its size comes from the first ASSIGN_VARIABLE
// that can see its id), so Eval only copies. Variables start zeroed and are cleared by
// Interpreter.ResetVariables.
type Resources struct {
	ids        map[[2]string]int
	vars       []resourceVar
	generation uint64
}

type resourceVar struct {
	name  string
	dtype tensor.DType
	shape []int
	data  []byte // nil until allocated
}

func newResources() *Resources { return &Resources{ids: map[[2]string]int{}} }

// ID returns the id of the variable named (container, sharedName), creating it on first use.
func (r *Resources) ID(container, sharedName string) int {
	k := [2]string{container, sharedName}
	if id, ok := r.ids[k]; ok {
		return id
	}
	id := len(r.vars)
	r.ids[k] = id
	name := sharedName
	if container != "" {
		name = container + "/" + sharedName
	}
	r.vars = append(r.vars, resourceVar{name: name})
	return id
}

func (r *Resources) get(id int) (*resourceVar, error) {
	if id < 0 || id >= len(r.vars) {
		return nil, fmt.Errorf("resource id %d out of range [0,%d)", id, len(r.vars))
	}
	return &r.vars[id], nil
}

// Allocate gives variable id storage for values like t (dtype and shape), or checks that t
// matches the storage it already has.
func (r *Resources) Allocate(id int, t *tensor.Tensor) error {
	v, err := r.get(id)
	if err != nil {
		return err
	}
	size := t.ByteSize()
	if size < 0 {
		return fmt.Errorf("resource variable %q: value %s has no fixed size", v.name, t)
	}
	if v.data != nil {
		if v.dtype != t.DType() || len(v.data) != size {
			return fmt.Errorf("resource variable %q holds %s%v, value %s does not match", v.name, v.dtype, v.shape, t)
		}
		return nil
	}
	v.dtype, v.shape, v.data = t.DType(), append([]int(nil), t.Shape()...), alignedBytes(size)
	return nil
}

// Assign copies src into variable id; its dtype and size must match the variable's storage.
func (r *Resources) Assign(id int, src *tensor.Tensor) error {
	v, err := r.get(id)
	if err != nil {
		return err
	}
	if v.data == nil {
		return fmt.Errorf("resource variable %q has no storage (no ASSIGN_VARIABLE could size it while preparing)", v.name)
	}
	if v.dtype != src.DType() || len(v.data) != len(src.Bytes()) {
		return fmt.Errorf("resource variable %q holds %s%v, cannot assign %s", v.name, v.dtype, v.shape, src)
	}
	copy(v.data, src.Bytes())
	return nil
}

// Read copies variable id into dst; dst's dtype and size must match.
func (r *Resources) Read(id int, dst *tensor.Tensor) error {
	v, err := r.get(id)
	if err != nil {
		return err
	}
	if v.data == nil {
		return fmt.Errorf("resource variable %q was never assigned", v.name)
	}
	if v.dtype != dst.DType() || len(v.data) != len(dst.Bytes()) {
		return fmt.Errorf("resource variable %q holds %s%v, cannot read into %s", v.name, v.dtype, v.shape, dst)
	}
	copy(dst.Bytes(), v.data)
	return nil
}

// Generation changes whenever the variables are reset; CALL_ONCE runs its initialisation
// subgraph again when it sees a new generation.
func (r *Resources) Generation() uint64 { return r.generation }

func (r *Resources) reset() {
	for i := range r.vars {
		clear(r.vars[i].data)
	}
	r.generation++
}
