package kernels

import (
	"fmt"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Convolutions: CONV_2D, DEPTHWISE_CONV_2D and TRANSPOSE_CONV in float32, int8 (per-tensor or
// per-channel int8 weights, int32 bias) and int16 activations with int8 weights (the 16x8
// scheme, int64 or int32 bias), all NHWC. The integer arithmetic is that of TFLite's
// reference_integer_ops::ConvPerChannel, DepthwiseConvPerChannel and TransposeConv; the int8
// CONV_2D runs as im2col plus a blocked GEMM over weights packed in Prepare, and the int8
// DEPTHWISE_CONV_2D with the input offset folded into the bias (dwInt8), both giving the same
// int32 accumulators, on a pure-Go or an AVX2 path (see conv_gemm.go).

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpConv2D, 1, 8, withHybrid(tflite.KernelFuncs{PrepareFn: prepareConv, EvalFn: evalConv}, isHybrid(1), prepareConvHybrid, evalConvHybrid))
		r.AddBuiltin(schema.OpDepthwiseConv2D, 1, 7, withHybrid(tflite.KernelFuncs{PrepareFn: prepareDepthwise, EvalFn: evalDepthwise}, isHybrid(1), prepareDepthwiseHybrid, evalConvHybrid))
		r.AddBuiltin(schema.OpTransposeConv, 1, 5, tflite.KernelFuncs{PrepareFn: prepareTransposeConv, EvalFn: evalTransposeConv})
	})
}

// convGeom is the geometry shared by the convolution kernels (NHWC tensors, TFLite's
// ConvParams).
type convGeom struct {
	batches, inH, inW, inC int
	outH, outW, outC       int
	fH, fW                 int
	strideH, strideW       int
	dilH, dilW             int
	padH, padW             int
	depthMul               int // DEPTHWISE_CONV_2D only
	fMin, fMax             float32
	f32simd                bool      // float32: the SIMD form (gemm_f32_simd.go), chosen at Prepare
	f32tile                bool      // float32 CONV_2D: the broadcast tiles (conv_f32.go), chosen at Prepare
	f32wino                bool      // float32 3x3 CONV_2D: Winograd F(2x2,3x3) (conv_f32_winograd.go), chosen at Prepare
	dwPackF32              []float32 // float32 depthwise on the SIMD path: packDWF32's layout
	inOff, outOff          int32     // -input zero point, +output zero point (int8)
	qMin, qMax             int32     // fused activation range in output units
	mult                   []int32
	shift                  []int
	dtype                  tensor.DType // input dtype: Float32, Int8 or Int16
	bias64                 bool         // int16 kernels: bias is int64 (else int32)
	gemm                   *gemmInt8    // int8 CONV_2D fast path
	dw                     *dwInt8      // int8 DEPTHWISE_CONV_2D fast path
	accScratch             int          // scratch handle: int32/int64 accumulators
	colScratch             int          // scratch handle: im2col rows
}

// computeOutSize is TFLite's ComputeOutSize.
func computeOutSize(p schema.Padding, in, filter, stride, dil int) int {
	eff := (filter-1)*dil + 1
	if p == schema.PaddingSame {
		return (in + stride - 1) / stride
	}
	return (in + stride - eff) / stride
}

// computePadding is TFLite's ComputePaddingWithOffset without the offset, which the reference
// kernels do not use: half the total padding, rounded down, never negative.
func computePadding(stride, dil, in, filter, out int) int {
	eff := (filter-1)*dil + 1
	total := (out-1)*stride + eff - in
	return max(total, 0) / 2
}

// checkStrides rejects the zero or negative strides and dilations that would make the output
// size formula divide by zero or walk backwards (CVE-2020-15212 class).
func checkStrides(strideH, strideW, dilH, dilW int) error {
	if strideH <= 0 || strideW <= 0 {
		return fmt.Errorf("stride %dx%d, want positive", strideH, strideW)
	}
	if dilH <= 0 || dilW <= 0 {
		return fmt.Errorf("dilation %dx%d, want positive", dilH, dilW)
	}
	return nil
}

func rank4(t *tensor.Tensor, what string) error {
	if t.Rank() != 4 {
		return fmt.Errorf("%s %q has rank %d, want 4 (NHWC)", what, t.Name(), t.Rank())
	}
	for _, d := range t.Shape() {
		if d <= 0 {
			return fmt.Errorf("%s %q has shape %v, want positive dimensions", what, t.Name(), t.Shape())
		}
	}
	return nil
}

func checkOutShape(out *tensor.Tensor, n, h, w, c int) error {
	s := out.Shape()
	if s[0] != n || s[1] != h || s[2] != w || s[3] != c {
		return fmt.Errorf("output %q has shape %v, want [%d %d %d %d]", out.Name(), s, n, h, w, c)
	}
	return nil
}

