package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// SVDF as TFLite Micro's kernel (svdf_common.cc): a rank-r factorisation of a fully connected
// layer over time. The state [batch, memory*filters] shifts left by one each Invoke and the
// newest column receives input x weights_feature. float32 runs in float32; int8 input with
// int8 feature weights, int16 (or int8) time weights and state, int32 bias runs TFLM's
// reference integer arithmetic bit for bit.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpSvdf, 1, 4, tflite.KernelFuncs{PrepareFn: prepareSVDF, EvalFn: evalSVDF})
	})
}

const (
	svdfInput          = 0
	svdfWeightsFeature = 1
	svdfWeightsTime    = 2
	svdfBias           = 3
	svdfState          = 4
)

type svdfData struct {
	rank, batch, nIn, nFilter, nUnit, nMemory int
	act                                       schema.Activation
	dtype                                     tensor.DType // input dtype
	stateType                                 tensor.DType // int8 or int16 for the integer path

	scale1, scale2       int32
	shift1, shift2       int
	inZP, stateZP, outZP int32

	scratch, scratchOut int // handles: batch*filters and batch*units accumulators

	hybrid *svdfHybrid // float32 input with int8 weights (hybrid.go); nil otherwise
}

func prepareSVDF(n *tflite.Node) error {
	if len(n.Inputs) != 5 || len(n.Outputs) != 1 {
		return fmt.Errorf("%d inputs and %d outputs, want 5 and 1", len(n.Inputs), len(n.Outputs))
	}
	for _, s := range []int{svdfInput, svdfWeightsFeature, svdfWeightsTime, svdfState} {
		if n.Input(s) == nil {
			return fmt.Errorf("required input %d is omitted", s)
		}
	}
	opts, _ := n.Options.(*tflite.SVDFOptions)
	if opts == nil {
		return fmt.Errorf("missing SVDFOptions")
	}
	in, wf, wt, bias, state, out := n.Input(svdfInput), n.Input(svdfWeightsFeature), n.Input(svdfWeightsTime), n.Input(svdfBias), n.Input(svdfState), n.Output(0)
	if in.Rank() != 2 || wf.Rank() != 2 || wt.Rank() != 2 || state.Rank() != 2 || out.Rank() != 2 {
		return fmt.Errorf("input %v, weights_feature %v, weights_time %v, state %v and output %v must all have rank 2",
			in.Shape(), wf.Shape(), wt.Shape(), state.Shape(), out.Shape())
	}
	d := &svdfData{rank: opts.Rank, act: opts.Activation, batch: in.Dim(0), nIn: in.Dim(1), nFilter: wf.Dim(0), nMemory: wt.Dim(1), dtype: in.DType()}
	if d.rank <= 0 || d.nFilter%d.rank != 0 {
		return fmt.Errorf("rank %d does not divide the %d filters of %q", d.rank, d.nFilter, wf.Name())
	}
	d.nUnit = d.nFilter / d.rank
	switch {
	case wf.Dim(1) != d.nIn:
		return fmt.Errorf("weights_feature %q has shape %v, want [%d %d]", wf.Name(), wf.Shape(), d.nFilter, d.nIn)
	case wt.Dim(0) != d.nFilter || d.nMemory == 0:
		return fmt.Errorf("weights_time %q has shape %v, want [%d memory>0]", wt.Name(), wt.Shape(), d.nFilter)
	case bias != nil && (bias.Rank() != 1 || bias.Dim(0) != d.nUnit):
		return fmt.Errorf("bias %q has shape %v, want [%d]", bias.Name(), bias.Shape(), d.nUnit)
	case state.Dim(0) != d.batch || state.Dim(1) != d.nMemory*d.nFilter:
		return fmt.Errorf("state %q has shape %v, want [%d %d]", state.Name(), state.Shape(), d.batch, d.nMemory*d.nFilter)
	case !state.Variable():
		return fmt.Errorf("state %q must be a variable tensor", state.Name())
	case out.Dim(0) != d.batch || out.Dim(1) != d.nUnit:
		return fmt.Errorf("output %q has shape %v, want [%d %d]", out.Name(), out.Shape(), d.batch, d.nUnit)
	}
	var err error
	switch in.DType() {
	case tensor.Float32:
		if wf.DType() == tensor.Int8 {
			if err := prepareSVDFHybrid(n, d, opts, wf, wt, bias, state, out); err != nil {
				return err
			}
			break
		}
		for _, t := range []*tensor.Tensor{wf, wt, bias, state, out} {
			if t != nil && t.DType() != tensor.Float32 {
				return fmt.Errorf("tensor %q is %s, want float32", t.Name(), t.DType())
			}
		}
		if _, err := svdfActFloat(d.act, 0); err != nil {
			return err
		}
		if d.scratch, err = n.RequestScratch(4 * d.batch * d.nFilter); err != nil {
			return err
		}
	case tensor.Int8:
		if err := prepareSVDFInt8(d, in, wf, wt, bias, state, out); err != nil {
			return err
		}
		if d.scratch, err = n.RequestScratch(4 * d.batch * d.nFilter); err != nil {
			return err
		}
		if d.scratchOut, err = n.RequestScratch(4 * d.batch * d.nUnit); err != nil {
			return err
		}
	default:
		return fmt.Errorf("input %q is %s, want float32 or int8", in.Name(), in.DType())
	}
	n.Data = d
	return nil
}

