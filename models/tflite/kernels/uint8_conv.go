package kernels

import (
	"fmt"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// uint8 (asymmetric, TF1 quantization-aware) CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED
// with full TFLite's reference arithmetic (reference_ops::Conv, DepthwiseConv and
// FullyConnected for uint8; TFLite Micro has no uint8 kernels): per-tensor scales, weights
// with their own zero point, acc = Σ (w - w_zp)(x - x_zp) + bias in int32, rescaled by
// MultiplyByQuantizedMultiplier(in_scale × w_scale / out_scale), plus the output zero point,
// clamped to the fused activation. These are plain loops over weights with the zero point
// folded in at Prepare and, for CONV_2D and FULLY_CONNECTED, each pixel's or row's inputs
// gathered with theirs (taps outside the image as 0, which adds nothing, as the reference's
// skipped taps): int32 sums wrap, so the order is free and the result exact. The fast paths
// are int8's.
//
// They wrap the kernels registered for the same op codes (wrapDType), so the float, int8 and
// int16 paths and their files stay untouched.

func init() {
	registerWrapper(func(r *Resolver) {
		wrapDType(r, schema.OpConv2D, tensor.Uint8, prepareConvU8)
		wrapDType(r, schema.OpDepthwiseConv2D, tensor.Uint8, prepareDepthwiseU8)
		wrapDType(r, schema.OpFullyConnected, tensor.Uint8, prepareFCU8)
	})
}

// u8Weights holds what the three uint8 weighted ops share: offsets, the output multiplier and
// the activation bounds.
type u8Weights struct {
	inOff, wOff, outOff int32
	w                   []int32 // the weights plus wOff, in the filter's layout
	mult                int32
	shift               int
	qMin, qMax          int32
}

// prepareU8Weights checks the dtypes and per-tensor quantization of a uint8 weighted op and
// computes its requantization as GetQuantizedConvolutionMultipler does (double products of the
// float32 scales).
func prepareU8Weights(in, w, bias, out *tensor.Tensor, act schema.Activation, nBias int) (u8Weights, error) {
	var p u8Weights
	if w.DType() != tensor.Uint8 || out.DType() != tensor.Uint8 {
		return p, fmt.Errorf("uint8 input %q with %s weights %q and %s output %q, want uint8 (hybrid and mixed types are not supported)", in.Name(), w.DType(), w.Name(), out.DType(), out.Name())
	}
	if !w.Constant() {
		return p, fmt.Errorf("weights %q must be constant", w.Name())
	}
	is, iz, err := perTensor(in)
	if err != nil {
		return p, err
	}
	ws, wz, err := perTensor(w)
	if err != nil {
		return p, err
	}
	os, oz, err := perTensor(out)
	if err != nil {
		return p, err
	}
	if is <= 0 || ws <= 0 || os <= 0 {
		return p, fmt.Errorf("scales %g, %g, %g, want positive", is, ws, os)
	}
	if bias != nil {
		if bias.DType() != tensor.Int32 || bias.NumElements() != nBias || !bias.Constant() {
			return p, fmt.Errorf("bias %q is %s with %d elements, want constant int32 with %d", bias.Name(), bias.DType(), bias.NumElements(), nBias)
		}
	}
	m := float64(is) * float64(ws) / float64(os)
	p.mult, p.shift = QuantizeMultiplier(m)
	if p.shift > 30 {
		return p, fmt.Errorf("effective scale %g too large", m)
	}
	p.inOff, p.wOff, p.outOff = -iz, -wz, oz
	p.w = make([]int32, w.NumElements())
	for i, v := range w.Uint8() {
		p.w[i] = int32(v) + p.wOff
	}
	p.qMin, p.qMax, err = quantActivationRange(act, out)
	return p, err
}

// requant is the reference epilogue: bias added, rescaled, output zero point, clamp.
func (p *u8Weights) requant(acc int32, bias []int32, oc int) uint8 {
	if bias != nil {
		acc += bias[oc]
	}
	v := MultiplyByQuantizedMultiplier(acc, p.mult, p.shift) + p.outOff
	return uint8(min(max(v, p.qMin), p.qMax))
}

type convU8 struct {
	g     convGeom
	p     u8Weights
	dw    bool
	patch int // scratch handle: one output pixel's input taps, as int32 (CONV_2D)
}

func prepareConvU8(n *tflite.Node) error      { return prepareConvLikeU8(n, false) }
func prepareDepthwiseU8(n *tflite.Node) error { return prepareConvLikeU8(n, true) }

// prepareConvLikeU8 checks a uint8 CONV_2D (filter [OC,FH,FW,C]) or DEPTHWISE_CONV_2D (filter
// [1,FH,FW,C*M]); the geometry is the int8 kernels' (convGeom.spatial).
func prepareConvLikeU8(n *tflite.Node, dw bool) error {
	if err := n.CheckIO(2, 3, 1); err != nil {
		return err
	}
	in, w, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Output(0)
	var (
		pad                          schema.Padding
		strideH, strideW, dilH, dilW int
		act                          schema.Activation
		depthMul                     int
	)
	switch o := n.Options.(type) {
	case *tflite.Conv2DOptions:
		pad, strideH, strideW, dilH, dilW, act = o.Padding, o.StrideH, o.StrideW, o.DilationH, o.DilationW, o.Activation
	case *tflite.DepthwiseConv2DOptions:
		pad, strideH, strideW, dilH, dilW, act = o.Padding, o.StrideH, o.StrideW, o.DilationH, o.DilationW, o.Activation
		depthMul = o.DepthMultiplier
	default:
		return fmt.Errorf("missing convolution options")
	}
	if err := convRank4(in, w, out); err != nil {
		return err
	}
	if err := checkStrides(strideH, strideW, dilH, dilW); err != nil {
		return err
	}
	d := &convU8{dw: dw, g: convGeom{batches: in.Dim(0), inH: in.Dim(1), inW: in.Dim(2), inC: in.Dim(3),
		outC: w.Dim(0), fH: w.Dim(1), fW: w.Dim(2),
		strideH: strideH, strideW: strideW, dilH: dilH, dilW: dilW}}
	if dw {
		d.g.outC = w.Dim(3)
		if w.Dim(0) != 1 || d.g.outC%d.g.inC != 0 {
			return fmt.Errorf("filter %q has shape %v, want [1 FH FW C*M] for %d input channels", w.Name(), w.Shape(), d.g.inC)
		}
		d.g.depthMul = d.g.outC / d.g.inC
		if depthMul > 0 && depthMul != d.g.depthMul {
			return fmt.Errorf("depth_multiplier %d, but filter %q has %d channels for %d input channels", depthMul, w.Name(), d.g.outC, d.g.inC)
		}
	} else if w.Dim(3) != d.g.inC {
		return fmt.Errorf("filter %q has %d input channels, input %q has %d", w.Name(), w.Dim(3), in.Name(), d.g.inC)
	}
	if err := d.g.spatial(pad, out); err != nil {
		return err
	}
	var err error
	if d.p, err = prepareU8Weights(in, w, bias, out, act, d.g.outC); err != nil {
		return err
	}
	if !dw {
		if d.patch, err = n.RequestScratch(4 * d.g.fH * d.g.fW * d.g.inC); err != nil {
			return err
		}
	}
	n.Data = d
	return nil
}

// evalWrapped is reference_ops::Conv / DepthwiseConv for uint8.
func (d *convU8) evalWrapped(n *tflite.Node) error {
	g, p := &d.g, &d.p
	x, y := n.Input(0).Uint8(), n.Output(0).Uint8()
	var bias []int32
	if b := n.Input(2); b != nil {
		bias = b.Int32()
	}
	k := g.fH * g.fW * g.inC
	var patch []int32
	if !d.dw {
		patch = int32s(n.Scratch(d.patch), k)
	}
	for bt := 0; bt < g.batches; bt++ {
		for oy := 0; oy < g.outH; oy++ {
			for ox := 0; ox < g.outW; ox++ {
				iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
				yo := ((bt*g.outH+oy)*g.outW + ox) * g.outC
				if d.dw {
					d.depthwisePixel(x, y[yo:yo+g.outC], bias, bt, iy0, ix0)
					continue
				}
				d.gather(x, patch, bt, iy0, ix0)
				for oc := 0; oc < g.outC; oc++ {
					w := p.w[oc*k : (oc+1)*k]
					var acc int32
					for i, v := range patch {
						acc += w[i] * v
					}
					y[yo+oc] = p.requant(acc, bias, oc)
				}
			}
		}
	}
	return nil
}

// gather writes the input taps of one output pixel, plus the input offset, in the filter's
// [FH][FW][C] order; taps outside the image are 0.
func (d *convU8) gather(x []uint8, patch []int32, bt, iy0, ix0 int) {
	g := &d.g
	i := 0
	for fy := 0; fy < g.fH; fy++ {
		iy := iy0 + fy*g.dilH
		for fx := 0; fx < g.fW; fx++ {
			ix := ix0 + fx*g.dilW
			dst := patch[i : i+g.inC]
			i += g.inC
			if iy < 0 || iy >= g.inH || ix < 0 || ix >= g.inW {
				clear(dst)
				continue
			}
			src := x[((bt*g.inH+iy)*g.inW+ix)*g.inC:][:g.inC]
			for c, v := range src {
				dst[c] = int32(v) + d.p.inOff
			}
		}
	}
}

// depthwisePixel computes one output pixel of DEPTHWISE_CONV_2D: output channel oc reads input
// channel oc / depth_multiplier; taps outside the image are skipped.
func (d *convU8) depthwisePixel(x, y []uint8, bias []int32, bt, iy0, ix0 int) {
	g, p := &d.g, &d.p
	for oc := range y {
		var acc int32
		for fy := 0; fy < g.fH; fy++ {
			iy := iy0 + fy*g.dilH
			if iy < 0 || iy >= g.inH {
				continue
			}
			for fx := 0; fx < g.fW; fx++ {
				ix := ix0 + fx*g.dilW
				if ix < 0 || ix >= g.inW {
					continue
				}
				xv := int32(x[((bt*g.inH+iy)*g.inW+ix)*g.inC+oc/g.depthMul]) + p.inOff
				acc += p.w[(fy*g.fW+fx)*g.outC+oc] * xv
			}
		}
		y[oc] = p.requant(acc, bias, oc)
	}
}

type fcU8 struct {
	batches, depth, units int
	p                     u8Weights
	row                   int // scratch handle: one input row plus the input offset, as int32
}

// prepareFCU8 checks a uint8 FULLY_CONNECTED: input flattened to batches × depth, weights
// [units, depth], optional int32 bias, output batches × units (TFLite's shapes, as prepareFC).
func prepareFCU8(n *tflite.Node) error {
	if err := n.CheckIO(2, 3, 1); err != nil {
		return err
	}
	in, w, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Output(0)
	opts, _ := n.Options.(*tflite.FullyConnectedOptions)
	if opts == nil {
		opts = &tflite.FullyConnectedOptions{}
	}
	if opts.WeightsFormat != 0 {
		return fmt.Errorf("weights format %d not supported", opts.WeightsFormat)
	}
	if w.Rank() != 2 {
		return fmt.Errorf("filter %q has rank %d, want 2", w.Name(), w.Rank())
	}
	d := &fcU8{units: w.Dim(0), depth: w.Dim(1)}
	if d.depth == 0 || in.NumElements()%d.depth != 0 {
		return fmt.Errorf("input %q of %d elements is not a multiple of filter depth %d", in.Name(), in.NumElements(), d.depth)
	}
	d.batches = in.NumElements() / d.depth
	if out.NumElements() != d.batches*d.units {
		return fmt.Errorf("output %q has %d elements, want %d x %d", out.Name(), out.NumElements(), d.batches, d.units)
	}
	var err error
	if d.p, err = prepareU8Weights(in, w, bias, out, opts.Activation, d.units); err != nil {
		return err
	}
	if d.row, err = n.RequestScratch(4 * d.depth); err != nil {
		return err
	}
	n.Data = d
	return nil
}

// evalWrapped is reference_ops::FullyConnected for uint8.
func (d *fcU8) evalWrapped(n *tflite.Node) error {
	x, y := n.Input(0).Uint8(), n.Output(0).Uint8()
	var bias []int32
	if b := n.Input(2); b != nil {
		bias = b.Int32()
	}
	row := int32s(n.Scratch(d.row), d.depth)
	for b := 0; b < d.batches; b++ {
		for i, v := range x[b*d.depth : (b+1)*d.depth] {
			row[i] = int32(v) + d.p.inOff
		}
		for u := 0; u < d.units; u++ {
			wr := d.p.w[u*d.depth : (u+1)*d.depth]
			var acc int32
			for i, v := range row {
				acc += wr[i] * v
			}
			y[b*d.units+u] = d.p.requant(acc, bias, u)
		}
	}
	return nil
}
