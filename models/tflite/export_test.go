package tflite

// NodeForTest is node i of the main subgraph, for tests of what the planner gave it.
func (ip *Interpreter) NodeForTest(i int) *Node { return &ip.graphs[0].nodes[i] }

// WorkerScratchCount is the number of worker scratch buffers node n asked for.
func (n *Node) WorkerScratchCount() int { return len(n.workerSizes) }
