package kernels

import "github.com/outpost-ml/outpost/models/tflite"

// dwJob is one batch of an int8 DEPTHWISE_CONV_2D on the fast kernels, split by output row:
// part oy is row oy, computed as with one thread, on worker w's accumulator row (and, on the
// SIMD path, worker w's widened weights and quantTable, which it makes at its first row of
// the Invoke).
type dwJob struct {
	g    *convGeom
	n    *tflite.Node
	xb   []int8 // the batch's input (or its channel-expanded copy)
	c, m int
	bt   int
	y    []int8
}

func (j *dwJob) RunPart(w, oy int) {
	g, d := j.g, j.g.dw
	var q, w32 []int32
	if d.simd {
		q = int32s(j.n.WorkerScratch(d.qHandle, w), g.outC/8*quantGroup)
		w32 = int32s(j.n.WorkerScratch(d.wHandle, w), len(d.w8))
		if d.filled.first(w) {
			fillQuantTable(q, d.rq, g.outOff, g.qMin, g.qMax)
			dwPackWeights(w32, d.w8, len(d.w8)/9)
		}
	}
	g.dwRowInt8(j.xb, j.c, j.m, j.bt, oy, nil, nil, nil, w32, q, j.y, int32s(j.n.WorkerScratch(g.accScratch, w), g.outC))
}

// workerFlags marks, for each worker, whether it has done something once per Invoke yet (made
// its copy of a table): reset by the caller before the job, then each worker reads and sets
// only its own flag, on a cache line of its own.
type workerFlags []struct {
	done bool
	_    [127]byte
}

func newWorkerFlags(workers int) workerFlags { return make(workerFlags, workers) }

// reset clears every flag; call it before the job starts.
func (f workerFlags) reset() {
	for i := range f {
		f[i].done = false
	}
}

// first reports whether this is worker w's first call since reset, and marks it.
func (f workerFlags) first(w int) bool {
	if f[w].done {
		return false
	}
	f[w].done = true
	return true
}