func prepareSVDFInt8(d *svdfData, in, wf, wt, bias, state, out *tensor.Tensor) error {
	if wf.DType() != tensor.Int8 {
		return fmt.Errorf("weights_feature %q is %s, want int8", wf.Name(), wf.DType())
	}
	if wt.DType() != tensor.Int16 && wt.DType() != tensor.Int8 || state.DType() != wt.DType() {
		return fmt.Errorf("weights_time %q (%s) and state %q (%s) must both be int16 or int8", wt.Name(), wt.DType(), state.Name(), state.DType())
	}
	if out.DType() != tensor.Int8 {
		return fmt.Errorf("output %q is %s, want int8", out.Name(), out.DType())
	}
	d.stateType = state.DType()
	inS, inZP, err := perTensor(in)
	if err != nil {
		return err
	}
	wfS, _, err := perTensor(wf)
	if err != nil {
		return err
	}
	wtS, _, err := perTensor(wt)
	if err != nil {
		return err
	}
	stS, stZP, err := perTensor(state)
	if err != nil {
		return err
	}
	outS, outZP, err := perTensor(out)
	if err != nil {
		return err
	}
	if bias != nil {
		if bias.DType() != tensor.Int32 {
			return fmt.Errorf("bias %q is %s, want int32", bias.Name(), bias.DType())
		}
		bS, _, err := perTensor(bias)
		if err != nil {
			return err
		}
		// PrepareSvdf: the bias scale must equal state scale x time-weights scale.
		if math.Abs(float64(bS)-float64(stS*wtS)) >= 1e-5 {
			return fmt.Errorf("bias %q scale %v, want state scale x weights_time scale %v", bias.Name(), bS, stS*wtS)
		}
	}
	// effective_scale_1 and _2 are formed in float32 and only then widened, as in TFLM.
	d.scale1, d.shift1 = QuantizeMultiplier(float64(inS * wfS / stS))
	d.scale2, d.shift2 = QuantizeMultiplier(float64(stS * wtS / outS))
	d.inZP, d.stateZP, d.outZP = inZP, stZP, outZP
	return nil
}

func evalSVDF(n *tflite.Node) error {
	d := n.Data.(*svdfData)
	if d.dtype == tensor.Float32 {
		evalSVDFFloat(n, d)
		return nil
	}
	if d.stateType == tensor.Int16 {
		svdfInteger(n, d, n.Input(svdfWeightsTime).Int16(), n.Input(svdfState).Int16(), math.MinInt16, math.MaxInt16)
	} else {
		svdfInteger(n, d, n.Input(svdfWeightsTime).Int8(), n.Input(svdfState).Int8(), math.MinInt8, math.MaxInt8)
	}
	return nil
}

