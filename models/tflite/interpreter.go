package tflite

import (
	"fmt"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/models/tensor"
)

// Options configures an Interpreter.
type Options struct {
	// MaxBytes bounds the model's constants plus the arena, in bytes; 0 means DefaultMaxBytes.
	MaxBytes int
	// Threads is the number of goroutines Invoke may use for the big convolution and matrix
	// loops (workers.go); 0 or 1 means the caller's goroutine only. Results do not depend on it.
	Threads int
	// DropPacked gives up, after Prepare, the model's bytes of each constant that every node
	// reading it has packed into a form of its own (Node.Packed; the int8 convolution and
	// fully connected weights, for instance), so that a device holds those weights once.
	// The Model can then build no other interpreter, those tensors' Data is nil and their
	// per-channel quantization parameters (Quant.Scale, ZeroPoint) are nil too. For a model
	// loaded to run one interpreter, as the agent does.
	DropPacked bool
}

// Interpreter runs the main subgraph of a Model; control-flow kernels (IF, WHILE, CALL_ONCE) run
// the other subgraphs through Node.Subgraph. All memory is planned and allocated by
// NewInterpreter; Invoke allocates nothing. An Interpreter is not safe for concurrent use.
type Interpreter struct {
	model   *Model
	graphs  []*Graph // one per subgraph; graphs[0] is the main graph
	tensors []*tensor.Tensor
	inputs  []*tensor.Tensor
	outputs []*tensor.Tensor
	vars    []*tensor.Tensor // variable tensors of every subgraph
	res     *Resources
	arena   []byte
	pool    *pool // helpers for Node.Parallel; nil with one thread
}

// NewInterpreter resolves every op of every subgraph, runs Init and Prepare on each node (callee
// subgraphs before their callers) and plans one arena for all non-constant tensors and scratch
// buffers. An op missing from r is an error naming it, its version and the model's full op list.
// Subgraph calls that recurse, or nest deeper than MaxSubgraphDepth, are rejected here.
func NewInterpreter(m *Model, r OpResolver, opts Options) (ip *Interpreter, err error) {
	if m == nil || len(m.Subgraphs) == 0 {
		return nil, fmt.Errorf("new interpreter: no model")
	}
	if m.dropped {
		return nil, fmt.Errorf("new interpreter: the model's packed constants were given up by an interpreter made with DropPacked; load the model again")
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
	order, err := callOrder(m)
	if err != nil {
		return nil, fmt.Errorf("new interpreter: %w", err)
	}
	ip = &Interpreter{model: m, graphs: make([]*Graph, len(m.Subgraphs)), res: newResources()}
	ip.startWorkers(opts.Threads)
	defer func(started *Interpreter) {
		if err != nil {
			started.Close()
		}
	}(ip)
	for si := range m.Subgraphs {
		ip.graphs[si] = ip.newGraph(si)
	}
	for si, g := range ip.graphs {
		if err := g.resolve(r); err != nil {
			if si == 0 {
				return nil, fmt.Errorf("new interpreter: %w", err)
			}
			return nil, fmt.Errorf("new interpreter: subgraph %d: %w", si, err)
		}
	}
	for _, si := range order {
		if err := ip.graphs[si].prepare(); err != nil {
			return nil, fmt.Errorf("new interpreter: %w", err)
		}
	}
	if err := ip.plan(maxBytes); err != nil {
		return nil, fmt.Errorf("new interpreter: %w", err)
	}
	if opts.DropPacked {
		ip.dropPacked()
	}
	main := ip.graphs[0]
	ip.tensors, ip.inputs, ip.outputs = main.tensors, main.inputs, main.outputs
	ip.ResetVariables()
	return ip, nil
}

func (ip *Interpreter) newGraph(si int) *Graph {
	sg := &ip.model.Subgraphs[si]
	g := &Graph{ip: ip, index: si, sg: sg, tensors: make([]*tensor.Tensor, len(sg.Tensors))}
	for i := range sg.Tensors {
		ti := &sg.Tensors[i]
		t := tensor.New(ti.Name, ti.DType, ti.Shape, ti.Quant)
		t.SetVariable(ti.Variable)
		switch {
		case ti.Constant():
			t.SetConstant(true)
			t.SetData(ti.data)
		case ti.DType == tensor.Resource:
			// A resource handle is one int32 id (TFLite's layout). It gets memory of its own
			// before Prepare, so VAR_HANDLE can store the id there and ASSIGN_VARIABLE can read
			// it while preparing; -1 means "not known until Eval".
			t.SetData(alignedBytes(resourceHandleBytes))
			putResourceID(t, -1)
		}
		g.tensors[i] = t
	}
	for _, i := range sg.Inputs {
		g.inputs = append(g.inputs, g.tensors[i])
	}
	for _, i := range sg.Outputs {
		g.outputs = append(g.outputs, g.tensors[i])
	}
	return g
}

func (g *Graph) resolve(r OpResolver) error {
	ops := g.sg.Operators
	g.nodes = make([]Node, len(ops))
	g.kernels = make([]Kernel, len(ops))
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
		g.kernels[i] = k
		n := &g.nodes[i]
		n.Index, n.Op, n.Options, n.CustomOptions = i, op.Op, op.Options, op.CustomOptions
		n.Inputs = g.pick(op.Inputs)
		n.Outputs = g.pick(op.Outputs)
		n.Intermediates = g.pick(op.Intermediates)
		n.graph = g
	}
	if len(missing) > 0 {
		return fmt.Errorf("unsupported op %s; model ops: %s", strings.Join(missing, ", "), g.ip.model.allOpNames())
	}
	return nil
}

