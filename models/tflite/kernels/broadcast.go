package kernels

import (
	"fmt"
)

// Broadcasting for elementwise ops, with TFLite's rules (kernel_util.cc
// CalculateShapeForBroadcast, NdArrayDescsForElementwiseBroadcast): shapes are aligned at their
// last dimension, missing leading dimensions count as 1, and each pair of dimensions must be
// equal or one of them 1, which is then repeated. The output walks in row-major order.
//
// Other families may reuse it: compute the output shape with BroadcastShape in Prepare, build a
// Broadcast with NewBroadcast, keep it in the node's data and call Each2 or Each3 in Eval (no
// allocation; the callback is not retained).

// MaxBroadcastRank is the highest rank the broadcast machinery handles (TFLite Micro's
// BroadcastAdd6DSlow and friends go up to 6).
const MaxBroadcastRank = 6

// maxBroadcastInputs is the number of operands a Broadcast walks at once (SELECT has three).
const maxBroadcastInputs = 3

// Broadcast is a precomputed walk over an output shape and up to three input shapes broadcast
// against it. The zero value walks nothing.
type Broadcast struct {
	// N is the number of output elements.
	N int
	// Flat is true when every input has exactly the output's elements in the same order, so a
	// plain index loop does; Each2/Each3 take that path themselves.
	Flat bool

	nin     int
	rank    int
	dims    [MaxBroadcastRank]int
	strides [maxBroadcastInputs][MaxBroadcastRank]int // 0 on dimensions an input repeats
}

// BroadcastShape returns the shape all of shapes broadcast to, or an error naming the first
// dimension that does not match. Ranks above MaxBroadcastRank are refused.
func BroadcastShape(shapes ...[]int) ([]int, error) {
	rank := 0
	for _, s := range shapes {
		if len(s) > MaxBroadcastRank {
			return nil, fmt.Errorf("rank %d above the supported %d", len(s), MaxBroadcastRank)
		}
		rank = max(rank, len(s))
	}
	out := make([]int, rank)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		off := rank - len(s)
		for i, d := range s {
			o := &out[off+i]
			switch {
			case d < 0:
				return nil, fmt.Errorf("negative dimension %d in shape %v", d, s)
			case d == *o || d == 1:
			case *o == 1:
				*o = d
			default:
				return nil, fmt.Errorf("shapes %v do not broadcast (dimension %d: %d vs %d)", shapes, off+i, *o, d)
			}
		}
	}
	return out, nil
}

// NewBroadcast prepares the walk of out (the broadcast shape of ins, see BroadcastShape) over
// one to three inputs.
func NewBroadcast(out []int, ins ...[]int) (Broadcast, error) {
	var b Broadcast
	if len(ins) == 0 || len(ins) > maxBroadcastInputs {
		return b, fmt.Errorf("broadcast of %d inputs", len(ins))
	}
	if len(out) > MaxBroadcastRank {
		return b, fmt.Errorf("output rank %d above the supported %d", len(out), MaxBroadcastRank)
	}
	b.nin, b.rank = len(ins), len(out)
	b.N = 1
	for i, d := range out {
		if d < 0 {
			return b, fmt.Errorf("negative dimension in output shape %v", out)
		}
		b.dims[i] = d
		b.N *= d
	}
	b.Flat = true
	for k, s := range ins {
		if len(s) > len(out) {
			return b, fmt.Errorf("input shape %v has a higher rank than output %v", s, out)
		}
		off := len(out) - len(s)
		stride := 1
		for i := len(out) - 1; i >= 0; i-- {
			d := 1
			if i >= off {
				d = s[i-off]
			}
			switch {
			case d == out[i]:
				if d != 1 {
					b.strides[k][i] = stride
				}
			case d == 1:
				b.Flat = false // repeated along this dimension
			default:
				return b, fmt.Errorf("input shape %v does not broadcast to %v", s, out)
			}
			stride *= d
		}
	}
	return b, nil
}

// Each2 calls fn(o, i0, i1) for every output index o with the matching element indices of the
// first two inputs, in row-major output order.
func (b *Broadcast) Each2(fn func(o, i0, i1 int)) {
	if b.Flat {
		for o := 0; o < b.N; o++ {
			fn(o, o, o)
		}
		return
	}
	if b.N == 0 {
		return
	}
	var idx [MaxBroadcastRank]int
	s0, s1 := &b.strides[0], &b.strides[1]
	i0, i1 := 0, 0
	last := b.rank - 1
	for o := 0; o < b.N; o++ {
		fn(o, i0, i1)
		for d := last; d >= 0; d-- {
			idx[d]++
			i0 += s0[d]
			i1 += s1[d]
			if idx[d] < b.dims[d] {
				break
			}
			i0 -= s0[d] * b.dims[d]
			i1 -= s1[d] * b.dims[d]
			idx[d] = 0
		}
	}
}

// Each3 is Each2 for three inputs (SELECT).
func (b *Broadcast) Each3(fn func(o, i0, i1, i2 int)) {
	if b.Flat {
		for o := 0; o < b.N; o++ {
			fn(o, o, o, o)
		}
		return
	}
	if b.N == 0 {
		return
	}
	var idx [MaxBroadcastRank]int
	s0, s1, s2 := &b.strides[0], &b.strides[1], &b.strides[2]
	i0, i1, i2 := 0, 0, 0
	last := b.rank - 1
	for o := 0; o < b.N; o++ {
		fn(o, i0, i1, i2)
		for d := last; d >= 0; d-- {
			idx[d]++
			i0 += s0[d]
			i1 += s1[d]
			i2 += s2[d]
			if idx[d] < b.dims[d] {
				break
			}
			i0 -= s0[d] * b.dims[d]
			i1 -= s1[d] * b.dims[d]
			i2 -= s2[d] * b.dims[d]
			idx[d] = 0
		}
	}
}
