package kernels

import (
	"fmt"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// GATHER, GATHER_ND and EMBEDDING_LOOKUP. Indices are data: every one is checked in Eval and
// an index out of range fails Invoke with an error naming it (the out-of-bounds read class of
// CVE-2020-15210/15214 and CVE-2021-37686), never a read outside the tensor.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpGather, 1, 7, tflite.KernelFuncs{PrepareFn: prepareGather, EvalFn: evalGatherOp})
		r.AddBuiltin(schema.OpGatherNd, 1, 5, tflite.KernelFuncs{PrepareFn: prepareGatherND, EvalFn: evalGatherND})
		r.AddBuiltin(schema.OpEmbeddingLookup, 1, 3, withHybrid(tflite.KernelFuncs{PrepareFn: prepareEmbeddingLookup, EvalFn: evalEmbeddingLookup}, isHybridLookup, prepareEmbeddingHybrid, evalEmbeddingHybrid))
	})
}

// idxAt reads indices element i as int64 (int32 or int64 tensors).
func idxAt(t *tensor.Tensor, i int) int64 {
	if v := t.Int32(); v != nil {
		return int64(v[i])
	}
	return t.Int64()[i]
}

func checkIndices(t *tensor.Tensor) error {
	if t.DType() != tensor.Int32 && t.DType() != tensor.Int64 {
		return fmt.Errorf("indices %q are %s, want int32 or int64", t.Name(), t.DType())
	}
	return nil
}

type gatherData struct {
	es                                    int
	batch, outer, coords, axisSize, inner int
}

// prepareGather: output = params.shape[:axis] + indices.shape[batch_dims:] + params.shape[axis+1:].
func prepareGather(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	params, idx, out := n.Input(0), n.Input(1), n.Output(0)
	opts, _ := n.Options.(*tflite.GatherOptions)
	if opts == nil {
		opts = &tflite.GatherOptions{}
	}
	if err := checkIndices(idx); err != nil {
		return err
	}
	es, err := elemBytes(params)
	if err != nil {
		return err
	}
	if err := sameType(params, out); err != nil {
		return err
	}
	if params.Rank() == 0 {
		return fmt.Errorf("params %q is a scalar", params.Name())
	}
	axis, err := normAxis(opts.Axis, params.Rank(), "axis")
	if err != nil {
		return err
	}
	bd := opts.BatchDims
	if bd < 0 {
		bd += idx.Rank()
	}
	if bd < 0 || bd > idx.Rank() || bd > axis {
		return fmt.Errorf("batch_dims %d out of range (indices rank %d, axis %d)", opts.BatchDims, idx.Rank(), axis)
	}
	d := &gatherData{es: es, batch: 1, outer: 1, coords: 1, inner: 1, axisSize: params.Dim(axis)}
	for i := 0; i < bd; i++ {
		if params.Dim(i) != idx.Dim(i) {
			return fmt.Errorf("batch dimension %d: params %v and indices %v differ", i, params.Shape(), idx.Shape())
		}
		d.batch *= params.Dim(i)
	}
	for i := bd; i < axis; i++ {
		d.outer *= params.Dim(i)
	}
	for i := bd; i < idx.Rank(); i++ {
		d.coords *= idx.Dim(i)
	}
	for i := axis + 1; i < params.Rank(); i++ {
		d.inner *= params.Dim(i)
	}
	shape := append(append(append([]int{}, params.Shape()[:axis]...), idx.Shape()[bd:]...), params.Shape()[axis+1:]...)
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	n.Data = d
	return nil
}

func evalGatherOp(n *tflite.Node) error {
	d := n.Data.(*gatherData)
	params, idx, out := n.Input(0).Bytes(), n.Input(1), n.Output(0).Bytes()
	row := d.inner * d.es
	for b := 0; b < d.batch; b++ {
		for o := 0; o < d.outer; o++ {
			for c := 0; c < d.coords; c++ {
				k := idxAt(idx, b*d.coords+c)
				if k < 0 || k >= int64(d.axisSize) {
					return fmt.Errorf("index %d at position %d out of range [0,%d)", k, b*d.coords+c, d.axisSize)
				}
				src := ((b*d.outer+o)*d.axisSize + int(k)) * row
				dst := ((b*d.outer+o)*d.coords + c) * row
				copy(out[dst:dst+row], params[src:src+row])
			}
		}
	}
	return nil
}