// prepareQuant fills the requantization parameters shared by the convolutions, as TFLite
// Micro's PopulateConvolutionQuantizationParams: one multiplier per output channel,
// input_scale * filter_scale / output_scale computed in double; a per-tensor filter scale is
// broadcast to every channel. chDim is the filter's output-channel dimension.
func (g *convGeom) prepareQuant(op string, in, filter, bias, out *tensor.Tensor, act schema.Activation, chDim, nch int) error {
	if in.DType() != out.DType() {
		return fmt.Errorf("input %q is %s but output %q is %s", in.Name(), in.DType(), out.Name(), out.DType())
	}
	if filter.DType() != tensor.Int8 {
		return fmt.Errorf("filter %q is %s, want int8 for %s input", filter.Name(), filter.DType(), in.DType())
	}
	g.dtype = in.DType()
	inScale, inZP, err := perTensor(in)
	if err != nil {
		return err
	}
	outScale, outZP, err := perTensor(out)
	if err != nil {
		return err
	}
	if inScale <= 0 || outScale <= 0 {
		return fmt.Errorf("input scale %g, output scale %g, want positive", inScale, outScale)
	}
	if g.dtype == tensor.Int16 && (inZP != 0 || outZP != 0) {
		// The 16x8 kernels have no zero-point terms: TFLite requires symmetric int16.
		return fmt.Errorf("int16 input %q zero point %d, output %q zero point %d, want 0", in.Name(), inZP, out.Name(), outZP)
	}
	fq := filter.Quant()
	if fq == nil || len(fq.Scale) == 0 {
		return fmt.Errorf("filter %q is not quantized", filter.Name())
	}
	if len(fq.Scale) != 1 && (len(fq.Scale) != nch || fq.Dim != chDim) {
		return fmt.Errorf("filter %q: %d scales on dimension %d, want 1 or %d on dimension %d", filter.Name(), len(fq.Scale), fq.Dim, nch, chDim)
	}
	for _, zp := range fq.ZeroPoint {
		if zp != 0 {
			// The reference kernels have no filter offset: TFLite requires symmetric weights.
			return fmt.Errorf("filter %q has zero point %d, want 0 (symmetric weights)", filter.Name(), zp)
		}
	}
	if bias != nil {
		if bias.NumElements() != nch {
			return fmt.Errorf("bias %q has %d elements, want %d", bias.Name(), bias.NumElements(), nch)
		}
		switch {
		case g.dtype == tensor.Int8 && bias.DType() == tensor.Int32:
		case g.dtype == tensor.Int16 && bias.DType() == tensor.Int64:
			g.bias64 = true
		case g.dtype == tensor.Int16 && bias.DType() == tensor.Int32:
		default:
			return fmt.Errorf("bias %q is %s, not supported with %s input", bias.Name(), bias.DType(), in.DType())
		}
	}
	g.inOff, g.outOff = -inZP, outZP
	g.mult, g.shift = make([]int32, nch), make([]int, nch)
	for c := 0; c < nch; c++ {
		fs := fq.Scale[0]
		if len(fq.Scale) > 1 {
			fs = fq.Scale[c]
		}
		if fs <= 0 {
			return fmt.Errorf("filter %q scale %g, want positive", filter.Name(), fs)
		}
		m := float64(inScale) * float64(fs) / float64(outScale)
		g.mult[c], g.shift[c] = QuantizeMultiplier(m)
		if g.shift[c] > 7 && g.dtype == tensor.Int16 {
			// MultiplyByQuantizedMultiplier(int64) takes shifts up to +7.
			return fmt.Errorf("effective scale %g of channel %d too large", m, c)
		}
		if g.shift[c] > 30 {
			return fmt.Errorf("effective scale %g of channel %d too large", m, c)
		}
	}
	g.qMin, g.qMax, err = quantActivationRange(act, out)
	return err
}

// prepareTypes checks the dtypes and fills the float or quantized parameters.
func (g *convGeom) prepareTypes(op string, in, filter, bias, out *tensor.Tensor, act schema.Activation, chDim, nch int) error {
	switch in.DType() {
	case tensor.Float32:
		if filter.DType() != tensor.Float32 || out.DType() != tensor.Float32 {
			return fmt.Errorf("input float32, filter %s, output %s, want float32", filter.DType(), out.DType())
		}
		if bias != nil && (bias.DType() != tensor.Float32 || bias.NumElements() != nch) {
			return fmt.Errorf("bias %q is %s with %d elements, want float32 with %d", bias.Name(), bias.DType(), bias.NumElements(), nch)
		}
		g.dtype = tensor.Float32
		var err error
		g.fMin, g.fMax, err = floatActivationRange(act)
		return err
	case tensor.Int8, tensor.Int16:
		return g.prepareQuant(op, in, filter, bias, out, act, chDim, nch)
	}
	return fmt.Errorf("input %q is %s, want float32, int8 or int16", in.Name(), in.DType())
}

// convRank4 requires a convolution's input, filter and output to be 4-D.
func convRank4(in, filter, out *tensor.Tensor) error {
	for _, c := range []struct {
		t    *tensor.Tensor
		what string
	}{{in, "input"}, {filter, "filter"}, {out, "output"}} {
		if err := rank4(c.t, c.what); err != nil {
			return err
		}
	}
	return nil
}

// spatial computes the output size and padding of CONV_2D and DEPTHWISE_CONV_2D from g's
// input, filter, strides and dilations, and checks out's shape against them.
func (g *convGeom) spatial(p schema.Padding, out *tensor.Tensor) error {
	g.outH = computeOutSize(p, g.inH, g.fH, g.strideH, g.dilH)
	g.outW = computeOutSize(p, g.inW, g.fW, g.strideW, g.dilW)
	if g.outH <= 0 || g.outW <= 0 {
		return fmt.Errorf("filter %dx%d (dilation %dx%d) larger than input %dx%d", g.fH, g.fW, g.dilH, g.dilW, g.inH, g.inW)
	}
	if err := checkOutShape(out, g.batches, g.outH, g.outW, g.outC); err != nil {
		return err
	}
	g.padH = computePadding(g.strideH, g.dilH, g.inH, g.fH, g.outH)
	g.padW = computePadding(g.strideW, g.dilW, g.inW, g.fW, g.outW)
	return nil
}

// conv2DGeom checks what every CONV_2D variant (integer, float, hybrid, uint8) shares: inputs
// and outputs, ranks, strides, filter [OC,FH,FW,C] against the input's channels, and the
// output's spatial size under the padding. The dtype is left for each variant to set.
func conv2DGeom(n *tflite.Node) (*convGeom, *tflite.Conv2DOptions, error) {
	if err := n.CheckIO(2, 3, 1); err != nil {
		return nil, nil, err
	}
	in, filter, out := n.Input(0), n.Input(1), n.Output(0)
	o, ok := n.Options.(*tflite.Conv2DOptions)
	if !ok {
		return nil, nil, fmt.Errorf("missing Conv2DOptions")
	}
	if err := convRank4(in, filter, out); err != nil {
		return nil, nil, err
	}
	if err := checkStrides(o.StrideH, o.StrideW, o.DilationH, o.DilationW); err != nil {
		return nil, nil, err
	}
	g := &convGeom{batches: in.Dim(0), inH: in.Dim(1), inW: in.Dim(2), inC: in.Dim(3),
		outC: filter.Dim(0), fH: filter.Dim(1), fW: filter.Dim(2),
		strideH: o.StrideH, strideW: o.StrideW, dilH: o.DilationH, dilW: o.DilationW}
	if filter.Dim(3) != g.inC {
		return nil, nil, fmt.Errorf("filter %q has %d input channels, input %q has %d (grouped convolution not supported)", filter.Name(), filter.Dim(3), in.Name(), g.inC)
	}
	if err := g.spatial(o.Padding, out); err != nil {
		return nil, nil, err
	}
	return g, o, nil
}

