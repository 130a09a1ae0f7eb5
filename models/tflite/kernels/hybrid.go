package kernels

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Dynamic-range ("hybrid") quantization: float32 activations, int8 weights. The converter's
// default optimization without a representative dataset writes these models. On every Invoke
// the float input is quantized to int8 (per batch row, symmetric or, with the op's
// asymmetric_quantize_inputs option or a per-channel convolution, asymmetric with a zero point),
// the products are accumulated in int32, and the accumulator is scaled back to float32 with
// the input's and the filter's scales. TFLite Micro does not run hybrid ops; the arithmetic is
// that of the full runtime (kernels/fully_connected.cc, conv.cc, depthwise_conv.cc,
// embedding_lookup.cc and tensor_utils' portable SymmetricQuantizeFloats and
// AsymmetricQuantizeFloats). The on-the-fly quantization is reproduced bit for bit (every
// float32 operation in the same order, rounding half away from zero); the float scaling of the
// integer sums may differ from the runtime's optimized kernels in the order of the last
// multiplications, within the float tolerance of docs/tflite.md.

// hybridNode marks per-node state of the hybrid path, so Eval can tell it from the op's own.
type hybridNode interface{ hybrid() }

// withHybrid wraps an op's kernel: nodes for which match holds run prepare/eval (the
// hybrid path); all others run base unchanged.
func withHybrid(base tflite.KernelFuncs, match func(*tflite.Node) bool, prepare, eval func(*tflite.Node) error) tflite.Kernel {
	return hybridKernel{base: base, match: match, prepare: prepare, eval: eval}
}

type hybridKernel struct {
	base          tflite.KernelFuncs
	match         func(*tflite.Node) bool
	prepare, eval func(*tflite.Node) error
}

func (k hybridKernel) Init(n *tflite.Node) (any, error) { return k.base.Init(n) }

func (k hybridKernel) Prepare(n *tflite.Node) error {
	if k.match(n) {
		return k.prepare(n)
	}
	return k.base.Prepare(n)
}

// isHybrid matches nodes with a float32 input 0, int8 weights at input w and a float32 output.
func isHybrid(w int) func(*tflite.Node) bool {
	return func(n *tflite.Node) bool {
		return hasTypes(n, 0, tensor.Float32) && hasTypes(n, w, tensor.Int8) && len(n.Outputs) > 0 && n.Outputs[0].DType() == tensor.Float32
	}
}

// isHybridLookup matches EMBEDDING_LOOKUP with int8 values and a float32 output.
func isHybridLookup(n *tflite.Node) bool {
	return hasTypes(n, 1, tensor.Int8) && len(n.Outputs) > 0 && n.Outputs[0].DType() == tensor.Float32
}

func hasTypes(n *tflite.Node, i int, d tensor.DType) bool {
	t := n.Input(i)
	return t != nil && t.DType() == d
}

func (k hybridKernel) Eval(n *tflite.Node) error {
	if _, ok := n.Data.(hybridNode); ok {
		return k.eval(n)
	}
	return k.base.Eval(n)
}

// symmetricQuantize is tensor_utils::SymmetricQuantizeFloats: q = round(v * 127/range) with
// range = max|v|, clamped to ±127; it returns the scale range/127 (1 for an all-zero input).
func symmetricQuantize(v []float32, q []int8) float32 {
	lo, hi := minMax(v)
	r := max(float32(math.Abs(float64(lo))), float32(math.Abs(float64(hi))))
	if r == 0 {
		clear(q)
		return 1
	}
	inv := float32(127) / r
	for i, x := range v {
		p := roundHalfAway(float32(x * inv))
		q[i] = int8(min(max(p, -127), 127))
	}
	return r / 127
}

// asymmetricQuantize is tensor_utils::AsymmetricQuantizeFloats: the range [min(0,lo),
// max(0,hi)] maps onto [-128, 127] with a zero point nudged to an integer (computed in
// float64); it returns the scale and the zero point (1 and 0 for an all-zero input).
func asymmetricQuantize(v []float32, q []int8) (float32, int32) {
	lo, hi := minMax(v)
	rmin, rmax := float64(min(0, lo)), float64(max(0, hi))
	if rmin == rmax {
		clear(q)
		return 1, 0
	}
	const qmin, qmax = -128.0, 127.0
	scale := (rmax - rmin) / (qmax - qmin)
	zpMin, zpMax := qmin-rmin/scale, qmax-rmax/scale
	errMin, errMax := math.Abs(qmin)+math.Abs(rmin/scale), math.Abs(qmax)+math.Abs(rmax/scale)
	zpd := zpMax
	if errMin < errMax {
		zpd = zpMin
	}
	var zp int32
	switch {
	case zpd <= qmin:
		zp = qmin
	case zpd >= qmax:
		zp = qmax
	default:
		zp = int32(math.Round(zpd))
	}
	sf := float32(scale)
	inv := 1 / sf
	off := float32(zp)
	for i, x := range v {
		// The explicit conversion keeps Go from fusing the multiply-add (C++ rounds twice).
		p := roundHalfAway(off + float32(x*inv))
		q[i] = int8(min(max(p, -128), 127))
	}
	return sf, zp
}

