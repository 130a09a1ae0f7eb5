package kernels

import (
	"fmt"
	"slices"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Comparisons (EQUAL … LESS_EQUAL), logic (LOGICAL_AND/OR/NOT) and SELECT/SELECT_V2, with
// broadcasting. int8 comparisons rescale both inputs the way TFLite Micro's
// comparisons_common.cc does (left shift 8, each input's own scale as a multiplier below one) so
// differently quantized inputs compare correctly.

type cmpOp uint8

const (
	cmpEq cmpOp = iota
	cmpNe
	cmpGt
	cmpGe
	cmpLt
	cmpLe
)

var cmpNames = [...]string{"EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL"}

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpEqual, 1, 4, compareKernel(cmpEq))
		r.AddBuiltin(schema.OpNotEqual, 1, 3, compareKernel(cmpNe))
		r.AddBuiltin(schema.OpGreater, 1, 2, compareKernel(cmpGt))
		r.AddBuiltin(schema.OpGreaterEqual, 1, 2, compareKernel(cmpGe))
		r.AddBuiltin(schema.OpLess, 1, 2, compareKernel(cmpLt))
		r.AddBuiltin(schema.OpLessEqual, 1, 2, compareKernel(cmpLe))
		r.AddBuiltin(schema.OpLogicalAnd, 1, 1, logicKernel(true))
		r.AddBuiltin(schema.OpLogicalOr, 1, 1, logicKernel(false))
		r.AddBuiltin(schema.OpLogicalNot, 1, 1, tflite.KernelFuncs{PrepareFn: prepareLogicalNot, EvalFn: evalLogicalNot})
		r.AddBuiltin(schema.OpSelect, 1, 4, selectKernel(false))
		r.AddBuiltin(schema.OpSelectV2, 1, 2, selectKernel(true))
	})
}

type compareData struct {
	op cmpOp
	bc Broadcast
	// Quantized inputs: offsets, a left shift and one multiplier per input.
	quant              bool
	in1Off, in2Off     int32
	in1Mult, in2Mult   int32
	in1Shift, in2Shift int
}

func compareKernel(op cmpOp) tflite.Kernel {
	return tflite.KernelFuncs{
		PrepareFn: func(n *tflite.Node) error { return prepareCompare(n, op) },
		EvalFn:    evalCompare,
	}
}

// cmpLeftShift is the headroom of the quantized comparison (comparisons.cc: left_shift = 8).
const cmpLeftShift = 8