// prepareConv checks CONV_2D: input [N,H,W,C], filter [OC,FH,FW,C], optional bias [OC],
// output [N,OH,OW,OC].
func prepareConv(n *tflite.Node) error {
	g, o, err := conv2DGeom(n)
	if err != nil {
		return err
	}
	in, filter, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Output(0)
	if err := g.prepareTypes("CONV_2D", in, filter, bias, out, o.Activation, 0, g.outC); err != nil {
		return err
	}
	switch g.dtype {
	case tensor.Float32:
		if err := g.prepareConvF32(n); err != nil {
			return err
		}
	case tensor.Int8:
		if !filter.Constant() || (bias != nil && !bias.Constant()) {
			return fmt.Errorf("filter %q and bias must be constant for int8", filter.Name())
		}
		if err := g.prepareGemm(n, filter.Int8(), bias.Int32()); err != nil {
			return err
		}
		// The GEMM holds the weights packed and the bias folded: Eval reads neither.
		n.Packed(1)
		n.Packed(2)
	case tensor.Int16:
		h, err := n.RequestScratch(8 * g.outC)
		if err != nil {
			return err
		}
		g.accScratch = h
	}
	n.Data = g
	return nil
}

func evalConv(n *tflite.Node) error {
	g := n.Data.(*convGeom)
	in, filter, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Output(0)
	switch g.dtype {
	case tensor.Float32:
		g.convF32(g.colF32(n), in.Float32(), filter.Float32(), bias.Float32(), out.Float32())
	case tensor.Int8:
		g.convInt8(n, in.Int8(), out.Int8())
	case tensor.Int16:
		acc := int64s(n.Scratch(g.accScratch), g.outC)
		convInt16(g, in.Int16(), filter.Int8(), bias, out.Int16(), acc)
	}
	return nil
}

// convFloat is reference_ops::Conv for float32: taps outside the input are skipped; the bias
// is added after the sum, then the fused activation clamps.
func convFloat(g *convGeom, x, w, b, y []float32) {
	for bt := 0; bt < g.batches; bt++ {
		for oy := 0; oy < g.outH; oy++ {
			for ox := 0; ox < g.outW; ox++ {
				iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
				yo := ((bt*g.outH+oy)*g.outW + ox) * g.outC
				for oc := 0; oc < g.outC; oc++ {
					var acc float32
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
							xi := ((bt*g.inH+iy)*g.inW + ix) * g.inC
							wi := ((oc*g.fH+fy)*g.fW + fx) * g.inC
							xs, ws := x[xi:xi+g.inC], w[wi:wi+g.inC]
							for c, v := range xs {
								acc += v * ws[c]
							}
						}
					}
					if b != nil {
						acc += b[oc]
					}
					y[yo+oc] = clampF(acc, g.fMin, g.fMax)
				}
			}
		}
	}
}

// convInt16 is reference_integer_ops::ConvPerChannel for int16 input and int8 weights: int64
// accumulation without offsets (both zero points are 0), 64-bit bias, then the 64-bit
// MultiplyByQuantizedMultiplier and the activation clamp.
func convInt16(g *convGeom, x []int16, w []int8, bias *tensor.Tensor, y []int16, acc []int64) {
	b64, b32 := bias.Int64(), bias.Int32()
	for bt := 0; bt < g.batches; bt++ {
		for oy := 0; oy < g.outH; oy++ {
			for ox := 0; ox < g.outW; ox++ {
				iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
				for oc := range acc {
					acc[oc] = 0
				}
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
						xi := ((bt*g.inH+iy)*g.inW + ix) * g.inC
						xs := x[xi : xi+g.inC]
						for oc := range acc {
							wi := ((oc*g.fH+fy)*g.fW + fx) * g.inC
							ws := w[wi : wi+g.inC]
							var s int64
							for c, v := range xs {
								s += int64(v) * int64(ws[c])
							}
							acc[oc] += s
						}
					}
				}
				yo := ((bt*g.outH+oy)*g.outW + ox) * g.outC
				ys := y[yo : yo+g.outC]
				for oc, a := range acc {
					ys[oc] = int16(g.requant64(a, oc, b64, b32))
				}
			}
		}
	}
}

// requant64 adds the bias and rescales an accumulator as the 16x8 reference kernels do (int64
// accumulator with an int64 bias or none, int32 with an int32 bias); the result is clamped to
// the activation range.
func (g *convGeom) requant64(a int64, oc int, b64 []int64, b32 []int32) int32 {
	var v int32
	if b32 != nil {
		// With an int32 bias the reference kernel is instantiated with an int32 accumulator
		// (ConvPerChannel<int32_t>), so the sum wraps to 32 bits and the 32-bit
		// MultiplyByQuantizedMultiplier rescales it.
		v = MultiplyByQuantizedMultiplier(int32(a)+b32[oc], g.mult[oc], g.shift[oc])
	} else {
		if b64 != nil {
			a += b64[oc]
		}
		v = MultiplyByQuantizedMultiplier64(a, g.mult[oc], g.shift[oc])
	}
	return min(max(v, g.qMin), g.qMax)
}

// MultiplyByQuantizedMultiplier64 is TFLite's MultiplyByQuantizedMultiplier for an int64
// accumulator (common.h, used by the 16x8 kernels): the multiplier is first reduced to 16 bits
// with rounding, then one rounding right shift by 15-shift; the result is truncated to int32
// as the C++ static_cast does.
func MultiplyByQuantizedMultiplier64(x int64, q int32, shift int) int32 {
	reduced := int64(0x7FFF)
	if q < 0x7FFF0000 {
		reduced = (int64(q) + 1<<15) >> 16
	}
	total := uint(15 - shift)
	r := (x*reduced + int64(1)<<(total-1)) >> total
	return int32(r)
}