func minMax(v []float32) (lo, hi float32) {
	if len(v) == 0 {
		return 0, 0
	}
	lo, hi = v[0], v[0]
	for _, x := range v[1:] {
		if x < lo {
			lo = x
		}
		if x > hi {
			hi = x
		}
	}
	return lo, hi
}

// roundHalfAway is TfLiteRound on a float32, saturated to int32.
func roundHalfAway(x float32) int32 {
	r := math.Round(float64(x))
	if r >= math.MaxInt32 {
		return math.MaxInt32
	}
	if r <= math.MinInt32 || math.IsNaN(r) {
		return math.MinInt32
	}
	return int32(r)
}

func float32s(b []byte, n int) []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b[:4*n]))), n)
}

// hybridWeights reads the int8 weights' scales: one per tensor, or one per channel along dim
// (nch of them). Weights must be symmetric (zero points 0), as the converter writes them.
// perChannel is nil when there is one scale or all scales are equal (TFLite then takes the
// per-tensor path too).
func hybridWeights(w *tensor.Tensor, dim, nch int) (scale float32, perChannel []float32, err error) {
	q := w.Quant()
	if q == nil || len(q.Scale) == 0 {
		return 0, nil, fmt.Errorf("int8 weights %q have no scale", w.Name())
	}
	for _, z := range q.ZeroPoint {
		if z != 0 {
			return 0, nil, fmt.Errorf("int8 weights %q: zero point %d, hybrid ops need symmetric weights (0)", w.Name(), z)
		}
	}
	if len(q.Scale) == 1 {
		return q.Scale[0], nil, nil
	}
	if nch == 1 {
		return 0, nil, fmt.Errorf("int8 weights %q have %d scales, this hybrid op takes one per tensor", w.Name(), len(q.Scale))
	}
	if len(q.Scale) != nch || q.Dim != dim {
		return 0, nil, fmt.Errorf("int8 weights %q: %d scales on dimension %d, want 1 or %d on dimension %d", w.Name(), len(q.Scale), q.Dim, nch, dim)
	}
	for _, s := range q.Scale[1:] {
		if s != q.Scale[0] {
			return q.Scale[0], q.Scale, nil
		}
	}
	return q.Scale[0], nil, nil
}

// ---- FULLY_CONNECTED ----

type fcHybrid struct {
	batches, depth, units int
	fMin, fMax            float32
	asym                  bool
	scale                 float32   // per-tensor weight scale
	perChannel            []float32 // per-unit weight scales, nil when per-tensor
	rowSums               []int32   // asymmetric inputs: each weight row's sum
	qIn, sf, off          int       // scratch: quantized input, scale and zero point per batch
}

func (*fcHybrid) hybrid() {}

// prepareFCHybrid: float32 input [..., depth], int8 weights [units, depth] (constant,
// per-tensor or per-unit scales), optional float32 bias, float32 output.
func prepareFCHybrid(n *tflite.Node) error {
	if err := n.CheckIO(2, 3, 1); err != nil {
		return err
	}
	in, filter, bias, out := n.Input(0), n.Input(1), n.Input(2), n.Output(0)
	opts, _ := n.Options.(*tflite.FullyConnectedOptions)
	if opts == nil {
		opts = &tflite.FullyConnectedOptions{}
	}
	if opts.WeightsFormat != 0 {
		return fmt.Errorf("weights format %d not supported", opts.WeightsFormat)
	}
	if filter.Rank() != 2 || !filter.Constant() {
		return fmt.Errorf("hybrid: weights %q must be a constant matrix, not %s", filter.Name(), filter)
	}
	d := &fcHybrid{units: filter.Dim(0), depth: filter.Dim(1), asym: opts.AsymmetricQuantizeInputs}
	if d.depth == 0 || in.NumElements()%d.depth != 0 {
		return fmt.Errorf("input %q of %d elements is not a multiple of filter depth %d", in.Name(), in.NumElements(), d.depth)
	}
	d.batches = in.NumElements() / d.depth
	if bias != nil && (bias.DType() != tensor.Float32 || bias.NumElements() != d.units) {
		return fmt.Errorf("bias %q is %s, want float32 with %d elements", bias.Name(), bias, d.units)
	}
	if out.NumElements() != d.batches*d.units {
		return fmt.Errorf("output %q has %d elements, want %d x %d", out.Name(), out.NumElements(), d.batches, d.units)
	}
	if opts.KeepNumDims && in.Rank() > 0 {
		shape := append([]int(nil), in.Shape()...)
		shape[len(shape)-1] = d.units
		out.SetShape(shape)
	}
	var err error
	if d.scale, d.perChannel, err = hybridWeights(filter, 0, d.units); err != nil {
		return err
	}
	if d.fMin, d.fMax, err = floatActivationRange(opts.Activation); err != nil {
		return err
	}
	if d.asym {
		d.rowSums = rowSums(filter.Int8(), d.units, d.depth)
	}
	if err := hybridScratch(n, d.batches*d.depth, d.batches, &d.qIn, &d.sf, &d.off); err != nil {
		return err
	}
	n.Data = d
	return nil
}