type gatherNDData struct {
	es, depth, slices, sliceLen int
	dims, strides               []int // params dims and strides of the indexed dimensions
}

// prepareGatherND: indices [..., depth]; output = indices.shape[:-1] + params.shape[depth:].
func prepareGatherND(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	params, idx, out := n.Input(0), n.Input(1), n.Output(0)
	if err := checkIndices(idx); err != nil {
		return err
	}
	es, err := elemBytes(params)
	if err != nil {
		return err
	}
	if err := sameType(params, out); err != nil {
		return err
	}
	if idx.Rank() < 1 || params.Rank() < 1 {
		return fmt.Errorf("params %q and indices %q must have rank ≥ 1", params.Name(), idx.Name())
	}
	depth := idx.Dim(-1)
	if depth > params.Rank() || depth < 1 {
		return fmt.Errorf("index depth %d out of range [1,%d]", depth, params.Rank())
	}
	shape := append(append([]int{}, idx.Shape()[:idx.Rank()-1]...), params.Shape()[depth:]...)
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	pst := stridesOf(params.Shape())
	d := &gatherNDData{es: es, depth: depth, sliceLen: 1, dims: params.Shape()[:depth], strides: pst[:depth]}
	for _, s := range params.Shape()[depth:] {
		d.sliceLen *= s
	}
	d.slices = tensor.NumElements(idx.Shape()[:idx.Rank()-1])
	n.Data = d
	return nil
}

func evalGatherND(n *tflite.Node) error {
	d := n.Data.(*gatherNDData)
	params, idx, out := n.Input(0).Bytes(), n.Input(1), n.Output(0).Bytes()
	row := d.sliceLen * d.es
	for s := 0; s < d.slices; s++ {
		from := 0
		for j := 0; j < d.depth; j++ {
			k := idxAt(idx, s*d.depth+j)
			if k < 0 || k >= int64(d.dims[j]) {
				return fmt.Errorf("index %d at position %d out of range [0,%d)", k, s*d.depth+j, d.dims[j])
			}
			from += int(k) * d.strides[j]
		}
		copy(out[s*row:(s+1)*row], params[from*d.es:from*d.es+row])
	}
	return nil
}

type embeddingData struct{ es, rows, row int }

// prepareEmbeddingLookup: ids int32 [n], value [rows, ...]; output [n, ...] of value's type.
func prepareEmbeddingLookup(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	ids, value, out := n.Input(0), n.Input(1), n.Output(0)
	if ids.DType() != tensor.Int32 || ids.Rank() != 1 {
		return fmt.Errorf("ids %q must be an int32 vector, not %s", ids.Name(), ids)
	}
	if value.Rank() < 1 {
		return fmt.Errorf("value %q is a scalar", value.Name())
	}
	es, err := elemBytes(value)
	if err != nil {
		return err
	}
	if value.DType() != out.DType() {
		// The hybrid form (int8 value, float32 output) is prepareEmbeddingHybrid.
		return fmt.Errorf("value %q is %s, output %q is %s", value.Name(), value.DType(), out.Name(), out.DType())
	}
	if err := sameType(value, out); err != nil {
		return err
	}
	shape := append([]int{ids.Dim(0)}, value.Shape()[1:]...)
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	row := 1
	for _, s := range value.Shape()[1:] {
		row *= s
	}
	n.Data = &embeddingData{es: es, rows: value.Dim(0), row: row * es}
	return nil
}

func evalEmbeddingLookup(n *tflite.Node) error {
	d := n.Data.(*embeddingData)
	ids, value, out := n.Input(0).Int32(), n.Input(1).Bytes(), n.Output(0).Bytes()
	for i, id := range ids {
		if id < 0 || int(id) >= d.rows {
			return fmt.Errorf("id %d at position %d out of range [0,%d)", id, i, d.rows)
		}
		copy(out[i*d.row:(i+1)*d.row], value[int(id)*d.row:(int(id)+1)*d.row])
	}
	return nil
}