// prepareDepthwise checks DEPTHWISE_CONV_2D: input [N,H,W,C], filter [1,FH,FW,C*M], optional
// bias [C*M], output [N,OH,OW,C*M]; output channel oc reads input channel oc/M.
func prepareDepthwise(n *tflite.Node) error {
	if err := n.CheckIO(2, 3, 1); err != nil {
		return err
	}
	in, filter, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Output(0)
	o, ok := n.Options.(*tflite.DepthwiseConv2DOptions)
	if !ok {
		return fmt.Errorf("missing DepthwiseConv2DOptions")
	}
	if err := convRank4(in, filter, out); err != nil {
		return err
	}
	if err := checkStrides(o.StrideH, o.StrideW, o.DilationH, o.DilationW); err != nil {
		return err
	}
	g := &convGeom{batches: in.Dim(0), inH: in.Dim(1), inW: in.Dim(2), inC: in.Dim(3),
		outC: filter.Dim(3), fH: filter.Dim(1), fW: filter.Dim(2),
		strideH: o.StrideH, strideW: o.StrideW, dilH: o.DilationH, dilW: o.DilationW}
	if filter.Dim(0) != 1 {
		return fmt.Errorf("filter %q has shape %v, want [1 FH FW C*M]", filter.Name(), filter.Shape())
	}
	if g.outC%g.inC != 0 {
		return fmt.Errorf("filter %q has %d channels, not a multiple of input %q's %d", filter.Name(), g.outC, in.Name(), g.inC)
	}
	g.depthMul = g.outC / g.inC
	if o.DepthMultiplier > 0 && o.DepthMultiplier != g.depthMul {
		return fmt.Errorf("depth_multiplier %d, but filter %q has %d channels for %d input channels", o.DepthMultiplier, filter.Name(), g.outC, g.inC)
	}
	if err := g.spatial(o.Padding, out); err != nil {
		return err
	}
	if err := g.prepareTypes("DEPTHWISE_CONV_2D", in, filter, bias, out, o.Activation, 3, g.outC); err != nil {
		return err
	}
	if g.dtype == tensor.Float32 {
		g.f32simd = useF32SIMDDepthwise(g.outC, g.depthMul)
		if g.f32simd && g.outC%8 == 0 && g.fH*g.fW <= maxDWTaps && filter.Constant() && (bias == nil || bias.Constant()) {
			var b []float32
			if bias != nil {
				b = bias.Float32()
			}
			g.dwPackF32 = packDWF32(filter.Float32(), b, g.fH*g.fW, g.outC)
		}
	}
	if g.dtype != tensor.Float32 {
		// One accumulator row per worker: the int8 fast kernels split rows across them.
		h, err := n.RequestWorkerScratch(8 * g.outC)
		if err != nil {
			return err
		}
		g.accScratch = h
	}
	if g.dtype == tensor.Int8 {
		var err error
		if g.dw, err = g.prepareDepthwiseInt8(n, filter.Int8(), bias.Int32(), filter.Constant() && (bias == nil || bias.Constant())); err != nil {
			return err
		}
		if g.dw != nil {
			// The fast kernels read their own copies (dwInt8), never the tensors.
			n.Packed(1)
			n.Packed(2)
		}
	}
	n.Data = g
	return nil
}

func evalDepthwise(n *tflite.Node) error {
	g := n.Data.(*convGeom)
	in, filter, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Output(0)
	switch g.dtype {
	case tensor.Float32:
		depthwiseF32(g, in.Float32(), filter.Float32(), bias.Float32(), out.Float32(), g.f32simd)
	case tensor.Int8:
		var exp []int8
		if g.dw != nil && g.dw.expand {
			exp = int8s(n.Scratch(g.dw.expHandle), g.inH*g.inW*g.outC)
		}
		depthwiseInt8(n, g, in.Int8(), filter.Int8(), bias.Int32(), out.Int8(), exp)
	case tensor.Int16:
		depthwiseInt16(g, in.Int16(), filter.Int8(), bias, out.Int16(), int64s(n.WorkerScratch(g.accScratch, 0), g.outC))
	}
	return nil
}

// depthwiseFloat is reference_ops::DepthwiseConv for float32.
func depthwiseFloat(g *convGeom, x, w, b, y []float32) {
	m := g.depthMul
	for bt := 0; bt < g.batches; bt++ {
		for oy := 0; oy < g.outH; oy++ {
			for ox := 0; ox < g.outW; ox++ {
				iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
				yo := ((bt*g.outH+oy)*g.outW + ox) * g.outC
				for oc := 0; oc < g.outC; oc++ {
					ic := oc / m
					var acc float32
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
							acc += x[((bt*g.inH+iy)*g.inW+ix)*g.inC+ic] * w[(fy*g.fW+fx)*g.outC+oc]
						}
					}
					if b != nil {
						acc += b[oc]
					}
					y[yo+oc] = clampF(acc, g.fMin, g.fMax)
				}
			}
		}
	}
}

// dwInt8 is the per-node state of the int8 DEPTHWISE_CONV_2D fast path.
// It sums w * x with the input offset folded into the bias, Σ_taps w*input_offset, as
// conv_gemm.go does; a tap outside the input reads padRow, C copies of the input zero point,
// so its x + input_offset is 0 exactly as the reference's skipped tap. The int32 sum is the
// reference's (modulo 2^32, as its int32 accumulator wraps).
type dwInt8 struct {
	w      []int8    // filter as [FH*FW][C], the model's layout (not on the SIMD path)
	rq     chanQuant // per channel: bias + input_offset * Σ_taps w, multiplier, shift
	padRow []int8    // C times the input zero point (C >= the input's channels)

	// expand: a depth multiplier above 1 runs as multiplier 1 over a copy of the input with
	// each channel repeated M times (in the scratch buffer expHandle), so the fast kernels
	// serve it too.
	expand    bool
	expHandle int

	// The SIMD path (3x3, multiplier 1 after expansion, channels a multiple of 8): weights
	// held as [C/8][9 taps][8]int8 and widened to int32 into the worker scratch wHandle, and
	// a quantTable of the channels written from rq into the worker scratch qHandle, by each
	// worker at its first row of each Invoke (as gemmInt8 does). The row kernel multiplies
	// int32 lanes (VPMULLD, MLA): widening the weights there instead, per tap and pixel, made
	// it 4-12 % slower; once per Invoke it costs about one instruction per 8 weights. Each
	// worker makes its own copy: one copy, made by the caller and read by the others, came to
	// them from the caller's cache at every layer (docs/performance.md, "Threads, round 4").
	simd       bool
	w8         []int8
	wHandle    int
	qHandle    int
	oxLo, oxHi int // output columns whose taps are all inside the input horizontally

	filled workerFlags // which workers have made their tables in this Invoke
	job    dwJob       // the batch in progress, for RunPart
}