// hybridScratch requests the scratch every hybrid op needs: the quantized input (elems int8s)
// and a float32 scale and int32 zero point per quantized row.
func hybridScratch(n *tflite.Node, elems, rows int, q, sf, off *int) error {
	var err error
	if *q, err = n.RequestScratch(elems); err != nil {
		return err
	}
	if *sf, err = n.RequestScratch(4 * rows); err != nil {
		return err
	}
	*off, err = n.RequestScratch(4 * rows)
	return err
}

func rowSums(w []int8, rows, cols int) []int32 {
	s := make([]int32, rows)
	for r := range s {
		for _, v := range w[r*cols : (r+1)*cols] {
			s[r] += int32(v)
		}
	}
	return s
}

func evalFCHybrid(n *tflite.Node) error {
	d := n.Data.(*fcHybrid)
	x, w, b, y := n.Input(0).Float32(), n.Input(1).Int8(), n.Input(2).Float32(), n.Output(0).Float32()
	q := int8s(n.Scratch(d.qIn), d.batches*d.depth)
	sf := float32s(n.Scratch(d.sf), d.batches)
	off := int32s(n.Scratch(d.off), d.batches)
	for bt := 0; bt < d.batches; bt++ {
		xs, qs := x[bt*d.depth:(bt+1)*d.depth], q[bt*d.depth:(bt+1)*d.depth]
		if d.asym {
			sf[bt], off[bt] = asymmetricQuantize(xs, qs)
		} else {
			sf[bt], off[bt] = symmetricQuantize(xs, qs), 0
		}
		if d.perChannel == nil {
			sf[bt] *= d.scale // "incorporate scaling of the filter"
		}
	}
	for bt := 0; bt < d.batches; bt++ {
		qs := q[bt*d.depth : (bt+1)*d.depth]
		ys := y[bt*d.units : (bt+1)*d.units]
		for o := range ys {
			var acc int32
			for k, v := range w[o*d.depth : (o+1)*d.depth] {
				acc += int32(v) * int32(qs[k])
			}
			if d.asym {
				acc -= d.rowSums[o] * off[bt]
			}
			scale := sf[bt]
			if d.perChannel != nil {
				scale *= d.perChannel[o]
			}
			var acc0 float32
			if b != nil {
				acc0 = b[o]
			}
			ys[o] = clampF(acc0+float32(float32(acc)*scale), d.fMin, d.fMax)
		}
	}
	return nil
}

// ---- CONV_2D and DEPTHWISE_CONV_2D ----

type convHybrid struct {
	g          *convGeom
	depthwise  bool
	asym       bool      // per-channel weights: inputs quantized asymmetrically
	scale      float32   // per-tensor weight scale
	perChannel []float32 // per-output-channel weight scales, nil when per-tensor
	qIn, sf    int
	off        int
}

func (*convHybrid) hybrid() {}

// prepareConvHybrid: CONV_2D with float32 input, constant int8 filter [OC,FH,FW,C], float32
// bias and output. Per-tensor weights quantize the input symmetrically (conv.cc EvalHybrid,
// which has no dilation); per-channel weights asymmetrically (EvalHybridPerChannel).
func prepareConvHybrid(n *tflite.Node) error {
	g, o, err := conv2DGeom(n)
	if err != nil {
		return err
	}
	g.dtype = tensor.Float32
	d := &convHybrid{g: g}
	if err := d.prepare(n, 0, o.Activation); err != nil {
		return err
	}
	d.asym = d.perChannel != nil
	if !d.asym && (g.dilH != 1 || g.dilW != 1) {
		return fmt.Errorf("hybrid CONV_2D with per-tensor weights and dilation %dx%d: TFLite's kernel has no dilation there", g.dilH, g.dilW)
	}
	n.Data = d
	return nil
}