func prepareCompare(n *tflite.Node, op cmpOp) error {
	name := cmpNames[op]
	if err := n.CheckIO(2, 2, 1); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	a, b, out := n.Input(0), n.Input(1), n.Output(0)
	if a.DType() != b.DType() {
		return fmt.Errorf("%s: input %q is %s, input %q is %s", name, a.Name(), a.DType(), b.Name(), b.DType())
	}
	if out.DType() != tensor.Bool {
		return fmt.Errorf("%s: output %q is %s, want bool", name, out.Name(), out.DType())
	}
	switch a.DType() {
	case tensor.Float32, tensor.Int32, tensor.Int64:
	case tensor.Bool:
		if op != cmpEq && op != cmpNe {
			return fmt.Errorf("%s: bool inputs not supported", name)
		}
	case tensor.Int8, tensor.Uint8:
	default:
		// int16 included: TFLite's comparison kernels refuse it.
		return fmt.Errorf("%s: type %s not supported", name, a.DType())
	}
	shape, err := BroadcastShape(a.Shape(), b.Shape())
	if err != nil {
		return fmt.Errorf("%s: inputs %q and %q: %w", name, a.Name(), b.Name(), err)
	}
	out.SetShape(shape)
	d := &compareData{op: op}
	if d.bc, err = NewBroadcast(shape, a.Shape(), b.Shape()); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if a.DType() == tensor.Int8 || a.DType() == tensor.Uint8 {
		if err := prepareCompareQuant(d, a, b); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	n.Data = d
	return nil
}

func prepareCompareQuant(d *compareData, a, b *tensor.Tensor) error {
	s1, z1, err := quantParams(a)
	if err != nil {
		return err
	}
	s2, z2, err := quantParams(b)
	if err != nil {
		return err
	}
	d.quant = true
	d.in1Off, d.in2Off = -z1, -z2
	// The scales themselves are the multipliers, so they must be below 1.
	if d.in1Mult, d.in1Shift, err = quantizeMultiplierSmallerThanOne(float64(s1)); err != nil {
		return fmt.Errorf("input %q: %w", a.Name(), err)
	}
	if d.in2Mult, d.in2Shift, err = quantizeMultiplierSmallerThanOne(float64(s2)); err != nil {
		return fmt.Errorf("input %q: %w", b.Name(), err)
	}
	return nil
}

func evalCompare(n *tflite.Node) error {
	d := n.Data.(*compareData)
	a, b, z := n.Input(0), n.Input(1), n.Output(0).Bool()
	switch a.DType() {
	case tensor.Float32:
		compare(d, a.Float32(), b.Float32(), z)
	case tensor.Int32:
		compare(d, a.Int32(), b.Int32(), z)
	case tensor.Int64:
		compare(d, a.Int64(), b.Int64(), z)
	case tensor.Bool:
		compare(d, a.Bool(), b.Bool(), z)
	case tensor.Int8:
		compareQuant(d, a.Int8(), b.Int8(), z)
	case tensor.Uint8:
		compareQuant(d, a.Uint8(), b.Uint8(), z)
	}
	return nil
}

func cmpResult[T int32 | int64 | float32 | uint8](op cmpOp, x, y T) uint8 {
	var r bool
	switch op {
	case cmpEq:
		r = x == y
	case cmpNe:
		r = x != y
	case cmpGt:
		r = x > y
	case cmpGe:
		r = x >= y
	case cmpLt:
		r = x < y
	case cmpLe:
		r = x <= y
	}
	if r {
		return 1
	}
	return 0
}

func compare[T int32 | int64 | float32 | uint8](d *compareData, x, y []T, z []uint8) {
	op := d.op
	d.bc.Each2(func(o, i, j int) { z[o] = cmpResult(op, x[i], y[j]) })
}

// compareQuant is reference_ops' quantized comparison: (x + offset) << 8, scaled by the
// input's multiplier, then compared.
func compareQuant[T int8 | uint8](d *compareData, x, y []T, z []uint8) {
	op := d.op
	d.bc.Each2(func(o, i, j int) {
		a := MultiplyByQuantizedMultiplier((int32(x[i])+d.in1Off)<<cmpLeftShift, d.in1Mult, d.in1Shift)
		b := MultiplyByQuantizedMultiplier((int32(y[j])+d.in2Off)<<cmpLeftShift, d.in2Mult, d.in2Shift)
		z[o] = cmpResult(op, a, b)
	})
}

// Logic ops on bool tensors.

func logicKernel(and bool) tflite.Kernel {
	name := "LOGICAL_OR"
	if and {
		name = "LOGICAL_AND"
	}
	return tflite.KernelFuncs{
		PrepareFn: func(n *tflite.Node) error {
			if err := n.CheckIO(2, 2, 1); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			a, b, out := n.Input(0), n.Input(1), n.Output(0)
			for _, t := range []*tensor.Tensor{a, b, out} {
				if t.DType() != tensor.Bool {
					return fmt.Errorf("%s: tensor %q is %s, want bool", name, t.Name(), t.DType())
				}
			}
			shape, err := BroadcastShape(a.Shape(), b.Shape())
			if err != nil {
				return fmt.Errorf("%s: inputs %q and %q: %w", name, a.Name(), b.Name(), err)
			}
			out.SetShape(shape)
			bc, err := NewBroadcast(shape, a.Shape(), b.Shape())
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			n.Data = &bc
			return nil
		},
		EvalFn: func(n *tflite.Node) error {
			bc := n.Data.(*Broadcast)
			x, y, z := n.Input(0).Bool(), n.Input(1).Bool(), n.Output(0).Bool()
			if and {
				bc.Each2(func(o, i, j int) { z[o] = boolByte(x[i] != 0 && y[j] != 0) })
			} else {
				bc.Each2(func(o, i, j int) { z[o] = boolByte(x[i] != 0 || y[j] != 0) })
			}
			return nil
		},
	}
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func prepareLogicalNot(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return fmt.Errorf("LOGICAL_NOT: %w", err)
	}
	in, out := n.Input(0), n.Output(0)
	if in.DType() != tensor.Bool || out.DType() != tensor.Bool {
		return fmt.Errorf("LOGICAL_NOT: input %q %s, output %q %s, want bool", in.Name(), in.DType(), out.Name(), out.DType())
	}
	out.SetShape(in.Shape())
	return nil
}

func evalLogicalNot(n *tflite.Node) error {
	x, z := n.Input(0).Bool(), n.Output(0).Bool()
	for i, v := range x {
		z[i] = boolByte(v == 0)
	}
	return nil
}

// SELECT picks x where the condition is true, else y. SELECT (v1) needs x and y of one shape
// and a condition of that shape or a vector over the first dimension (reference_ops::
// RankOneSelect); SELECT_V2 broadcasts all three.

type selectData struct {
	bc      Broadcast
	rankOne bool // SELECT with a rank-1 condition over dimension 0 of higher-rank x/y
	inner   int  // elements per condition entry in the rank-one case
}

func selectKernel(v2 bool) tflite.Kernel {
	return tflite.KernelFuncs{
		PrepareFn: func(n *tflite.Node) error { return prepareSelect(n, v2) },
		EvalFn:    evalSelect,
	}
}

func prepareSelect(n *tflite.Node, v2 bool) error {
	name := "SELECT"
	if v2 {
		name = "SELECT_V2"
	}
	if err := n.CheckIO(3, 3, 1); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	c, x, y, out := n.Input(0), n.Input(1), n.Input(2), n.Output(0)
	if c.DType() != tensor.Bool {
		return fmt.Errorf("%s: condition %q is %s, want bool", name, c.Name(), c.DType())
	}
	if x.DType() != y.DType() || x.DType() != out.DType() {
		return fmt.Errorf("%s: inputs %q %s, %q %s and output %q %s must have one type", name, x.Name(), x.DType(), y.Name(), y.DType(), out.Name(), out.DType())
	}
	if x.DType().Size() == 0 {
		return fmt.Errorf("%s: type %s not supported", name, x.DType())
	}
	d := &selectData{}
	var shape []int
	var err error
	if v2 {
		if shape, err = BroadcastShape(c.Shape(), x.Shape(), y.Shape()); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	} else {
		if !slices.Equal(x.Shape(), y.Shape()) {
			return fmt.Errorf("%s: inputs %q %v and %q %v must have the same shape", name, x.Name(), x.Shape(), y.Name(), y.Shape())
		}
		shape = x.Shape()
		switch {
		case slices.Equal(c.Shape(), x.Shape()):
		case c.Rank() == 1 && x.Rank() > 1 && c.Dim(0) == x.Dim(0):
			d.rankOne = true
			if c.Dim(0) > 0 {
				d.inner = x.NumElements() / c.Dim(0)
			}
		default:
			return fmt.Errorf("%s: condition %q %v must match inputs %v or be a vector over their first dimension", name, c.Name(), c.Shape(), x.Shape())
		}
	}
	shape = append([]int(nil), shape...)
	out.SetShape(shape)
	if !d.rankOne {
		if d.bc, err = NewBroadcast(shape, c.Shape(), x.Shape(), y.Shape()); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	n.Data = d
	return nil
}

func evalSelect(n *tflite.Node) error {
	d := n.Data.(*selectData)
	c, x, y, out := n.Input(0).Bool(), n.Input(1).Bytes(), n.Input(2).Bytes(), n.Output(0).Bytes()
	size := n.Output(0).DType().Size()
	if d.rankOne {
		step := d.inner * size
		for i, v := range c {
			src := y
			if v != 0 {
				src = x
			}
			copy(out[i*step:(i+1)*step], src[i*step:(i+1)*step])
		}
		return nil
	}
	// Element copies by byte width: SELECT moves values without looking at them.
	d.bc.Each3(func(o, ic, ix, iy int) {
		if c[ic] != 0 {
			copy(out[o*size:(o+1)*size], x[ix*size:(ix+1)*size])
		} else {
			copy(out[o*size:(o+1)*size], y[iy*size:(iy+1)*size])
		}
	})
	return nil
}
