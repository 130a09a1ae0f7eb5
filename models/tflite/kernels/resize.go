package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR on NHWC tensors (reference_ops::ResizeBilinear,
// ResizeBilinearInteger, ResizeNearestNeighbor). The size input [new_height, new_width] must
// be constant. Source coordinates are computed once in Prepare.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpResizeBilinear, 1, 4, tflite.KernelFuncs{PrepareFn: prepareResize, EvalFn: evalResizeBilinear})
		r.AddBuiltin(schema.OpResizeNearestNeighbor, 1, 4, tflite.KernelFuncs{PrepareFn: prepareResize, EvalFn: evalResizeNearest})
	})
}

// resizeAxis holds, per output coordinate, the two source rows/columns and the weight of the
// second: a float fraction (float kernel) or a 10-bit fixed-point position (integer kernel).
type resizeAxis struct {
	lo, hi []int
	frac   []float32 // float: source position minus lo
	pos10  []int32   // integer: source position in 1/1024 units
}

type resizeData struct {
	es                int
	b, ih, iw, oh, ow int
	c                 int
	ys, xs            resizeAxis
	integer           bool
}

func prepareResize(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	opts, _ := n.Options.(*tflite.ResizeOptions)
	if opts == nil {
		opts = &tflite.ResizeOptions{}
	}
	if opts.AlignCorners && opts.HalfPixelCenters {
		// TFLite: half_pixel_centers requires align_corners false.
		return fmt.Errorf("align_corners and half_pixel_centers are both set")
	}
	if in.Rank() != 4 {
		return fmt.Errorf("input %q has rank %d, want 4 (NHWC)", in.Name(), in.Rank())
	}
	switch in.DType() {
	case tensor.Float32, tensor.Int8, tensor.Int16, tensor.Uint8:
	default:
		return fmt.Errorf("input %q: type %s not supported (float32, int8, int16, uint8)", in.Name(), in.DType())
	}
	if err := sameType(in, out); err != nil {
		return err
	}
	size, err := constInts(n.Input(1), "size")
	if err != nil {
		return err
	}
	if len(size) != 2 || size[0] < 1 || size[1] < 1 {
		return fmt.Errorf("size %v must be two positive values", size)
	}
	d := &resizeData{es: in.DType().Size(), b: in.Dim(0), ih: in.Dim(1), iw: in.Dim(2), c: in.Dim(3), oh: size[0], ow: size[1]}
	if d.ih < 1 || d.iw < 1 {
		return fmt.Errorf("input %q has an empty spatial dimension", in.Name())
	}
	shape := []int{d.b, d.oh, d.ow, d.c}
	if tensor.NumElements(shape) < 0 {
		return fmt.Errorf("output shape %v overflows", shape)
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	if n.Op.Builtin == schema.OpResizeNearestNeighbor {
		d.ys.lo = nearestAxis(d.ih, d.oh, opts)
		d.xs.lo = nearestAxis(d.iw, d.ow, opts)
	} else {
		d.integer = in.DType() != tensor.Float32
		if d.integer {
			d.ys = bilinearAxisInt(d.ih, d.oh, opts)
			d.xs = bilinearAxisInt(d.iw, d.ow, opts)
		} else {
			d.ys = bilinearAxisFloat(d.ih, d.oh, opts)
			d.xs = bilinearAxisFloat(d.iw, d.ow, opts)
		}
	}
	n.Data = d
	return nil
}

// nearestAxis is reference GetNearestNeighbor, in float32 as TFLite computes it.
func nearestAxis(in, out int, o *tflite.ResizeOptions) []int {
	scale := float32(in) / float32(out)
	if o.AlignCorners && out > 1 {
		scale = float32(in-1) / float32(out-1)
	}
	var offset float32
	if o.HalfPixelCenters {
		offset = 0.5
	}
	m := make([]int, out)
	for i := range m {
		p := float32(float32(i)+offset) * scale
		var v int
		if o.AlignCorners {
			v = int(math.Round(float64(p))) // TfLiteRound: half away from zero
		} else {
			v = int(math.Floor(float64(p)))
		}
		v = min(v, in-1)
		if o.HalfPixelCenters {
			v = max(v, 0)
		}
		m[i] = v
	}
	return m
}

// bilinearAxisFloat is reference ComputeInterpolationValues with its float32 scale.
func bilinearAxisFloat(in, out int, o *tflite.ResizeOptions) resizeAxis {
	scale := float32(in) / float32(out)
	if o.AlignCorners && out > 1 {
		scale = float32(in-1) / float32(out-1)
	}
	a := resizeAxis{lo: make([]int, out), hi: make([]int, out), frac: make([]float32, out)}
	for i := 0; i < out; i++ {
		var v float32
		if o.HalfPixelCenters {
			v = float32(float32(float32(i)+0.5)*scale) - 0.5
		} else {
			v = float32(i) * scale
		}
		lo := max(int(math.Floor(float64(v))), 0)
		a.lo[i] = lo
		a.hi[i] = min(int(math.Ceil(float64(v))), in-1)
		a.frac[i] = v - float32(lo)
	}
	return a
}

// bilinearAxisInt is reference ComputeInterpolationValuesInteger (10-bit fixed point).
func bilinearAxisInt(in, out int, o *tflite.ResizeOptions) resizeAxis {
	scale := (int32(1<<10)*int32(in) + int32(out)/2) / int32(out)
	if o.AlignCorners && out > 1 {
		scale = (int32(1<<10)*int32(in-1) + int32(out-1)/2) / int32(out-1)
	}
	a := resizeAxis{lo: make([]int, out), hi: make([]int, out), pos10: make([]int32, out)}
	for i := 0; i < out; i++ {
		v := int32(i) * scale
		if o.HalfPixelCenters {
			v = int32(i)*scale + scale/2 - (1 << 9)
		}
		// Integer division truncates toward zero in C++ and Go alike.
		a.lo[i] = int(max(v/(1<<10), 0))
		a.hi[i] = int(min((v+(1<<10)-1)/(1<<10), int32(in-1)))
		a.pos10[i] = v
	}
	return a
}

func evalResizeNearest(n *tflite.Node) error {
	d := n.Data.(*resizeData)
	src, dst := n.Input(0).Bytes(), n.Output(0).Bytes()
	row := d.c * d.es
	o := 0
	for b := 0; b < d.b; b++ {
		for y := 0; y < d.oh; y++ {
			for x := 0; x < d.ow; x++ {
				i := ((b*d.ih+d.ys.lo[y])*d.iw + d.xs.lo[x]) * row
				copy(dst[o:o+row], src[i:i+row])
				o += row
			}
		}
	}
	return nil
}

func evalResizeBilinear(n *tflite.Node) error {
	d := n.Data.(*resizeData)
	in, out := n.Input(0), n.Output(0)
	switch in.DType() {
	case tensor.Float32:
		bilinearFloat(d, in.Float32(), out.Float32())
	case tensor.Int8:
		bilinearInt(d, in.Int8(), out.Int8())
	case tensor.Int16:
		bilinearInt(d, in.Int16(), out.Int16())
	case tensor.Uint8:
		bilinearInt(d, in.Uint8(), out.Uint8())
	}
	return nil
}

func bilinearFloat(d *resizeData, x, y []float32) {
	o := 0
	for b := 0; b < d.b; b++ {
		for oy := 0; oy < d.oh; oy++ {
			y0, y1, fy := d.ys.lo[oy], d.ys.hi[oy], d.ys.frac[oy]
			for ox := 0; ox < d.ow; ox++ {
				x0, x1, fx := d.xs.lo[ox], d.xs.hi[ox], d.xs.frac[ox]
				p00 := ((b*d.ih+y0)*d.iw + x0) * d.c
				p10 := ((b*d.ih+y1)*d.iw + x0) * d.c
				p01 := ((b*d.ih+y0)*d.iw + x1) * d.c
				p11 := ((b*d.ih+y1)*d.iw + x1) * d.c
				for c := 0; c < d.c; c++ {
					// The reference's term order; explicit float32 conversions keep Go from
					// fusing multiply-adds.
					v := float32(x[p00+c]*(1-fy)) * (1 - fx)
					v += float32(x[p10+c]*fy) * (1 - fx)
					v += float32(x[p01+c]*(1-fy)) * fx
					v += float32(x[p11+c]*fy) * fx
					y[o] = v
					o++
				}
			}
		}
	}
}

func bilinearInt[T int8 | int16 | uint8](d *resizeData, x, y []T) {
	const one = 1 << 10
	o := 0
	for b := 0; b < d.b; b++ {
		for oy := 0; oy < d.oh; oy++ {
			y0, y1 := d.ys.lo[oy], d.ys.hi[oy]
			wy := int64(d.ys.pos10[oy] - one*int32(y0)) // weight of row y1, in 1/1024
			for ox := 0; ox < d.ow; ox++ {
				x0, x1 := d.xs.lo[ox], d.xs.hi[ox]
				wx := int64(d.xs.pos10[ox] - one*int32(x0))
				p00 := ((b*d.ih+y0)*d.iw + x0) * d.c
				p10 := ((b*d.ih+y1)*d.iw + x0) * d.c
				p01 := ((b*d.ih+y0)*d.iw + x1) * d.c
				p11 := ((b*d.ih+y1)*d.iw + x1) * d.c
				for c := 0; c < d.c; c++ {
					v := int64(x[p00+c])*(one-wy)*(one-wx) + int64(x[p10+c])*wy*(one-wx) +
						int64(x[p01+c])*(one-wy)*wx + int64(x[p11+c])*wy*wx
					// Round half away from zero, then divide by 2^20 (truncating), as the
					// reference does without TFLITE_SINGLE_ROUNDING.
					r := int64(1 << 19)
					if v <= 0 {
						r = -r
					}
					y[o] = T((v + r) / (1 << 20))
					o++
				}
			}
		}
	}
}