// prepareDepthwiseHybrid: DEPTHWISE_CONV_2D with float32 input, constant int8 filter
// [1,FH,FW,C*M] with per-channel scales, float32 bias and output (depthwise_conv.cc
// EvalHybridPerChannel: inputs quantized asymmetrically).
func prepareDepthwiseHybrid(n *tflite.Node) error {
	if err := n.CheckIO(2, 3, 1); err != nil {
		return err
	}
	in, filter, out := n.Input(0), n.Input(1), n.Output(0)
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
		strideH: o.StrideH, strideW: o.StrideW, dilH: o.DilationH, dilW: o.DilationW, dtype: tensor.Float32}
	if filter.Dim(0) != 1 || g.inC == 0 || g.outC%g.inC != 0 {
		return fmt.Errorf("filter %q has shape %v, want [1 FH FW C*M] for %d input channels", filter.Name(), filter.Shape(), g.inC)
	}
	g.depthMul = g.outC / g.inC
	if o.DepthMultiplier > 0 && o.DepthMultiplier != g.depthMul {
		return fmt.Errorf("depth_multiplier %d, but filter %q has %d channels for %d input channels", o.DepthMultiplier, filter.Name(), g.outC, g.inC)
	}
	if err := g.spatial(o.Padding, out); err != nil {
		return err
	}
	d := &convHybrid{g: g, depthwise: true, asym: true}
	if err := d.prepare(n, 3, o.Activation); err != nil {
		return err
	}
	if q := filter.Quant(); len(q.Scale) != g.outC {
		return fmt.Errorf("hybrid DEPTHWISE_CONV_2D: filter %q has %d scales, TFLite needs one per output channel (%d)", filter.Name(), len(q.Scale), g.outC)
	}
	if d.perChannel == nil {
		d.perChannel = filter.Quant().Scale // equal scales still take the per-channel kernel
	}
	n.Data = d
	return nil
}

// prepare checks the weights, bias and activation shared by both convolutions and requests
// the scratch.
func (d *convHybrid) prepare(n *tflite.Node, chDim int, act schema.Activation) error {
	g, filter, bias := d.g, n.Input(1), n.Input(2)
	if !filter.Constant() {
		return fmt.Errorf("hybrid: filter %q must be constant", filter.Name())
	}
	if bias != nil && (bias.DType() != tensor.Float32 || bias.NumElements() != g.outC) {
		return fmt.Errorf("bias %q is %s, want float32 with %d elements", bias.Name(), bias, g.outC)
	}
	var err error
	if d.scale, d.perChannel, err = hybridWeights(filter, chDim, g.outC); err != nil {
		return err
	}
	if g.fMin, g.fMax, err = floatActivationRange(act); err != nil {
		return err
	}
	return hybridScratch(n, g.batches*g.inH*g.inW*g.inC, g.batches, &d.qIn, &d.sf, &d.off)
}

func evalConvHybrid(n *tflite.Node) error {
	d := n.Data.(*convHybrid)
	g := d.g
	x, w, b, y := n.Input(0).Float32(), n.Input(1).Int8(), n.Input(2).Float32(), n.Output(0).Float32()
	img := g.inH * g.inW * g.inC
	q := int8s(n.Scratch(d.qIn), g.batches*img)
	sf := float32s(n.Scratch(d.sf), g.batches)
	off := int32s(n.Scratch(d.off), g.batches)
	for bt := 0; bt < g.batches; bt++ {
		xs, qs := x[bt*img:(bt+1)*img], q[bt*img:(bt+1)*img]
		if d.asym {
			sf[bt], off[bt] = asymmetricQuantize(xs, qs)
		} else {
			sf[bt], off[bt] = symmetricQuantize(xs, qs)*d.scale, 0
		}
	}
	for bt := 0; bt < g.batches; bt++ {
		for oy := 0; oy < g.outH; oy++ {
			for ox := 0; ox < g.outW; ox++ {
				yo := ((bt*g.outH+oy)*g.outW + ox) * g.outC
				for oc := 0; oc < g.outC; oc++ {
					var acc int32
					if d.depthwise {
						acc = d.dwAcc(q, w, off[bt], bt, oy, ox, oc)
					} else {
						acc = d.convAcc(q, w, off[bt], bt, oy, ox, oc)
					}
					// The runtime's optimized kernels multiply in these orders (measured: each
					// order is bit-exact with the oracle for its op, the others are 1 ulp off).
					var v float32
					switch {
					case d.depthwise:
						v = float32(float32(acc)*sf[bt]) * d.perChannel[oc]
					case d.perChannel != nil:
						v = float32(acc) * float32(d.perChannel[oc]*sf[bt])
					default:
						v = float32(acc) * sf[bt]
					}
					if b != nil {
						v = float32(v) + b[oc]
					}
					y[yo+oc] = clampF(v, g.fMin, g.fMax)
				}
			}
		}
	}
	return nil
}

