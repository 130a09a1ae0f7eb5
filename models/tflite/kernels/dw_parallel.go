package kernels

// dwJob is one batch of an int8 DEPTHWISE_CONV_2D on the fast kernels, split by output row:
// part oy is row oy, computed as with one thread, on worker w's accumulator row.
type dwJob struct {
	g    *convGeom
	xb   []int8 // the batch's input (or its channel-expanded copy)
	c, m int
	bt   int
	w32  []int32 // the SIMD path's weights, widened
	q    []int32 // the quantTable of the SIMD path
	y    []int8
	acc  []int32 // outC per worker
}

func (j *dwJob) RunPart(w, oy int) {
	oc := j.g.outC
	j.g.dwRowInt8(j.xb, j.c, j.m, j.bt, oy, nil, nil, nil, j.w32, j.q, j.y, j.acc[w*oc:(w+1)*oc])
}