func (g *Graph) pick(idx []int) []*tensor.Tensor {
	out := make([]*tensor.Tensor, len(idx))
	for i, t := range idx {
		if t >= 0 {
			out[i] = g.tensors[t]
		}
	}
	return out
}

func (g *Graph) prepare() error {
	for i := range g.nodes {
		n := &g.nodes[i]
		var err error
		if n.Data, err = g.kernels[i].Init(n); err != nil {
			return fmt.Errorf("%sinit op %d (%s): %w", g.label(), i, n.Op, err)
		}
		if err := g.kernels[i].Prepare(n); err != nil {
			return fmt.Errorf("%sprepare op %d (%s): %w", g.label(), i, n.Op, err)
		}
	}
	return nil
}

// label prefixes errors of subgraphs other than the main one.
func (g *Graph) label() string {
	if g.index == 0 {
		return ""
	}
	return fmt.Sprintf("subgraph %d: ", g.index)
}

// plan places every subgraph's non-constant tensors and scratch buffers in one arena. Each
// subgraph is planned on its own with the greedy planner and gets its own region, because a
// control-flow op runs a callee while the caller's tensors are live.
func (ip *Interpreter) plan(maxBytes int) error {
	budget := maxBytes - ip.model.constBytes
	total := 0
	plans := make([]graphPlan, len(ip.graphs))
	for si, g := range ip.graphs {
		p, err := g.plan(budget - total)
		if err != nil {
			return fmt.Errorf("%s%w (memory cap %d bytes, constants %d bytes)", g.label(), err, maxBytes, ip.model.constBytes)
		}
		p.base = total
		plans[si] = p
		total += alignUp(p.size)
	}
	ip.arena = alignedBytes(total)
	for si, g := range ip.graphs {
		p := &plans[si]
		region := ip.arena[p.base : p.base+p.size : p.base+p.size]
		for i, t := range p.owners {
			b := p.bufs[i]
			t.SetData(region[b.offset : b.offset+b.size : b.offset+b.size])
			if t.Variable() {
				ip.vars = append(ip.vars, t)
			}
		}
		for i, so := range p.scratchOwners {
			b := p.bufs[len(p.owners)+i]
			g.nodes[so[0]].scratch[so[1]] = region[b.offset : b.offset+b.size : b.offset+b.size]
		}
		for i, so := range p.workerOwners {
			b := p.bufs[len(p.owners)+len(p.scratchOwners)+i]
			g.nodes[so[0]].workerScratch[0][so[1]] = region[b.offset : b.offset+b.size : b.offset+b.size]
		}
		for ni := range g.nodes {
			n := &g.nodes[ni]
			if p.workerStride == 0 {
				break // one worker: planned like scratch, above
			}
			for w := range n.workerScratch {
				off := p.workerBase + w*p.workerStride
				for h, size := range n.workerSizes {
					n.workerScratch[w][h] = region[off : off+size : off+size]
					off += alignLine(size)
				}
			}
		}
	}
	return nil
}

