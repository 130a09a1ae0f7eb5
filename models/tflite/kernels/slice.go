package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// STRIDED_SLICE and SLICE (reference_ops::StridedSlice with strided_slice_logic.h's
// StartForAxis/StopForAxis, reference_ops::Slice). begin/end/strides/size are constant, as
// TFLite Micro requires; each op becomes one strided copy computed in Prepare.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpStridedSlice, 1, 8, tflite.KernelFuncs{PrepareFn: prepareStridedSlice, EvalFn: evalMove})
		r.AddBuiltin(schema.OpSlice, 1, 6, tflite.KernelFuncs{PrepareFn: prepareSlice, EvalFn: evalMove})
	})
}

// moveData is the state of ops that are one strided copy from input 0 to output 0.
type moveData struct {
	es    int
	block moveBlock
}

func evalMove(n *tflite.Node) error {
	d := n.Data.(*moveData)
	d.block.run(n.Output(0).Bytes(), n.Input(0).Bytes(), d.es)
	return nil
}

func prepareStridedSlice(n *tflite.Node) error {
	if err := n.CheckIO(4, 4, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	opts, _ := n.Options.(*tflite.StridedSliceOptions)
	if opts == nil {
		opts = &tflite.StridedSliceOptions{}
	}
	if opts.EllipsisMask != 0 || opts.NewAxisMask != 0 {
		// TFLite Micro's strided_slice supports neither.
		return fmt.Errorf("ellipsis_mask %d / new_axis_mask %d not supported", opts.EllipsisMask, opts.NewAxisMask)
	}
	if err := checkRank(in, 5); err != nil {
		return err
	}
	es, err := elemBytes(in)
	if err != nil {
		return err
	}
	if err := sameType(in, out); err != nil {
		return err
	}
	r := in.Rank()
	var vals [3][]int
	for i, what := range []string{"begin", "end", "strides"} {
		if vals[i], err = constInts(n.Input(i+1), what); err != nil {
			return err
		}
		if t := n.Input(i + 1); t.Rank() != 1 || len(vals[i]) != r {
			return fmt.Errorf("%s %q has shape %v, want [%d]", what, t.Name(), t.Shape(), r)
		}
	}
	begin, end, strides := vals[0], vals[1], vals[2]
	ist := stridesOf(in.Shape())
	d := &moveData{es: es, block: moveBlock{dstStride: make([]int, r)}}
	var outShape []int
	for a := 0; a < r; a++ {
		stride := strides[a]
		if stride == 0 {
			return fmt.Errorf("stride of dimension %d is 0", a)
		}
		size := in.Dim(a)
		bit := int32(1) << a
		e := end[a]
		if opts.Offset {
			// offset=true: end is relative to begin.
			e += begin[a]
		}
		start := begin[a]
		if opts.BeginMask&bit != 0 {
			start = math.MinInt32
			if stride < 0 {
				start = math.MaxInt32
			}
		}
		if start < 0 {
			start += size
		}
		if stride > 0 {
			start = min(max(start, 0), size)
		} else {
			start = min(max(start, -1), size-1)
		}
		shrink := opts.ShrinkAxisMask&bit != 0
		var stop int
		if shrink {
			// A shrunk axis takes exactly the element at start (StopForAxis returns start+1).
			if start < 0 || start >= size {
				return fmt.Errorf("shrunk dimension %d: index %d out of range [0,%d)", a, begin[a], size)
			}
			stop = start + 1
		} else {
			stop = e
			if opts.EndMask&bit != 0 {
				stop = math.MaxInt32
				if stride < 0 {
					stop = math.MinInt32
				}
			}
			if stop < 0 {
				stop += size
			}
			if stride > 0 {
				stop = min(max(stop, 0), size)
			} else {
				stop = min(max(stop, -1), size-1)
			}
		}
		count := (stop - start) / stride
		if (stop-start)%stride != 0 {
			count++
		}
		count = max(count, 0)
		if !shrink {
			outShape = append(outShape, count)
		}
		d.block.dims = append(d.block.dims, count)
		d.block.srcOff += start * ist[a]
		d.block.srcStride = append(d.block.srcStride, stride*ist[a])
	}
	if outShape == nil {
		outShape = []int{}
	}
	if err := setOutShape(out, outShape); err != nil {
		return err
	}
	// The output is written contiguously in the order of the (unshrunk) block.
	copy(d.block.dstStride, stridesOf(d.block.dims))
	n.Data = d
	return nil
}

func prepareSlice(n *tflite.Node) error {
	if err := n.CheckIO(3, 3, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if err := checkRank(in, 5); err != nil {
		return err
	}
	es, err := elemBytes(in)
	if err != nil {
		return err
	}
	if err := sameType(in, out); err != nil {
		return err
	}
	begin, err := constInts(n.Input(1), "begin")
	if err != nil {
		return err
	}
	size, err := constInts(n.Input(2), "size")
	if err != nil {
		return err
	}
	r := in.Rank()
	if len(begin) != r || len(size) != r {
		return fmt.Errorf("begin has %d and size %d values, want %d (the input rank)", len(begin), len(size), r)
	}
	ist := stridesOf(in.Shape())
	shape := make([]int, r)
	d := &moveData{es: es}
	for a := 0; a < r; a++ {
		dim := in.Dim(a)
		if begin[a] < 0 || begin[a] > dim {
			return fmt.Errorf("begin %d of dimension %d out of range [0,%d]", begin[a], a, dim)
		}
		s := size[a]
		if s == -1 {
			// size -1 takes everything from begin to the end of the dimension.
			s = dim - begin[a]
		}
		if s < 0 || begin[a]+s > dim {
			return fmt.Errorf("size %d from begin %d exceeds dimension %d of size %d", size[a], begin[a], a, dim)
		}
		shape[a] = s
		d.block.srcOff += begin[a] * ist[a]
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	d.block.dims, d.block.srcStride, d.block.dstStride = shape, ist, stridesOf(shape)
	n.Data = d
	return nil
}