// maxExpandBytes bounds the expanded input copy of a depthwise convolution with a depth
// multiplier above 1; larger layers run tap by tap.
const maxExpandBytes = 1 << 20

// prepareDepthwiseInt8 builds the fast path's constants; it returns nil when the filter is not
// constant (the reference loop then runs).
func (g *convGeom) prepareDepthwiseInt8(n *tflite.Node, w []int8, b []int32, filterConst bool) (*dwInt8, error) {
	if !filterConst {
		return nil, nil
	}
	c, taps := g.outC, g.fH*g.fW
	d := &dwInt8{rq: newChanQuant(c), padRow: make([]int8, c)}
	sums := make([]int32, c)
	for i, v := range w[:taps*c] {
		sums[i%c] += int32(v)
	}
	for i := range d.padRow {
		d.padRow[i] = int8(-g.inOff)
	}
	for oc := range c {
		var bias int32
		if b != nil {
			bias = b[oc]
		}
		d.rq.set(oc, bias+g.inOff*sums[oc], g.mult[oc], g.shift[oc])
	}
	if g.depthMul > 1 && g.inH*g.inW*c <= maxExpandBytes {
		h, err := n.RequestScratch(g.inH * g.inW * c)
		if err != nil {
			return nil, err
		}
		d.expand, d.expHandle = true, h
	}
	// The fast kernels read rq only; the geometry's multipliers and shifts are not needed.
	g.mult, g.shift = nil, nil
	if !(useSIMD() && g.fH == 3 && g.fW == 3 && (g.depthMul == 1 || d.expand) && c%8 == 0) {
		d.w = append([]int8(nil), w[:taps*c]...)
		return d, nil
	}
	d.simd = true
	d.w8 = make([]int8, 9*c)
	for t := range 9 {
		for oc := range c {
			d.w8[(oc/8)*72+t*8+oc%8] = w[t*c+oc]
		}
	}
	h, err := n.RequestWorkerScratch(c / 8 * quantGroup * 4)
	if err != nil {
		return nil, err
	}
	d.qHandle = h
	if d.wHandle, err = n.RequestWorkerScratch(9 * c * 4); err != nil {
		return nil, err
	}
	d.filled = newWorkerFlags(n.Workers())
	inside := func(ox int) bool {
		ix0 := ox*g.strideW - g.padW
		return ix0 >= 0 && ix0+(g.fW-1)*g.dilW < g.inW
	}
	d.oxLo, d.oxHi = -1, -1
	for ox := 0; ox < g.outW; ox++ {
		if inside(ox) {
			if d.oxLo < 0 {
				d.oxLo = ox
			}
			d.oxHi = ox + 1
		}
	}
	return d, nil
}

// depthwiseInt8 is reference_integer_ops::DepthwiseConvPerChannel: acc = bias + Σ over the
// taps inside the input of w * (x + input_offset), then per-channel requantization, the
// output offset and the activation clamp. With constant weights it runs dwInt8's kernels
// (3x3 with depth multiplier 1 unrolled, others tap by tap), else the reference loop.
func depthwiseInt8(n *tflite.Node, g *convGeom, x, w []int8, b []int32, y []int8, exp []int8) {
	d := g.dw
	inSize := g.inH * g.inW * g.inC
	c, m := g.inC, g.depthMul // channels of a pixel of xb, and the multiplier left to apply
	if d != nil && d.simd {
		d.filled.reset()
	}
	for bt := 0; bt < g.batches; bt++ {
		xb := x[bt*inSize : (bt+1)*inSize]
		if d != nil && d.expand {
			expandChannels(xb, exp, g.depthMul)
			xb, c, m = exp, g.outC, 1
		}
		if d == nil {
			acc := int32s(n.WorkerScratch(g.accScratch, 0), g.outC)
			for oy := 0; oy < g.outH; oy++ {
				g.dwRowInt8(xb, c, m, bt, oy, x, w, b, nil, nil, y, acc)
			}
			continue
		}
		// The fast kernels split the output rows across the node's workers (dw_parallel.go).
		d.job = dwJob{g: g, n: n, xb: xb, c: c, m: m, bt: bt, y: y}
		if g.outH*g.outW*g.outC*g.fH*g.fW < minParallelMACs {
			for oy := range g.outH {
				d.job.RunPart(0, oy)
			}
		} else {
			n.Parallel(g.outH, &d.job)
		}
		d.job = dwJob{}
	}
}

// dwRowInt8 computes output row oy of batch bt; acc holds outC int32 of scratch, w32 and q
// are the SIMD path's widened weights and quantTable.
func (g *convGeom) dwRowInt8(xb []int8, c, m, bt, oy int, x, w []int8, b, w32, q []int32, y []int8, acc []int32) {
	d := g.dw
	var taps [9][]int8
	for ox := 0; ox < g.outW; ox++ {
		yo := ((bt*g.outH+oy)*g.outW + ox) * g.outC
		ys := y[yo : yo+g.outC]
		switch {
		case d == nil:
			g.dwPixelInt8(x, w, b, ys, acc, bt, oy, ox)
		case d.simd:
			// The pixels whose taps are all inside the input horizontally run as one
			// strip: each tap moves by stride*C per pixel (pad taps stay).
			npix := 1
			if ox == d.oxLo {
				npix = d.oxHi - d.oxLo
			}
			steps := g.dwTaps(xb, d.padRow, oy, ox, c, taps[:])
			if npix == 1 {
				steps = [9]int{}
			}
			dwRow3x3(&taps, &steps, npix, c, w32, q, y[yo:yo+npix*c])
			ox += npix - 1
		case g.fH == 3 && g.fW == 3 && m == 1:
			g.dwTaps(xb, d.padRow, oy, ox, c, taps[:])
			g.dwPixel3x3(d, &taps, ys)
		default:
			g.dwPixelTaps(d, xb, oy, ox, c, m, ys, acc)
		}
	}
}

