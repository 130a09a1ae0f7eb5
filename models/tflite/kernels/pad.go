package kernels

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// PAD, PADV2 and MIRROR_PAD (reference_ops::Pad, TFLite's mirror_pad.cc). Paddings must be a
// constant [rank, 2] tensor, as TFLite Micro requires, so the output shape is fixed in Prepare.

func init() {
	register(func(r *Resolver) {
		k := tflite.KernelFuncs{PrepareFn: preparePad, EvalFn: evalPad}
		r.AddBuiltin(schema.OpPad, 1, 4, k)
		r.AddBuiltin(schema.OpPadv2, 1, 4, k)
		r.AddBuiltin(schema.OpMirrorPad, 1, 3, tflite.KernelFuncs{PrepareFn: prepareMirrorPad, EvalFn: evalMirrorPad})
	})
}

type padData struct {
	es    int
	value [8]byte // one element of the pad value, little-endian
	block moveBlock
}

// paddings reads and checks the constant [rank, 2] paddings of in.
func paddings(in, p *tensor.Tensor) (before, after []int, err error) {
	if p != nil && p.DType() != tensor.Int32 {
		// TFLite Micro reads paddings as int32 only.
		return nil, nil, fmt.Errorf("paddings %q are %s, want int32", p.Name(), p.DType())
	}
	v, err := constInts(p, "paddings")
	if err != nil {
		return nil, nil, err
	}
	r := in.Rank()
	if p.Rank() != 2 || p.Dim(0) != r || p.Dim(1) != 2 {
		return nil, nil, fmt.Errorf("paddings %q has shape %v, want [%d 2]", p.Name(), p.Shape(), r)
	}
	for i := 0; i < r; i++ {
		b, a := v[2*i], v[2*i+1]
		if b < 0 || a < 0 {
			return nil, nil, fmt.Errorf("paddings %q: negative padding %d,%d on dimension %d", p.Name(), b, a, i)
		}
		before, after = append(before, b), append(after, a)
	}
	return before, after, nil
}

func paddedShape(in *tensor.Tensor, before, after []int) ([]int, error) {
	shape := make([]int, in.Rank())
	for i := range shape {
		shape[i] = in.Dim(i) + before[i] + after[i]
		if shape[i] > math.MaxInt32 {
			return nil, fmt.Errorf("padded dimension %d overflows", i)
		}
	}
	if tensor.NumElements(shape) < 0 {
		return nil, fmt.Errorf("padded shape %v overflows", shape)
	}
	return shape, nil
}

