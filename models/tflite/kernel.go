package tflite

import (
	"fmt"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Kernel implements one operator, in the shape of TFLite Micro's TFLMRegistration: Init once per
// node when the interpreter is built, Prepare once per node to check types and shapes, compute
// constants and request scratch memory, and Eval on every Invoke. A Kernel value is shared by
// all nodes that use it; per-node state goes in Node.Data. Eval must not allocate.
type Kernel interface {
	// Init returns the node's private state, stored in Node.Data (nil if none).
	Init(n *Node) (any, error)
	// Prepare validates the node and may set output shapes; tensors that are not constant have
	// no memory yet.
	Prepare(n *Node) error
	// Eval computes the outputs from the inputs.
	Eval(n *Node) error
}

// KernelFuncs adapts plain functions to Kernel; a nil InitFn or PrepareFn does nothing.
type KernelFuncs struct {
	InitFn    func(n *Node) (any, error)
	PrepareFn func(n *Node) error
	EvalFn    func(n *Node) error
}

func (k KernelFuncs) Init(n *Node) (any, error) {
	if k.InitFn == nil {
		return nil, nil
	}
	return k.InitFn(n)
}

func (k KernelFuncs) Prepare(n *Node) error {
	if k.PrepareFn == nil {
		return nil
	}
	return k.PrepareFn(n)
}

func (k KernelFuncs) Eval(n *Node) error { return k.EvalFn(n) }

// OpResolver finds the kernel of an operator code. The interpreter never imports kernels;
// callers hand it a resolver (kernels.Builtins(), or a smaller one for a lean binary).
type OpResolver interface {
	Lookup(op schema.BuiltinOperator, version int, custom string) (Kernel, bool)
}

// Node is the per-node context a kernel sees: its tensors, parsed options and private state.
type Node struct {
	Index         int
	Op            OpInfo
	Inputs        []*tensor.Tensor // nil entries for omitted optional inputs (-1 in the file)
	Outputs       []*tensor.Tensor
	Intermediates []*tensor.Tensor
	Options       any    // typed builtin options, e.g. *FullyConnectedOptions; may be nil
	CustomOptions []byte // raw custom options of custom ops
	Data          any    // per-node state: what Init returned, or what Prepare stored

	scratchSizes []int    // requested in Prepare
	packed       []int    // inputs the kernel copied in Prepare and never reads again (Packed)
	scratch      [][]byte // assigned by the planner

	workerSizes   []int      // RequestWorkerScratch's, per worker
	workerScratch [][][]byte // [worker][handle], assigned by the planner
	graph         *Graph     // the subgraph the node belongs to
}

// Subgraph returns subgraph i of the model for control-flow kernels (IF, WHILE, CALL_ONCE) to
// check in Prepare and run in Eval. Callees are prepared before their callers.
func (n *Node) Subgraph(i int) (*Graph, error) {
	if n.graph == nil {
		return nil, fmt.Errorf("node is not part of an interpreter")
	}
	gs := n.graph.ip.graphs
	if i < 0 || i >= len(gs) {
		return nil, fmt.Errorf("subgraph index %d out of range [0,%d)", i, len(gs))
	}
	return gs[i], nil
}

// Resources returns the interpreter's resource variables, shared by all subgraphs.
func (n *Node) Resources() *Resources {
	if n.graph == nil {
		return nil
	}
	return n.graph.ip.res
}

// Input returns input i, or nil when it is omitted or i is out of range.
func (n *Node) Input(i int) *tensor.Tensor {
	if i < 0 || i >= len(n.Inputs) {
		return nil
	}
	return n.Inputs[i]
}

// Output returns output i, or nil when i is out of range.
func (n *Node) Output(i int) *tensor.Tensor {
	if i < 0 || i >= len(n.Outputs) {
		return nil
	}
	return n.Outputs[i]
}

// RequestScratch reserves bytes of arena memory that live only while this node runs (TFLite
// Micro's RequestScratchBufferInArena). Call it in Prepare; it returns a handle for Scratch.
func (n *Node) RequestScratch(bytes int) (int, error) {
	if bytes < 0 {
		return 0, fmt.Errorf("scratch of %d bytes", bytes)
	}
	n.scratchSizes = append(n.scratchSizes, bytes)
	return len(n.scratchSizes) - 1, nil
}

// Scratch returns the scratch buffer of handle h during Eval (16-byte aligned).
func (n *Node) Scratch(h int) []byte { return n.scratch[h] }

// RequestWorkerScratch reserves bytes of arena memory for each of the node's workers
// (Workers), live only while this node runs, for what a worker writes and reads alone: its
// rows of im2col taps, its copy of a table the kernel rebuilds at each Invoke. Call it in
// Prepare; it returns a handle for WorkerScratch.
//
// Worker w's buffers of every node lie in one area of the arena that only worker w uses, so
// they stay in its core's cache from one layer to the next. Cut from ordinary scratch, each
// layer's per-worker slices fell on lines the other core had written last (the slices of
// another layer, its tensors), and every such line had to come from the other core's cache:
// on a host whose two cores do not share a cache, a tenth of a 2-thread Invoke (docs/
// performance.md, "Threads, round 4").
func (n *Node) RequestWorkerScratch(bytes int) (int, error) {
	if bytes < 0 {
		return 0, fmt.Errorf("worker scratch of %d bytes", bytes)
	}
	n.workerSizes = append(n.workerSizes, bytes)
	return len(n.workerSizes) - 1, nil
}

// WorkerScratch returns worker w's buffer of handle h during Eval: 16-byte aligned, like
// Scratch; with several workers each buffer starts a multiple of 128 bytes into the arena, so
// no two workers' buffers share a cache line.
func (n *Node) WorkerScratch(h, w int) []byte { return n.workerScratch[w][h] }

// CheckIO checks the node's input and output counts: minIn..maxIn inputs and exactly outs outputs.
func (n *Node) CheckIO(minIn, maxIn, outs int) error {
	if len(n.Inputs) < minIn || len(n.Inputs) > maxIn {
		if minIn == maxIn {
			return fmt.Errorf("%d inputs, want %d", len(n.Inputs), minIn)
		}
		return fmt.Errorf("%d inputs, want %d to %d", len(n.Inputs), minIn, maxIn)
	}
	if len(n.Outputs) != outs {
		return fmt.Errorf("%d outputs, want %d", len(n.Outputs), outs)
	}
	for i := 0; i < minIn; i++ {
		if n.Inputs[i] == nil {
			return fmt.Errorf("required input %d is omitted", i)
		}
	}
	return nil
}

// Packed tells the interpreter, in Prepare, that the kernel has copied constant input i into
// a form of its own and will not read the input's bytes again. With Options.DropPacked the
// interpreter then gives up the model's copy of a constant that every node reading it has
// packed, so the weights are held once.
func (n *Node) Packed(i int) {
	if i >= 0 && i < len(n.Inputs) && n.Inputs[i] != nil && n.Inputs[i].Constant() {
		n.packed = append(n.packed, i)
	}
}