// widen32Go sign-extends src into dst (of the same length).
func widen32Go(dst []int32, src []int8) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = int32(v)
	}
}

// expandChannels writes x with each channel repeated m times into e.
func expandChannels(x, e []int8, m int) {
	e = e[:len(x)*m]
	if m == 8 {
		// Common first layers (one input channel, eight filters): one 8-byte store per value,
		// into e viewed as words (scratch is 16-byte aligned) so that the loop has no bounds
		// checks: PutUint64 at e[i*8:] checked each one and took twice as long.
		e64 := uint64s(int8Bytes(e), len(x))
		for i, v := range x {
			e64[i] = uint64(uint8(v)) * 0x0101010101010101
		}
		return
	}
	for i, v := range x {
		r := e[i*m : i*m+m]
		for j := range r {
			r[j] = v
		}
	}
}

// dwTaps points taps[fy*FW+fx] at the input pixel under filter tap (fy, fx) of output pixel
// (oy, ox) (c channels per pixel; the slice runs to the end of x), or at pad when the tap is
// outside the input. steps[t] is how far tap t moves to the next output pixel of the row, 0
// for pad taps (only meaningful where every tap stays inside the input horizontally).
func (g *convGeom) dwTaps(x, pad []int8, oy, ox, c int, taps [][]int8) (steps [9]int) {
	iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
	t := 0
	for fy := 0; fy < g.fH; fy++ {
		iy := iy0 + fy*g.dilH
		for fx := 0; fx < g.fW; fx++ {
			ix := ix0 + fx*g.dilW
			if iy < 0 || iy >= g.inH || ix < 0 || ix >= g.inW {
				taps[t] = pad
			} else {
				taps[t] = x[(iy*g.inW+ix)*c:]
				if t < len(steps) {
					steps[t] = g.strideW * c
				}
			}
			t++
		}
	}
	return steps
}

// dwPixel3x3 is one output pixel of a 3x3 filter, taps unrolled, one channel at a time.
func (g *convGeom) dwPixel3x3(d *dwInt8, taps *[9][]int8, y []int8) {
	c := len(y)
	x0 := taps[0][:c]
	x1, x2, x3 := taps[1][:c], taps[2][:c], taps[3][:c]
	x4, x5, x6 := taps[4][:c], taps[5][:c], taps[6][:c]
	x7, x8 := taps[7][:c], taps[8][:c]
	w := d.w[:9*c]
	w0, w1, w2 := w[0:c], w[c:2*c], w[2*c:3*c]
	w3, w4, w5 := w[3*c:4*c], w[4*c:5*c], w[5*c:6*c]
	w6, w7, w8 := w[6*c:7*c], w[7*c:8*c], w[8*c:9*c]
	bias, mult, shift := d.rq.bias[:c], d.rq.mult[:c], d.rq.shift[:c]
	outOff, qMin, qMax := g.outOff, g.qMin, g.qMax
	for i := range y {
		s := bias[i] + int32(x0[i])*int32(w0[i]) + int32(x1[i])*int32(w1[i]) + int32(x2[i])*int32(w2[i]) +
			int32(x3[i])*int32(w3[i]) + int32(x4[i])*int32(w4[i]) + int32(x5[i])*int32(w5[i]) +
			int32(x6[i])*int32(w6[i]) + int32(x7[i])*int32(w7[i]) + int32(x8[i])*int32(w8[i])
		v := requantShift(s, mult[i], shift[i]) + outOff
		y[i] = int8(min(max(v, qMin), qMax))
	}
}

// dwRow3x3 computes npix output pixels of a 3x3 depthwise convolution with depth multiplier
// 1, c channels (a multiple of 8), along a row: pixel j's tap t reads c values at
// taps[t][j*steps[t]:] (the input pixel, or a row of input zero points with step 0); w is
// [C/8][9][8], q a quantTable; pixel j goes to y[j*c:]. It checks the bounds once and runs
// the SIMD kernel where there is one.
func dwRow3x3(taps *[9][]int8, steps *[9]int, npix, c int, w, q []int32, y []int8) {
	ok := npix > 0 && c > 0 && c%8 == 0 && len(w) >= 9*c && len(q) >= c/8*quantGroup && len(y) >= npix*c
	for t, tp := range taps {
		ok = ok && steps[t] >= 0 && len(tp) >= (npix-1)*steps[t]+c
	}
	if !ok {
		panic(fmt.Sprintf("dwRow3x3: %d pixels of %d channels, len(w) %d, len(q) %d, len(y) %d", npix, c, len(w), len(q), len(y)))
	}
	dwRow3x3x8(taps, steps, npix, c, w, q, y)
}

// dwRow3x3x8Go is the portable dwRow3x3 kernel (the reference for the assembly one).
func dwRow3x3x8Go(taps *[9][]int8, steps *[9]int, npix, c int, w, q []int32, y []int8) {
	for j := range npix {
		ys := y[j*c : (j+1)*c]
		for g := range c / 8 {
			wg, qg := w[g*72:(g+1)*72], q[g*quantGroup:(g+1)*quantGroup]
			for k := range 8 {
				var s int32
				for t := range 9 {
					s += int32(taps[t][j*steps[t]+g*8+k]) * wg[t*8+k]
				}
				ys[g*8+k] = requantGroup(s, qg, k)
			}
		}
	}
}

