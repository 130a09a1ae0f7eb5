package tflite

import "fmt"

// NumNodes is the number of operators of the main subgraph.
func (ip *Interpreter) NumNodes() int { return len(ip.graphs[0].nodes) }

// InvokeNode runs only node i of the main subgraph. It exists for layer-by-layer debugging
// (`outpost model diff --isolate`): the caller runs the nodes in order and may overwrite a
// node's inputs with recorded values first, which is safe for tensors made outputs with
// WithOutputs (they keep their own memory for the whole run). Like Invoke it allocates nothing
// and turns a kernel panic into an error.
func (ip *Interpreter) InvokeNode(i int) (err error) {
	g := ip.graphs[0]
	if i < 0 || i >= len(g.nodes) {
		return fmt.Errorf("invoke node: %d out of range [0,%d)", i, len(g.nodes))
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("invoke op %d (%s): internal error (kernel panic): %v", i, g.nodes[i].Op, p)
		}
	}()
	if err := g.kernels[i].Eval(&g.nodes[i]); err != nil {
		return fmt.Errorf("invoke op %d (%s): %w", i, g.nodes[i].Op, err)
	}
	return nil
}
