package tflite

import "fmt"

// WithOutputs returns a copy of m whose main subgraph has the given tensors as its outputs, in
// that order, so their values can be read after Invoke (the oracle's --outputs: every extra
// output keeps its own arena memory until the end of the graph instead of being overwritten).
// The copy shares the constants and every other subgraph with m. Indices must be in range; a
// tensor that nothing writes reads as zeros, as a graph input would before it is set.
func (m *Model) WithOutputs(outputs []int) (*Model, error) {
	if m == nil || len(m.Subgraphs) == 0 {
		return nil, fmt.Errorf("with outputs: no model")
	}
	n := len(m.Subgraphs[0].Tensors)
	list := make([]int, len(outputs))
	for i, t := range outputs {
		if t < 0 || t >= n {
			return nil, fmt.Errorf("with outputs: tensor index %d out of range [0,%d)", t, n)
		}
		list[i] = t
	}
	c := *m
	c.Subgraphs = append([]Subgraph(nil), m.Subgraphs...)
	c.Subgraphs[0].Outputs = list
	return &c, nil
}