// dwPixelTaps is one output pixel of any other filter or depth multiplier: tap by tap over
// the channels.
func (g *convGeom) dwPixelTaps(d *dwInt8, x []int8, oy, ox, inC, m int, y []int8, acc []int32) {
	c := len(y)
	acc = acc[:c]
	copy(acc, d.rq.bias)
	iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
	t := 0
	for fy := 0; fy < g.fH; fy++ {
		iy := iy0 + fy*g.dilH
		for fx := 0; fx < g.fW; fx++ {
			ix := ix0 + fx*g.dilW
			xs := d.padRow
			if iy >= 0 && iy < g.inH && ix >= 0 && ix < g.inW {
				xs = x[(iy*g.inW+ix)*inC:]
			}
			xs = xs[:inC]
			ws := d.w[t*c:][:c]
			t++
			if m == 1 {
				ws = ws[:len(xs)]
				for i, v := range xs {
					acc[i] += int32(v) * int32(ws[i])
				}
				continue
			}
			// Output channel ic*m+j reads input channel ic.
			for ic, v := range xs {
				xv := int32(v)
				as, wr := acc[ic*m:ic*m+m], ws[ic*m:ic*m+m]
				for j, wv := range wr {
					as[j] += xv * int32(wv)
				}
			}
		}
	}
	for i, a := range acc {
		v := requantShift(a, d.rq.mult[i], d.rq.shift[i]) + g.outOff
		y[i] = int8(min(max(v, g.qMin), g.qMax))
	}
}

// dwPixelInt8 is the reference loop for one output pixel: taps outside the input are skipped.
// The channel loop is innermost so the filter row and input pixel are read contiguously; the
// sums are the same integers.
func (g *convGeom) dwPixelInt8(x, w []int8, b []int32, ys []int8, acc []int32, bt, oy, ox int) {
	m, off := g.depthMul, g.inOff
	iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
	if b != nil {
		copy(acc, b)
	} else {
		clear(acc)
	}
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
			xi := ((bt*g.inH+iy)*g.inW + ix) * g.inC
			wi := (fy*g.fW + fx) * g.outC
			xs, ws := x[xi:xi+g.inC], w[wi:wi+g.outC]
			if m == 1 {
				ws = ws[:len(xs)]
				acc := acc[:len(xs)]
				for c, v := range xs {
					acc[c] += int32(ws[c]) * (int32(v) + off)
				}
				continue
			}
			for oc := range acc {
				acc[oc] += int32(ws[oc]) * (int32(xs[oc/m]) + off)
			}
		}
	}
	for oc, a := range acc {
		v := MultiplyByQuantizedMultiplier(a, g.mult[oc], g.shift[oc]) + g.outOff
		ys[oc] = int8(min(max(v, g.qMin), g.qMax))
	}
}

// depthwiseInt16 is reference_integer_ops::DepthwiseConvPerChannel for 16x8: int64 sums, no
// offsets, 64-bit requantization.
func depthwiseInt16(g *convGeom, x []int16, w []int8, bias *tensor.Tensor, y []int16, acc []int64) {
	m := g.depthMul
	b64, b32 := bias.Int64(), bias.Int32()
	for bt := 0; bt < g.batches; bt++ {
		for oy := 0; oy < g.outH; oy++ {
			for ox := 0; ox < g.outW; ox++ {
				iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
				clear(acc)
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
						xi := ((bt*g.inH+iy)*g.inW + ix) * g.inC
						wi := (fy*g.fW + fx) * g.outC
						for oc := range acc {
							acc[oc] += int64(w[wi+oc]) * int64(x[xi+oc/m])
						}
					}
				}
				yo := ((bt*g.outH+oy)*g.outW + ox) * g.outC
				for oc, a := range acc {
					y[yo+oc] = int16(g.requant64(a, oc, b64, b32))
				}
			}
		}
	}
}

// prepareTransposeConv checks TRANSPOSE_CONV: inputs output_shape int32[4], filter
// [OC,FH,FW,C], input [N,H,W,C], optional bias [OC]; output [N,OH,OW,OC] as the output tensor
// declares it (TFLite Micro does not resize; a constant output_shape must agree, a computed one
// is checked on every Eval).
func prepareTransposeConv(n *tflite.Node) error {
	if err := n.CheckIO(3, 4, 1); err != nil {
		return err
	}
	shape, filter, in, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Input(3), n.Output(0)
	o, ok := n.Options.(*tflite.TransposeConvOptions)
	if !ok {
		return fmt.Errorf("missing TransposeConvOptions")
	}
	if shape.DType() != tensor.Int32 || shape.NumElements() != 4 {
		return fmt.Errorf("output_shape %q is %s with %d elements, want int32[4]", shape.Name(), shape.DType(), shape.NumElements())
	}
	if err := convRank4(in, filter, out); err != nil {
		return err
	}
	if err := checkStrides(o.StrideH, o.StrideW, 1, 1); err != nil {
		return err
	}
	g := &convGeom{batches: in.Dim(0), inH: in.Dim(1), inW: in.Dim(2), inC: in.Dim(3),
		outH: out.Dim(1), outW: out.Dim(2), outC: filter.Dim(0), fH: filter.Dim(1), fW: filter.Dim(2),
		strideH: o.StrideH, strideW: o.StrideW, dilH: 1, dilW: 1}
	if filter.Dim(3) != g.inC {
		return fmt.Errorf("filter %q has %d input channels, input %q has %d", filter.Name(), filter.Dim(3), in.Name(), g.inC)
	}
	if err := checkOutShape(out, g.batches, g.outH, g.outW, g.outC); err != nil {
		return err
	}
	if shape.Constant() {
		s := shape.Int32()
		if err := checkOutShape(out, int(s[0]), int(s[1]), int(s[2]), int(s[3])); err != nil {
			return fmt.Errorf("output_shape %q is %v: %w", shape.Name(), s, err)
		}
	}
	// TFLite computes the padding as for a forward convolution over the output
	// (transpose_conv.cc: ComputePaddingHeightWidth with the output's height and width).
	g.padH = computePadding(g.strideH, 1, g.outH, g.fH, computeOutSize(o.Padding, g.outH, g.fH, g.strideH, 1))
	g.padW = computePadding(g.strideW, 1, g.outW, g.fW, computeOutSize(o.Padding, g.outW, g.fW, g.strideW, 1))
	if err := g.prepareTypes("TRANSPOSE_CONV", in, filter, bias, out, o.Activation, 0, g.outC); err != nil {
		return err
	}
	if g.dtype != tensor.Float32 {
		size := out.NumElements() * 4
		if g.dtype == tensor.Int16 {
			size *= 2
		}
		h, err := n.RequestScratch(size)
		if err != nil {
			return err
		}
		g.accScratch = h
	}
	n.Data = g
	return nil
}