func preparePad(n *tflite.Node) error {
	if err := n.CheckIO(2, 3, 1); err != nil {
		return err
	}
	in, out, cv := n.Input(0), n.Output(0), n.Input(2)
	if n.Op.Builtin == schema.OpPad && cv != nil {
		return fmt.Errorf("PAD takes 2 inputs; use PADV2 for a constant value")
	}
	if err := checkRank(in, 5); err != nil {
		return err
	}
	es, err := elemBytes(in)
	if err != nil {
		return err
	}
	if in.DType() == tensor.Bool {
		return fmt.Errorf("input %q: type %s not supported", in.Name(), in.DType())
	}
	if err := sameType(in, out); err != nil {
		return err
	}
	before, after, err := paddings(in, n.Input(1))
	if err != nil {
		return err
	}
	shape, err := paddedShape(in, before, after)
	if err != nil {
		return err
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	d := &padData{es: es}
	// The pad value: PADV2's constant_values, else 0 for float/int32 and the output zero point
	// for int8/int16/uint8 (the quantized zero), as TFLite's pad.cc does.
	var v int64
	if cv != nil {
		if cv.DType() != in.DType() || cv.NumElements() != 1 || !cv.Constant() {
			return fmt.Errorf("constant_values %q must be one constant %s", cv.Name(), in.DType())
		}
		if q := in.Quant(); q != nil && (in.DType() == tensor.Int8 || in.DType() == tensor.Int16 || in.DType() == tensor.Uint8) && !sameQuant(q, cv.Quant()) {
			// TFLite Micro: the pad value must be quantized like the output.
			return fmt.Errorf("constant_values %q is quantized differently from output %q", cv.Name(), out.Name())
		}
		copy(d.value[:es], cv.Bytes())
	} else {
		if q := out.Quant(); q != nil && len(q.ZeroPoint) > 0 && (in.DType() == tensor.Int8 || in.DType() == tensor.Int16 || in.DType() == tensor.Uint8) {
			v = q.ZeroPoint[0]
		}
		binary.LittleEndian.PutUint64(d.value[:], uint64(v)) // float32 pads with +0: all bits zero
	}
	ost := stridesOf(shape)
	off := 0
	for i, b := range before {
		off += b * ost[i]
	}
	d.block = moveBlock{dims: append([]int(nil), in.Shape()...), srcStride: stridesOf(in.Shape()), dstOff: off, dstStride: ost}
	n.Data = d
	return nil
}

func evalPad(n *tflite.Node) error {
	d := n.Data.(*padData)
	dst := n.Output(0).Bytes()
	fillPattern(dst, d.value[:d.es])
	d.block.run(dst, n.Input(0).Bytes(), d.es)
	return nil
}

// mirrorPadData maps every output element to its input element, per dimension.
type mirrorPadData struct {
	es       int
	outShape []int
	inStride []int
	// src[d][i] is the input index along dimension d of output index i.
	src [][]int
	idx []int // odometer scratch, rank long
}

// prepareMirrorPad: REFLECT mirrors around the edge element (padding ≤ dim-1), SYMMETRIC
// repeats it (padding ≤ dim), TFLite's mirror_pad.cc limits.
func prepareMirrorPad(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	opts, _ := n.Options.(*tflite.MirrorPadOptions)
	if opts == nil {
		opts = &tflite.MirrorPadOptions{}
	}
	if opts.Mode != tflite.MirrorPadReflect && opts.Mode != tflite.MirrorPadSymmetric {
		return fmt.Errorf("unknown mirror pad mode %d", opts.Mode)
	}
	if err := checkRank(in, maxMoveRank); err != nil {
		return err
	}
	es, err := elemBytes(in)
	if err != nil {
		return err
	}
	if err := sameType(in, out); err != nil {
		return err
	}
	before, after, err := paddings(in, n.Input(1))
	if err != nil {
		return err
	}
	off := 0
	if opts.Mode == tflite.MirrorPadReflect {
		off = 1
	}
	for i := range before {
		lim := in.Dim(i) - off
		if before[i] > lim || after[i] > lim {
			return fmt.Errorf("paddings %d,%d on dimension %d exceed %d for mode %d", before[i], after[i], i, lim, opts.Mode)
		}
	}
	shape, err := paddedShape(in, before, after)
	if err != nil {
		return err
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	d := &mirrorPadData{es: es, outShape: shape, inStride: stridesOf(in.Shape()), idx: make([]int, len(shape))}
	for dim, size := range shape {
		m := make([]int, size)
		for i := range m {
			j := i - before[dim]
			dimSize := in.Dim(dim)
			switch {
			case j < 0:
				j = -j - 1 + off
			case j >= dimSize:
				j = 2*dimSize - j - 1 - off
			}
			m[i] = j
		}
		d.src = append(d.src, m)
	}
	n.Data = d
	return nil
}

func evalMirrorPad(n *tflite.Node) error {
	d := n.Data.(*mirrorPadData)
	src, dst := n.Input(0).Bytes(), n.Output(0).Bytes()
	total := len(dst) / d.es
	clear(d.idx)
	for o := 0; o < total; o++ {
		s := 0
		for k, i := range d.idx {
			s += d.src[k][i] * d.inStride[k]
		}
		copy(dst[o*d.es:(o+1)*d.es], src[s*d.es:(s+1)*d.es])
		for k := len(d.idx) - 1; k >= 0; k-- {
			d.idx[k]++
			if d.idx[k] < d.outShape[k] {
				break
			}
			d.idx[k] = 0
		}
	}
	return nil
}