// cacheLine is the largest cache line of the CPUs the interpreter runs on (64 bytes on amd64
// and the arm64 cores of boards; 128 on some server arm64 parts): worker scratch areas are
// this far apart at least, so that two workers never write one line.
const cacheLine = 128

// alignLine rounds n up to a multiple of cacheLine.
func alignLine(n int) int { return (n + cacheLine - 1) &^ (cacheLine - 1) }

type graphPlan struct {
	bufs          []buffer
	owners        []*tensor.Tensor
	scratchOwners [][2]int
	size, base    int

	// With several workers their scratch areas (RequestWorkerScratch) follow the greedy
	// plan: area w starts at workerBase + w*workerStride. With one, worker scratch is
	// planned like scratch (workerOwners), so a 1-thread interpreter's arena does not grow.
	workerBase, workerStride int
	workerOwners             [][2]int
}

// plan computes each non-constant tensor's lifetime once and places the tensors, plus the nodes'
// scratch buffers, with the greedy planner. Variable tensors live for the whole run (their state
// persists across Invoke); so do graph inputs, which callers set once and may invoke on again (as
// TFLite preserves inputs), and a called subgraph's outputs, which its caller reads.
func (g *Graph) plan(budget int) (graphPlan, error) {
	sg := g.sg
	nops := len(g.nodes)
	last := max(nops-1, 0)
	first := make([]int, len(g.tensors))
	lastUse := make([]int, len(g.tensors))
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
	written := make([]bool, len(g.tensors))
	for _, t := range sg.Inputs {
		written[t] = true
	}
	for _, op := range sg.Operators {
		for _, t := range op.Outputs {
			written[t] = true
		}
	}
	var p graphPlan
	sum := 0
	add := func(size, f, l int) error {
		sum += alignUp(size)
		if size < 0 || sum > budget {
			return fmt.Errorf("memory cap exceeded (arena over %d bytes)", sum)
		}
		p.bufs = append(p.bufs, buffer{size: size, first: f, last: l})
		return nil
	}
	for i, t := range g.tensors {
		if t.Constant() || t.DType() == tensor.Resource || first[i] < 0 && !t.Variable() {
			continue
		}
		size := t.ByteSize()
		if size < 0 {
			return p, fmt.Errorf("tensor %d %q: %s%v has no fixed size (type not supported)", i, t.Name(), t.DType(), t.Shape())
		}
		f, l := first[i], lastUse[i]
		if t.Variable() || !written[i] {
			// State and never-written tensors keep their own memory for the whole run, so
			// they hold their value (zero, for the latter) across ops and Invokes.
			f, l = 0, last
		}
		if isIn(sg.Inputs, i) || g.index != 0 && isIn(sg.Outputs, i) {
			f, l = 0, last
		}
		if err := add(size, f, l); err != nil {
			return p, fmt.Errorf("tensor %d %q: %w", i, t.Name(), err)
		}
		p.owners = append(p.owners, t)
	}
	for ni := range g.nodes {
		n := &g.nodes[ni]
		n.scratch = make([][]byte, len(n.scratchSizes))
		for h, size := range n.scratchSizes {
			if err := add(size, ni, ni); err != nil {
				return p, fmt.Errorf("scratch of op %d (%s): %w", ni, n.Op, err)
			}
			p.scratchOwners = append(p.scratchOwners, [2]int{ni, h})
		}
	}
	workers := 1
	if g.ip != nil && g.ip.pool != nil {
		workers = len(g.ip.pool.start) + 1
	}
	per := 0 // the most any node asks of each worker
	for ni := range g.nodes {
		n := &g.nodes[ni]
		if len(n.workerSizes) == 0 {
			continue
		}
		n.workerScratch = make([][][]byte, workers)
		for w := range n.workerScratch {
			n.workerScratch[w] = make([][]byte, len(n.workerSizes))
		}
		need := 0
		for h, size := range n.workerSizes {
			need += alignLine(size)
			if workers == 1 {
				if err := add(size, ni, ni); err != nil {
					return p, fmt.Errorf("scratch of op %d (%s): %w", ni, n.Op, err)
				}
				p.workerOwners = append(p.workerOwners, [2]int{ni, h})
			}
		}
		per = max(per, need)
	}
	p.size = planGreedy(p.bufs)
	if workers > 1 && per > 0 {
		// The areas a cache line apart at least (alignLine's rounding, plus a line: the
		// arena is only Alignment-aligned).
		p.workerBase = alignLine(p.size) + cacheLine
		p.workerStride = per + cacheLine
		p.size = p.workerBase + workers*p.workerStride
		if sum+workers*p.workerStride > budget {
			return p, fmt.Errorf("memory cap exceeded (arena over %d bytes with the workers' scratch)", sum+workers*p.workerStride)
		}
	}
	return p, nil
}