// svdfInteger is EvalIntegerSvdfReference.
func svdfInteger[T int8 | int16](n *tflite.Node, d *svdfData, wt, state []T, lo, hi int32) {
	x, wf, y := n.Input(svdfInput).Int8(), n.Input(svdfWeightsFeature).Int8(), n.Output(0).Int8()
	bias := n.Input(svdfBias).Int32() // nil when omitted
	scratch, acc := i32View(n.Scratch(d.scratch)), i32View(n.Scratch(d.scratchOut))
	nState := d.batch * d.nFilter * d.nMemory
	copy(state[:nState-1], state[1:nState]) // shift the whole state left by one
	for b := 0; b < d.batch; b++ {
		xb := x[b*d.nIn : (b+1)*d.nIn]
		for r := 0; r < d.nFilter; r++ {
			w := wf[r*d.nIn : (r+1)*d.nIn]
			var dot int32
			for c, v := range xb {
				dot += int32(w[c]) * (int32(v) - d.inZP)
			}
			dot = MultiplyByQuantizedMultiplier(dot, d.scale1, d.shift1)
			// The state zero point is added before the clamp, so the sum cannot wrap when
			// narrowed (TFLM's comment on int8 state).
			dot = min(max(dot+d.stateZP, lo), hi)
			state[(b*d.nFilter+r)*d.nMemory+d.nMemory-1] = T(dot)
		}
	}
	for b := 0; b < d.batch; b++ {
		for f := 0; f < d.nFilter; f++ {
			w := wt[f*d.nMemory : (f+1)*d.nMemory]
			s := state[(b*d.nFilter+f)*d.nMemory : (b*d.nFilter+f+1)*d.nMemory]
			var sum int32
			for j, v := range w {
				sum += int32(v) * (int32(s[j]) - d.stateZP)
			}
			scratch[b*d.nFilter+f] = sum
		}
	}
	for b := 0; b < d.batch; b++ {
		for u := 0; u < d.nUnit; u++ {
			var v int32
			if bias != nil {
				v = bias[u]
			}
			for j := 0; j < d.rank; j++ {
				v += scratch[b*d.nFilter+u*d.rank+j]
			}
			acc[b*d.nUnit+u] = v
		}
	}
	for i, v := range acc[:d.batch*d.nUnit] {
		v = MultiplyByQuantizedMultiplier(v, d.scale2, d.shift2) + d.outZP
		y[i] = int8(min(max(v, math.MinInt8), math.MaxInt8))
	}
}

// evalSVDFFloat is EvalFloatSvdfReference (and, with d.hybrid, the full runtime's
// EvalHybridSVDF, which differs only in the feature step and its dequantized time weights).
func evalSVDFFloat(n *tflite.Node, d *svdfData) {
	x, wt := n.Input(svdfInput).Float32(), n.Input(svdfWeightsTime).Float32()
	bias, state, y := n.Input(svdfBias).Float32(), n.Input(svdfState).Float32(), n.Output(0).Float32()
	scratch := f32View(n.Scratch(d.scratch))
	nState := d.batch * d.nFilter * d.nMemory
	copy(state[:nState-1], state[1:nState])
	if d.hybrid != nil {
		d.hybrid.feature(n, d, x, state)
		svdfTime(d, d.hybrid.wt, bias, state, scratch, y)
		return
	}
	wf := n.Input(svdfWeightsFeature).Float32()
	for b := 0; b < d.batch; b++ {
		xb := x[b*d.nIn : (b+1)*d.nIn]
		for r := 0; r < d.nFilter; r++ {
			w := wf[r*d.nIn : (r+1)*d.nIn]
			var dot float32
			for c, v := range xb {
				dot += w[c] * v
			}
			state[(b*d.nFilter+r)*d.nMemory+d.nMemory-1] = dot
		}
	}
	svdfTime(d, wt, bias, state, scratch, y)
}

// svdfTime is the float time step: state × weights_time per filter, summed over the rank per
// unit onto the bias, then the activation.
func svdfTime(d *svdfData, wt, bias, state, scratch, y []float32) {
	for b := 0; b < d.batch; b++ {
		for f := 0; f < d.nFilter; f++ {
			w := wt[f*d.nMemory : (f+1)*d.nMemory]
			s := state[(b*d.nFilter+f)*d.nMemory : (b*d.nFilter+f+1)*d.nMemory]
			var sum float32
			for j, v := range w {
				sum += v * s[j]
			}
			scratch[b*d.nFilter+f] = sum
		}
	}
	for b := 0; b < d.batch; b++ {
		for u := 0; u < d.nUnit; u++ {
			var v float32
			if bias != nil {
				v = bias[u]
			}
			for j := 0; j < d.rank; j++ {
				v += scratch[b*d.nFilter+u*d.rank+j]
			}
			y[b*d.nUnit+u], _ = svdfActFloat(d.act, v)
		}
	}
}

// svdfActFloat is TFLM's ActivationValFloat for the fused activations SVDF may carry.
func svdfActFloat(act schema.Activation, v float32) (float32, error) {
	switch act {
	case schema.ActivationNone:
		return v, nil
	case schema.ActivationRelu:
		return max(v, 0), nil
	case schema.ActivationReluN1To1:
		return max(min(v, 1), -1), nil
	case schema.ActivationRelu6:
		return max(min(v, 6), 0), nil
	case schema.ActivationTanh:
		return float32(math.Tanh(float64(v))), nil
	case schema.ActivationSignBit:
		if math.Signbit(float64(v)) {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("fused activation %d not supported", act)
}