// convAcc sums filter × (input − zero point) over the taps inside the image (outside taps are
// the zero the reference kernel skips).
func (d *convHybrid) convAcc(q, w []int8, zp int32, bt, oy, ox, oc int) int32 {
	g := d.g
	iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
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
			xi := ((bt*g.inH+iy)*g.inW + ix) * g.inC
			wi := ((oc*g.fH+fy)*g.fW + fx) * g.inC
			for c, v := range q[xi : xi+g.inC] {
				acc += int32(w[wi+c]) * (int32(v) - zp)
			}
		}
	}
	return acc
}

func (d *convHybrid) dwAcc(q, w []int8, zp int32, bt, oy, ox, oc int) int32 {
	g := d.g
	ic := oc / g.depthMul
	iy0, ix0 := oy*g.strideH-g.padH, ox*g.strideW-g.padW
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
			v := int32(q[((bt*g.inH+iy)*g.inW+ix)*g.inC+ic])
			acc += int32(w[(fy*g.fW+fx)*g.outC+oc]) * (v - zp)
		}
	}
	return acc
}

// ---- EMBEDDING_LOOKUP ----

type embeddingHybrid struct {
	rows, row int
	scales    []float32 // one per tensor, or one per row
}

func (*embeddingHybrid) hybrid() {}

// prepareEmbeddingHybrid: int32 ids [n], int8 value [rows, ...] (per-tensor or per-row
// scales), float32 output [n, ...]: each looked-up element is q × scale, formed in float64
// and rounded once (embedding_lookup.cc EvalHybrid; the zero point is not used).
func prepareEmbeddingHybrid(n *tflite.Node) error {
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
	q := value.Quant()
	if q == nil || (len(q.Scale) != 1 && (len(q.Scale) != value.Dim(0) || q.Dim != 0)) {
		return fmt.Errorf("int8 value %q needs one scale or one per row", value.Name())
	}
	shape := append([]int{ids.Dim(0)}, value.Shape()[1:]...)
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	row := 1
	for _, s := range value.Shape()[1:] {
		row *= s
	}
	n.Data = &embeddingHybrid{rows: value.Dim(0), row: row, scales: q.Scale}
	return nil
}

func evalEmbeddingHybrid(n *tflite.Node) error {
	d := n.Data.(*embeddingHybrid)
	ids, value, y := n.Input(0).Int32(), n.Input(1).Int8(), n.Output(0).Float32()
	for i, id := range ids {
		if id < 0 || int(id) >= d.rows {
			return fmt.Errorf("id %d at position %d out of range [0,%d)", id, i, d.rows)
		}
		s := float64(d.scales[0])
		if len(d.scales) > 1 {
			s = float64(d.scales[id])
		}
		src, dst := value[int(id)*d.row:(int(id)+1)*d.row], y[i*d.row:(i+1)*d.row]
		for j, v := range src {
			dst[j] = float32(float64(v) * s)
		}
	}
	return nil
}

// ---- SVDF ----

// svdfHybrid is the hybrid SVDF state: the feature matmul quantizes the float input
// (svdf.cc EvalHybridSVDF); the time weights, int8 in hybrid models, are dequantized once
// (int8 × scale in float32, as the runtime's float_weights_time).
type svdfHybrid struct {
	asym         bool
	wfScale      float32
	wt           []float32
	rowSums      []int32
	qIn, sf, off int
}

func prepareSVDFHybrid(n *tflite.Node, d *svdfData, opts *tflite.SVDFOptions, wf, wt, bias, state, out *tensor.Tensor) error {
	for _, t := range []*tensor.Tensor{bias, state, out} {
		if t != nil && t.DType() != tensor.Float32 {
			return fmt.Errorf("hybrid SVDF: tensor %q is %s, want float32", t.Name(), t.DType())
		}
	}
	if !wf.Constant() || !wt.Constant() {
		return fmt.Errorf("hybrid SVDF: weights %q and %q must be constant", wf.Name(), wt.Name())
	}
	if _, err := svdfActFloat(d.act, 0); err != nil {
		return err
	}
	h := &svdfHybrid{asym: opts.AsymmetricQuantizeInputs}
	var err error
	if h.wfScale, _, err = hybridWeights(wf, 0, 1); err != nil {
		return err
	}
	switch wt.DType() {
	case tensor.Int8:
		s, _, err := hybridWeights(wt, 0, 1)
		if err != nil {
			return err
		}
		h.wt = make([]float32, wt.NumElements())
		for i, q := range wt.Int8() {
			h.wt[i] = float32(q) * s
		}
	case tensor.Float32:
		h.wt = wt.Float32()
	default:
		return fmt.Errorf("hybrid SVDF: weights_time %q is %s, want int8 or float32", wt.Name(), wt.DType())
	}
	if h.asym {
		h.rowSums = rowSums(wf.Int8(), d.nFilter, d.nIn)
	}
	if err := hybridScratch(n, d.batch*d.nIn, d.batch, &h.qIn, &h.sf, &h.off); err != nil {
		return err
	}
	if d.scratch, err = n.RequestScratch(4 * d.batch * d.nFilter); err != nil {
		return err
	}
	d.hybrid = h
	return nil
}