func isIn(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Invoke runs every node of the main subgraph once in order. It allocates nothing on success.
func (ip *Interpreter) Invoke() error { return ip.invoke(nil) }

// InvokeTimed is Invoke that also adds each node's wall-clock time to times[i], for a per-op
// profile (`outpost model bench --per-op`); times must have NumNodes elements. A control-flow
// op's time includes the subgraphs it runs. Reading the clock twice a node costs tens of
// nanoseconds, so small nodes read a little high.
func (ip *Interpreter) InvokeTimed(times []time.Duration) error {
	if len(times) != ip.NumNodes() {
		return fmt.Errorf("invoke: %d node times for %d nodes", len(times), ip.NumNodes())
	}
	return ip.invoke(times)
}

func (ip *Interpreter) invoke(times []time.Duration) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("invoke: internal error (kernel panic): %v", p)
		}
	}()
	if ip.pool != nil {
		ip.pool.begin()
		defer ip.pool.end()
	}
	return ip.graphs[0].invoke(times)
}

// ResetVariables sets every variable tensor (e.g. LSTM state) back to zero: the zero point
// for quantized tensors, as TFLite Micro's ResetVariableTensors does. Resource variables are
// cleared too, and CALL_ONCE ops run their initialisation subgraph again on the next Invoke.
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
	ip.res.reset()
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

// ArenaBytes is the size of the planned arena in bytes (tensors and scratch of all subgraphs;
// constants are counted by Model.ConstBytes).
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

// dropPacked gives up the model's bytes of every constant buffer whose every reader, in every
// subgraph, declared it packed (Node.Packed), and which no subgraph has as an input or
// output. Tensors sharing a buffer are dropped together or not at all.
func (ip *Interpreter) dropPacked() {
	type use struct{ reads, packed int }
	uses := map[int]*use{} // by buffer
	keep := map[int]bool{} // buffers a subgraph input or output, or a variable, uses
	for si, g := range ip.graphs {
		sg := &ip.model.Subgraphs[si]
		for _, io := range [][]int{sg.Inputs, sg.Outputs} {
			for _, ti := range io {
				keep[sg.Tensors[ti].Buffer] = true
			}
		}
		for ti := range sg.Tensors {
			if t := &sg.Tensors[ti]; t.Variable {
				keep[t.Buffer] = true
			}
		}
		for ni := range g.nodes {
			n := &g.nodes[ni]
			op := &sg.Operators[ni]
			for k, ti := range op.Inputs {
				if ti < 0 || !sg.Tensors[ti].Constant() {
					continue
				}
				b := sg.Tensors[ti].Buffer
				if uses[b] == nil {
					uses[b] = &use{}
				}
				uses[b].reads++
				for _, p := range n.packed {
					if p == k {
						uses[b].packed++
						break
					}
				}
			}
		}
	}
	for si, g := range ip.graphs {
		sg := &ip.model.Subgraphs[si]
		for ti := range sg.Tensors {
			t := &sg.Tensors[ti]
			u := uses[t.Buffer]
			if t.data == nil || u == nil || u.packed < u.reads || keep[t.Buffer] {
				continue
			}
			t.data, t.dropped = nil, true
			g.tensors[ti].SetData(nil)
			if q := t.Quant; q != nil && len(q.Scale) > 1 {
				// The kernels folded the per-channel scales into their own multipliers; the
				// tensor and the graph's copy share this Quant, so both give them up.
				q.Scale, q.ZeroPoint = nil, nil
			}
			ip.model.dropped = true
		}
	}
}
