package kernels

import (
	"fmt"
	"math"
	"slices"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
)

// Helpers shared by the shape and data-movement kernels (pad, slice, concat, transpose, …):
// most of those ops are dtype-agnostic byte moves described by a block shape and two sets of
// element strides, computed once in Prepare so Eval only walks them.

// maxMoveRank bounds the rank of the data-movement ops, as TFLite's reference kernels do
// (they extend shapes to at most 5 or 6 dimensions).
const maxMoveRank = 6

// stridesOf returns the row-major element strides of shape.
func stridesOf(shape []int) []int {
	s := make([]int, len(shape))
	n := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = n
		n *= shape[i]
	}
	return s
}

// moveBlock is one strided copy: element (i0,…,ik) of a block of shape dims goes from
// src[srcOff + Σ i_d*srcStride[d]] to dst[dstOff + Σ i_d*dstStride[d]] (all in elements).
type moveBlock struct {
	dims                 []int
	srcOff, dstOff       int
	srcStride, dstStride []int
}

// run performs the copy with element size es. A block with a zero dimension copies nothing.
func (b *moveBlock) run(dst, src []byte, es int) {
	for _, d := range b.dims {
		if d == 0 {
			return
		}
	}
	if len(b.dims) == 0 {
		copy(dst[b.dstOff*es:(b.dstOff+1)*es], src[b.srcOff*es:(b.srcOff+1)*es])
		return
	}
	b.walk(dst, src, es, 0, b.srcOff, b.dstOff)
}

func (b *moveBlock) walk(dst, src []byte, es, d, so, do int) {
	n := b.dims[d]
	ss, ds := b.srcStride[d], b.dstStride[d]
	if d == len(b.dims)-1 {
		if ss == 1 && ds == 1 {
			copy(dst[do*es:(do+n)*es], src[so*es:(so+n)*es])
			return
		}
		for i := 0; i < n; i++ {
			copy(dst[do*es:do*es+es], src[so*es:so*es+es])
			so += ss
			do += ds
		}
		return
	}
	for i := 0; i < n; i++ {
		b.walk(dst, src, es, d+1, so, do)
		so += ss
		do += ds
	}
}

// fillPattern fills dst with copies of the element pattern p (len(p) divides len(dst)).
func fillPattern(dst, p []byte) {
	if len(dst) == 0 {
		return
	}
	n := copy(dst, p)
	for n < len(dst) {
		n += copy(dst[n:], dst[:n])
	}
}

// elemBytes is the element size of the dtypes the data-movement kernels accept.
func elemBytes(t *tensor.Tensor) (int, error) {
	switch t.DType() {
	case tensor.Float32, tensor.Int8, tensor.Uint8, tensor.Int16, tensor.Int32, tensor.Int64, tensor.Bool:
		return t.DType().Size(), nil
	}
	return 0, fmt.Errorf("tensor %q: type %s not supported", t.Name(), t.DType())
}

// sameType checks that out has in's dtype and, for quantized types, its quantization: these
// ops move values without requantizing, as TFLite Micro requires.
func sameType(in, out *tensor.Tensor) error {
	if in.DType() != out.DType() {
		return fmt.Errorf("input %q is %s, output %q is %s", in.Name(), in.DType(), out.Name(), out.DType())
	}
	if !sameQuant(in.Quant(), out.Quant()) && (in.DType() == tensor.Int8 || in.DType() == tensor.Uint8 || in.DType() == tensor.Int16) {
		return fmt.Errorf("input %q and output %q have different quantization", in.Name(), out.Name())
	}
	return nil
}

func sameQuant(a, b *tensor.Quant) bool {
	if a == nil || b == nil {
		return a == b
	}
	if len(a.Scale) != len(b.Scale) || len(a.ZeroPoint) != len(b.ZeroPoint) {
		return false
	}
	for i := range a.Scale {
		if a.Scale[i] != b.Scale[i] {
			return false
		}
	}
	for i := range a.ZeroPoint {
		if a.ZeroPoint[i] != b.ZeroPoint[i] {
			return false
		}
	}
	return true
}

// constInts reads a constant int32 or int64 tensor (shape parameters: paddings, begin, axis…).
// TFLite Micro requires these to be constant, and so do we: shapes are fixed in Prepare.
func constInts(t *tensor.Tensor, what string) ([]int, error) {
	if t == nil {
		return nil, fmt.Errorf("%s is missing", what)
	}
	if !t.Constant() {
		return nil, fmt.Errorf("%s %q must be a constant tensor", what, t.Name())
	}
	var v []int
	switch t.DType() {
	case tensor.Int32:
		for _, x := range t.Int32() {
			v = append(v, int(x))
		}
	case tensor.Int64:
		for _, x := range t.Int64() {
			if x > math.MaxInt32 || x < math.MinInt32 {
				return nil, fmt.Errorf("%s %q: value %d out of range", what, t.Name(), x)
			}
			v = append(v, int(x))
		}
	default:
		return nil, fmt.Errorf("%s %q is %s, want int32 or int64", what, t.Name(), t.DType())
	}
	if len(v) != t.NumElements() {
		return nil, fmt.Errorf("%s %q has no data", what, t.Name())
	}
	return v, nil
}

// setOutShape sets out's shape to want, after checking that a shape stored in the model (if
// any) agrees, so a model that declares a wrong output shape is rejected rather than trusted.
func setOutShape(out *tensor.Tensor, want []int) error {
	have := out.Shape()
	if len(have) > 0 && !slices.Equal(have, want) && tensor.NumElements(have) != tensor.NumElements(want) {
		return fmt.Errorf("output %q has shape %v, the op computes %v", out.Name(), have, want)
	}
	out.SetShape(want)
	return nil
}

// checkRank rejects ranks above what the reference kernels handle.
func checkRank(t *tensor.Tensor, maxRank int) error {
	if t.Rank() > maxRank {
		return fmt.Errorf("tensor %q has rank %d, at most %d supported", t.Name(), t.Rank(), maxRank)
	}
	return nil
}

// normAxis resolves a possibly negative axis against rank.
func normAxis(axis, rank int, what string) (int, error) {
	if axis < -rank || axis >= rank {
		return 0, fmt.Errorf("%s %d out of range for rank %d", what, axis, rank)
	}
	if axis < 0 {
		axis += rank
	}
	return axis, nil
}

// copyKernel is the Eval of ops whose output bytes equal their input bytes (SQUEEZE,
// EXPAND_DIMS): a copy, skipped when the planner gave both the same memory.
func copyKernel(n *tflite.Node) error {
	in, out := n.Input(0).Bytes(), n.Output(0).Bytes()
	if len(in) > 0 && len(out) > 0 && &in[0] == &out[0] {
		return nil
	}
	copy(out, in)
	return nil
}