// feature writes input × weights_feature into the newest state column of every filter.
func (h *svdfHybrid) feature(n *tflite.Node, d *svdfData, x, state []float32) {
	wf := n.Input(svdfWeightsFeature).Int8()
	q := int8s(n.Scratch(h.qIn), d.batch*d.nIn)
	sf := float32s(n.Scratch(h.sf), d.batch)
	off := int32s(n.Scratch(h.off), d.batch)
	for b := 0; b < d.batch; b++ {
		xs, qs := x[b*d.nIn:(b+1)*d.nIn], q[b*d.nIn:(b+1)*d.nIn]
		if h.asym {
			sf[b], off[b] = asymmetricQuantize(xs, qs)
		} else {
			sf[b], off[b] = symmetricQuantize(xs, qs), 0
		}
		sf[b] *= h.wfScale
		for r := 0; r < d.nFilter; r++ {
			var dot int32
			for c, v := range wf[r*d.nIn : (r+1)*d.nIn] {
				dot += int32(v) * int32(qs[c])
			}
			if h.asym {
				dot -= h.rowSums[r] * off[b]
			}
			state[(b*d.nFilter+r)*d.nMemory+d.nMemory-1] = 0 + float32(dot)*sf[b]
		}
	}
}

// ---- BATCH_MATMUL ----

// bmmHybrid is BATCH_MATMUL with a float32 lhs and constant int8 rhs (batch_matmul.cc
// EvalHybrid with reference_ops::BatchMatMul): every lhs row (of the contracted length,
// after adj_x) is quantized on its own; the sums' zero-point correction is made in float32
// and truncated back to int32, as the runtime does.
type bmmHybrid struct {
	lb, wb, ob   int // batches of lhs, weights and output (lhs and weights: 1 or ob)
	m, k, nn     int
	adjX, asym   bool
	scale        float32
	wT           []int8  // weights as [wb][nn][k]
	rowSums      []int32 // [wb][nn]
	qIn, sf, off int
	rows         int // scratch handle: lhs rows gathered when adj_x
}

func (*bmmHybrid) hybrid() {}