func evalTransposeConv(n *tflite.Node) error {
	g := n.Data.(*convGeom)
	shape, filter, in, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Input(3), n.Output(0)
	s := shape.Int32()
	if int(s[0]) != g.batches || int(s[1]) != g.outH || int(s[2]) != g.outW || int(s[3]) != g.outC {
		return fmt.Errorf("output_shape %q is %v, output tensor %q is %v", shape.Name(), s, out.Name(), out.Shape())
	}
	switch g.dtype {
	case tensor.Float32:
		transposeConvFloat(g, in.Float32(), filter.Float32(), bias.Float32(), out.Float32())
	case tensor.Int8:
		transposeConvInt8(g, in.Int8(), filter.Int8(), bias.Int32(), out.Int8(), int32s(n.Scratch(g.accScratch), out.NumElements()))
	case tensor.Int16:
		transposeConvInt16(g, in.Int16(), filter.Int8(), bias, out.Int16(), int64s(n.Scratch(g.accScratch), out.NumElements()))
	}
	return nil
}

// transposeConvFloat is reference_ops::TransposeConv for float32: every input pixel and filter
// tap scatters into output pixel (iy*stride - pad + fy, ix*stride - pad + fx) when that is
// inside the output; then the bias and the activation clamp.
func transposeConvFloat(g *convGeom, x, w, b, y []float32) {
	clear(y)
	for bt := 0; bt < g.batches; bt++ {
		for iy := 0; iy < g.inH; iy++ {
			for ix := 0; ix < g.inW; ix++ {
				xs := x[((bt*g.inH+iy)*g.inW+ix)*g.inC:][:g.inC]
				oy0, ox0 := iy*g.strideH-g.padH, ix*g.strideW-g.padW
				for fy := 0; fy < g.fH; fy++ {
					oy := oy0 + fy
					if oy < 0 || oy >= g.outH {
						continue
					}
					for fx := 0; fx < g.fW; fx++ {
						ox := ox0 + fx
						if ox < 0 || ox >= g.outW {
							continue
						}
						ys := y[((bt*g.outH+oy)*g.outW+ox)*g.outC:][:g.outC]
						for oc := range ys {
							ws := w[((oc*g.fH+fy)*g.fW+fx)*g.inC:][:len(xs)]
							for c, v := range xs {
								ys[oc] += v * ws[c]
							}
						}
					}
				}
			}
		}
	}
	for i, v := range y {
		if b != nil {
			v += b[i%g.outC]
		}
		y[i] = clampF(v, g.fMin, g.fMax)
	}
}

// transposeConvInt8 is reference_integer_ops::TransposeConv: int32 scratch sums of
// (x + input_offset) * w, then bias, per-channel requantization, output offset, clamp.
func transposeConvInt8(g *convGeom, x, w []int8, b []int32, y []int8, acc []int32) {
	clear(acc)
	for bt := 0; bt < g.batches; bt++ {
		for iy := 0; iy < g.inH; iy++ {
			for ix := 0; ix < g.inW; ix++ {
				xs := x[((bt*g.inH+iy)*g.inW+ix)*g.inC:][:g.inC]
				oy0, ox0 := iy*g.strideH-g.padH, ix*g.strideW-g.padW
				for fy := 0; fy < g.fH; fy++ {
					oy := oy0 + fy
					if oy < 0 || oy >= g.outH {
						continue
					}
					for fx := 0; fx < g.fW; fx++ {
						ox := ox0 + fx
						if ox < 0 || ox >= g.outW {
							continue
						}
						as := acc[((bt*g.outH+oy)*g.outW+ox)*g.outC:][:g.outC]
						for oc := range as {
							ws := w[((oc*g.fH+fy)*g.fW+fx)*g.inC:][:len(xs)]
							var s int32
							for c, v := range xs {
								s += (int32(v) + g.inOff) * int32(ws[c])
							}
							as[oc] += s
						}
					}
				}
			}
		}
	}
	for i, a := range acc {
		oc := i % g.outC
		if b != nil {
			a += b[oc]
		}
		v := MultiplyByQuantizedMultiplier(a, g.mult[oc], g.shift[oc]) + g.outOff
		y[i] = int8(min(max(v, g.qMin), g.qMax))
	}
}

// transposeConvInt16 is the 16x8 reference TransposeConv: int64 scratch, no offsets, 64-bit
// bias and requantization.
func transposeConvInt16(g *convGeom, x []int16, w []int8, bias *tensor.Tensor, y []int16, acc []int64) {
	clear(acc)
	for bt := 0; bt < g.batches; bt++ {
		for iy := 0; iy < g.inH; iy++ {
			for ix := 0; ix < g.inW; ix++ {
				xs := x[((bt*g.inH+iy)*g.inW+ix)*g.inC:][:g.inC]
				oy0, ox0 := iy*g.strideH-g.padH, ix*g.strideW-g.padW
				for fy := 0; fy < g.fH; fy++ {
					oy := oy0 + fy
					if oy < 0 || oy >= g.outH {
						continue
					}
					for fx := 0; fx < g.fW; fx++ {
						ox := ox0 + fx
						if ox < 0 || ox >= g.outW {
							continue
						}
						as := acc[((bt*g.outH+oy)*g.outW+ox)*g.outC:][:g.outC]
						for oc := range as {
							ws := w[((oc*g.fH+fy)*g.fW+fx)*g.inC:][:len(xs)]
							var s int64
							for c, v := range xs {
								s += int64(v) * int64(ws[c])
							}
							as[oc] += s
						}
					}
				}
			}
		}
	}
	b64, b32 := bias.Int64(), bias.Int32()
	for i, a := range acc {
		y[i] = int16(g.requant64(a, i%g.outC, b64, b32))
	}
}