// prepareBMMHybrid: lhs [B?, M, K] (adj_x: [B?, K, M]), rhs constant int8 [B?, K, N]
// (adj_y: [B?, N, K]) with one scale and zero point 0, output float32 [B?, M, N]. Batch ranks
// above 3 are refused: the runtime indexes their scales by the last batch dimension only.
func prepareBMMHybrid(n *tflite.Node) error {
	if err := n.CheckIO(2, 2, 1); err != nil {
		return err
	}
	lhs, rhs, out := n.Input(0), n.Input(1), n.Output(0)
	opts, _ := n.Options.(*tflite.BatchMatMulOptions)
	if opts == nil {
		opts = &tflite.BatchMatMulOptions{}
	}
	for _, t := range []*tensor.Tensor{lhs, rhs} {
		if t.Rank() < 2 || t.Rank() > 3 {
			return fmt.Errorf("hybrid BATCH_MATMUL: %q has rank %d, want 2 or 3", t.Name(), t.Rank())
		}
	}
	if !rhs.Constant() {
		return fmt.Errorf("hybrid BATCH_MATMUL: int8 rhs %q must be constant", rhs.Name())
	}
	d := &bmmHybrid{adjX: opts.AdjX, asym: opts.AsymmetricQuantizeInputs, lb: 1, wb: 1}
	d.m, d.k = lhs.Dim(-2), lhs.Dim(-1)
	if d.adjX {
		d.m, d.k = d.k, d.m
	}
	rk, rn := rhs.Dim(-2), rhs.Dim(-1)
	if opts.AdjY {
		rk, rn = rn, rk
	}
	if rk != d.k {
		return fmt.Errorf("lhs %q %v and rhs %q %v: contracted dimensions %d and %d differ", lhs.Name(), lhs.Shape(), rhs.Name(), rhs.Shape(), d.k, rk)
	}
	d.nn = rn
	if lhs.Rank() == 3 {
		d.lb = lhs.Dim(0)
	}
	if rhs.Rank() == 3 {
		d.wb = rhs.Dim(0)
	}
	if d.lb != d.wb && d.lb != 1 && d.wb != 1 {
		return fmt.Errorf("batch dimensions %d and %d do not broadcast", d.lb, d.wb)
	}
	d.ob = max(d.lb, d.wb)
	shape := []int{d.m, d.nn}
	if lhs.Rank() == 3 || rhs.Rank() == 3 {
		shape = []int{d.ob, d.m, d.nn}
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	var err error
	if d.scale, _, err = hybridWeights(rhs, 0, 1); err != nil {
		return err
	}
	w := rhs.Int8()
	d.wT, d.rowSums = make([]int8, d.wb*d.nn*d.k), make([]int32, d.wb*d.nn)
	for b := 0; b < d.wb; b++ {
		for j := 0; j < d.nn; j++ {
			for k := 0; k < d.k; k++ {
				var v int8
				if opts.AdjY {
					v = w[(b*d.nn+j)*d.k+k]
				} else {
					v = w[(b*d.k+k)*d.nn+j]
				}
				d.wT[(b*d.nn+j)*d.k+k] = v
				d.rowSums[b*d.nn+j] += int32(v)
			}
		}
	}
	rows := d.lb * d.m
	if err := hybridScratch(n, rows*d.k, rows, &d.qIn, &d.sf, &d.off); err != nil {
		return err
	}
	if d.adjX {
		if d.rows, err = n.RequestScratch(4 * d.k); err != nil {
			return err
		}
	}
	n.Data = d
	return nil
}

func evalBMMHybrid(n *tflite.Node) error {
	d := n.Data.(*bmmHybrid)
	x, y := n.Input(0).Float32(), n.Output(0).Float32()
	rows := d.lb * d.m
	q := int8s(n.Scratch(d.qIn), rows*d.k)
	sf := float32s(n.Scratch(d.sf), rows)
	off := int32s(n.Scratch(d.off), rows)
	for r := 0; r < rows; r++ {
		xs := x[r*d.k : (r+1)*d.k]
		if d.adjX { // row m of batch b is column m of the stored [K, M] matrix
			b, m := r/d.m, r%d.m
			xs = float32s(n.Scratch(d.rows), d.k)
			for k := range xs {
				xs[k] = x[(b*d.k+k)*d.m+m]
			}
		}
		qs := q[r*d.k : (r+1)*d.k]
		if d.asym {
			sf[r], off[r] = asymmetricQuantize(xs, qs)
		} else {
			sf[r], off[r] = symmetricQuantize(xs, qs), 0
		}
		sf[r] *= d.scale
	}
	for ob := 0; ob < d.ob; ob++ {
		lb, wb := min(ob, d.lb-1), min(ob, d.wb-1)
		for m := 0; m < d.m; m++ {
			r := lb*d.m + m
			qs := q[r*d.k : (r+1)*d.k]
			ys := y[(ob*d.m+m)*d.nn : (ob*d.m+m+1)*d.nn]
			for j := range ys {
				var total int32
				for k, v := range d.wT[(wb*d.nn+j)*d.k : (wb*d.nn+j+1)*d.k] {
					total += int32(v) * int32(qs[k])
				}
				// total -= row_sum * (float)offset: float32 arithmetic, truncated to int32.
				total = int32(float32(total) - float32(float32(d.rowSums[wb*d.nn+j])*float32(off[r])))
				ys[j] = 0 + sf[r]*float32(total)
			}
		}
	}
	return nil
}

// ---- UNIDIRECTIONAL_SEQUENCE_LSTM ----

// lstmHybrid is the hybrid LSTM (lstm_eval.cc EvalHybrid, LstmStepHybrid): the float LSTM
// step with each gate's two matmuls done on int8: the step's input rows and the previous
// hidden state are quantized row by row, and each gate accumulates bias + Σ(x·W)·sx·sW +
// Σ(h·R)·sh·sR in float32 before its activation.
type lstmHybrid struct {
	asym                bool
	wScale              [4][2]float32 // per gate (d.gates order): input and recurrent weights
	rowSums             [4][2][]int32 // asymmetric inputs only
	qIn, sfIn, offIn    int           // scratch: quantized input rows
	qH, sfH, offH, gSum int           // scratch: quantized hidden rows; per-row scales
}

func prepareLSTMHybrid(n *tflite.Node, d *lstmData, opts *tflite.UnidirectionalSequenceLSTMOptions) error {
	h := &lstmHybrid{asym: opts.AsymmetricQuantizeInputs}
	for i, g := range d.gates {
		for j, s := range []int{g.wIn, g.wRec} {
			w := n.Input(s)
			if !w.Constant() {
				return lstmErr("hybrid LSTM: weights %q must be constant", w.Name())
			}
			var err error
			if h.wScale[i][j], _, err = hybridWeights(w, 0, 1); err != nil {
				return err
			}
			if h.asym {
				h.rowSums[i][j] = rowSums(w.Int8(), w.Dim(0), w.Dim(1))
			}
		}
	}
	rows := d.batch // rows per step: the batch (time-major) or 1
	if err := hybridScratch(n, rows*d.nIn, rows, &h.qIn, &h.sfIn, &h.offIn); err != nil {
		return err
	}
	if err := hybridScratch(n, rows*d.nState, rows, &h.qH, &h.sfH, &h.offH); err != nil {
		return err
	}
	var err error
	h.gSum, err = n.RequestScratch(4 * rows)
	d.hybrid = h
	return err
}

// quantizeRows quantizes rows of x (cols each) into q, one scale and zero point per row.
func (h *lstmHybrid) quantizeRows(x []float32, q []int8, sf []float32, off []int32, rows, cols int) {
	for r := 0; r < rows; r++ {
		xs, qs := x[r*cols:(r+1)*cols], q[r*cols:(r+1)*cols]
		if h.asym {
			sf[r], off[r] = asymmetricQuantize(xs, qs)
		} else {
			sf[r], off[r] = symmetricQuantize(xs, qs), 0
		}
	}
}

// accumulate adds W·q (rows of q, cols each) scaled by sf[r]·wScale to out.
func accumulate(w, q []int8, sf []float32, off []int32, sums []int32, wScale float32, scaleTmp []float32, rows, cols, units int, out []float32) {
	for r := 0; r < rows; r++ {
		scaleTmp[r] = sf[r] * wScale
	}
	for r := 0; r < rows; r++ {
		qs := q[r*cols : (r+1)*cols]
		for u := 0; u < units; u++ {
			var dot int32
			for k, v := range w[u*cols : (u+1)*cols] {
				dot += int32(v) * int32(qs[k])
			}
			if sums != nil {
				dot -= sums[u] * off[r]
			}
			out[r*units+u] += float32(dot) * scaleTmp[r]
		}
	}
}

func evalLSTMHybrid(n *tflite.Node, d *lstmData) {
	h := d.hybrid
	x, y := n.Input(lstmInput).Float32(), n.Output(0).Float32()
	hAll, cAll := n.Input(lstmOutputState).Float32(), n.Input(lstmCellState).Float32()
	var buf [4][]float32
	for i := range buf {
		buf[i] = f32View(n.Scratch(d.bufs[i]))
	}
	qIn, sfIn, offIn := int8s(n.Scratch(h.qIn), d.batch*d.nIn), float32s(n.Scratch(h.sfIn), d.batch), int32s(n.Scratch(h.offIn), d.batch)
	qH, sfH, offH := int8s(n.Scratch(h.qH), d.batch*d.nState), float32s(n.Scratch(h.sfH), d.batch), int32s(n.Scratch(h.offH), d.batch)
	scaleTmp := float32s(n.Scratch(h.gSum), d.batch)
	lstmSteps(d, func(inOff, outOff, stateOff, rows int) {
		cells := rows * d.nState
		xt := x[inOff : inOff+rows*d.nIn]
		hs := hAll[stateOff : stateOff+cells]
		c := cAll[stateOff : stateOff+cells]
		h.quantizeRows(xt, qIn, sfIn, offIn, rows, d.nIn)
		h.quantizeRows(hs, qH, sfH, offH, rows, d.nState)
		gate := func(gi int, out []float32) {
			g := &d.gates[gi]
			bias := n.Input(g.bias).Float32()
			for r := 0; r < rows; r++ {
				copy(out[r*d.nState:(r+1)*d.nState], bias)
			}
			accumulate(n.Input(g.wIn).Int8(), qIn, sfIn, offIn, h.rowSums[gi][0], h.wScale[gi][0], scaleTmp, rows, d.nIn, d.nState, out)
			accumulate(n.Input(g.wRec).Int8(), qH, sfH, offH, h.rowSums[gi][1], h.wScale[gi][1], scaleTmp, rows, d.nState, d.nState, out)
			lstmActFloat(g.act, out)
		}
		forget, input, cellGate := buf[0][:cells], buf[1][:cells], buf[2][:cells]
		gate(0, forget)
		gate(1, input)
		gate(2, cellGate)
		// UpdateLstmCellFloat: c = f*c + g*i, then the optional clip.
		for i := range c {
			c[i] = forget[i] * c[i]
			c[i] += cellGate[i] * input[i]
			if d.cellClip > 0 {
				c[i] = max(min(d.cellClip, c[i]), -d.cellClip)
			}
		}
		outGate := buf[1][:cells]
		gate(3, outGate)
		// CalculateLstmOutputHybrid without projection: h = o * tanh(c).
		for i := range hs {
			hs[i] = outGate[i] * float32(math.Tanh(float64(c[i])))
		}
		copy(y[outOff:outOff+cells], hs)
	})
}
