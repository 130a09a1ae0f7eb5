package train

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/internal/detmath"
)

// Post-training int8 quantization, the scheme TFLite's converter uses for full-integer
// models (optimizations=DEFAULT with a representative dataset and int8 inference I/O):
//
//   - activations (the input, every layer output, the logits): int8, asymmetric, per tensor,
//     from the min/max seen when the float model runs on calibration data, the range widened
//     to include 0 so that 0 is exact;
//   - weights: int8, symmetric (zero point 0), per output channel: scale = max|w_c| / 127;
//   - biases: int32, zero point 0, scale = input scale * weight scale of the channel;
//   - LOGISTIC and SOFTMAX outputs: the fixed scale 1/256 and zero point -128 TFLite requires,
//     so [0,1) maps onto the whole int8 range;
//   - input and output tensors are int8 too: the agent quantizes the normalised window with
//     the input's scale and zero point and dequantizes the output.

// QParams are per-tensor affine parameters: real = Scale * (q - ZeroPoint). Scale is a
// float32 value, as stored in the .tflite file.
type QParams struct {
	Scale     float32
	ZeroPoint int32
}

// asymmetric returns the int8 parameters of a real range [lo, hi], nudged to contain 0 and
// with the zero point rounded as TFLite's ChooseQuantizationParams does.
func asymmetric(lo, hi float64) QParams {
	lo, hi = min(lo, 0), max(hi, 0)
	if hi-lo < 1e-8 {
		hi = lo + 1e-8
	}
	scale := float32((hi - lo) / 255)
	zpf := -128 - lo/float64(scale)
	zp := int32(math.Round(zpf))
	zp = min(max(zp, -128), 127)
	return QParams{Scale: scale, ZeroPoint: zp}
}

// Quantize maps a real value to int8 (round half away from zero, saturating).
func (q QParams) Quantize(x float64) int8 {
	v := math.Round(float64(float32(x)/q.Scale)) + float64(q.ZeroPoint)
	return int8(min(max(v, -128), 127))
}

// Dequantize maps an int8 value back to a real value.
func (q QParams) Dequantize(v int8) float64 {
	return float64(q.Scale) * float64(int32(v)-q.ZeroPoint)
}

// probParams are the fixed output parameters of int8 LOGISTIC and SOFTMAX.
var probParams = QParams{Scale: 1.0 / 256, ZeroPoint: -128}

// QDense is one int8 FULLY_CONNECTED layer.
type QDense struct {
	In, Out int
	W       []int8    // [Out][In], symmetric per output channel
	WScale  []float32 // one per output channel
	B       []int32   // scale In.Scale*WScale[c], zero point 0
	Relu    bool
	OutQ    QParams
	mult    []int32 // fixed-point output multiplier per channel
	shift   []int
}

// QNet is an int8 network: quantized input, int8 FULLY_CONNECTED layers, then int8
// LOGISTIC (one output) or SOFTMAX (several).
type QNet struct {
	InQ     QParams
	Layers  []QDense
	Softmax bool
	OutQ    QParams // probParams
}

// QuantizeNet quantizes net, calibrating activation ranges on calib (normalised inputs,
// the representative dataset).
func QuantizeNet(net *MLP, calib [][]float64, softmaxHead bool) (*QNet, error) {
	if len(calib) == 0 {
		return nil, fmt.Errorf("quantize: no calibration data")
	}
	L := len(net.Layers)
	lo, hi := make([]float64, L+1), make([]float64, L+1)
	for i := range lo {
		lo[i], hi[i] = math.Inf(1), math.Inf(-1)
	}
	var acts [][]float64
	for _, x := range calib {
		acts = net.forward(x, acts)
		for li, a := range acts {
			for _, v := range a {
				lo[li], hi[li] = min(lo[li], v), max(hi[li], v)
			}
		}
	}
	q := &QNet{InQ: asymmetric(lo[0], hi[0]), Softmax: softmaxHead, OutQ: probParams}
	in := q.InQ
	for li, l := range net.Layers {
		d := QDense{In: l.In, Out: l.Out, W: make([]int8, len(l.W)), B: make([]int32, l.Out),
			Relu: li < L-1, OutQ: asymmetric(lo[li+1], hi[li+1])}
		for o := 0; o < l.Out; o++ {
			row := l.W[o*l.In : (o+1)*l.In]
			var m float64
			for _, w := range row {
				m = max(m, math.Abs(float64(float32(w))))
			}
			s := float32(m / 127)
			if m == 0 {
				s = 1 // an all-zero row: any positive scale represents it exactly
			}
			d.WScale = append(d.WScale, s)
			for i, w := range row {
				d.W[o*l.In+i] = int8(min(max(math.Round(float64(float32(w)/s)), -127), 127))
			}
			bs := in.Scale * s // float32 product, as the converter computes the bias scale
			d.B[o] = int32(min(max(math.Round(float64(float32(l.B[o])/bs)), math.MinInt32), math.MaxInt32))
			// The requantization multiplier exactly as TFLite's kernels derive it.
			mult, shift := quantizeMultiplier(float64(bs) / float64(d.OutQ.Scale))
			d.mult, d.shift = append(d.mult, mult), append(d.shift, shift)
		}
		q.Layers = append(q.Layers, d)
		in = d.OutQ
	}
	return q, nil
}

// QuantizeInput quantizes one normalised window with the input parameters.
func (q *QNet) QuantizeInput(x []float64) []int8 {
	out := make([]int8, len(x))
	for i, v := range x {
		out[i] = q.InQ.Quantize(v)
	}
	return out
}

// Forward is the reference int8 forward pass: FULLY_CONNECTED as TFLite's reference integer
// kernel computes it (int32 accumulation, fixed-point requantization, bit-exact), then the
// head in real arithmetic as TFLite's lookup-table LOGISTIC/SOFTMAX kernels do: dequantize,
// apply the function in float, quantize with scale 1/256 and zero point -128. It returns the
// int8 output tensor and the int8 logits.
func (q *QNet) Forward(x []int8) (out, logits []int8) {
	cur, inZP := x, q.InQ.ZeroPoint
	for _, l := range q.Layers {
		next := make([]int8, l.Out)
		lo := int32(-128)
		if l.Relu {
			lo = max(lo, l.OutQ.ZeroPoint)
		}
		for o := 0; o < l.Out; o++ {
			row := l.W[o*l.In : (o+1)*l.In]
			acc := l.B[o]
			for i, w := range row {
				acc += int32(w) * (int32(cur[i]) - inZP)
			}
			v := multiplyByQuantizedMultiplier(acc, l.mult[o], l.shift[o]) + l.OutQ.ZeroPoint
			next[o] = int8(min(max(v, lo), 127))
		}
		cur, inZP = next, l.OutQ.ZeroPoint
	}
	logits = cur
	lq := q.Layers[len(q.Layers)-1].OutQ
	real := make([]float64, len(logits))
	for i, v := range logits {
		real[i] = float64(float32(lq.Dequantize(v)))
	}
	var probs []float64
	if q.Softmax {
		probs = softmax(real)
	} else {
		probs = []float64{detmath.Sigmoid(real[0])}
	}
	out = make([]int8, len(probs))
	for i, p := range probs {
		out[i] = q.OutQ.Quantize(p)
	}
	return out, logits
}

// Real returns the dequantized output for one normalised window.
func (q *QNet) Real(x []float64) []float64 {
	out, _ := q.Forward(q.QuantizeInput(x))
	r := make([]float64, len(out))
	for i, v := range out {
		r[i] = q.OutQ.Dequantize(v)
	}
	return r
}

// quantizeMultiplier splits a positive real multiplier into a Q31 fixed-point value and a
// power-of-two exponent (TFLite's QuantizeMultiplier): m = q * 2^(shift-31).
func quantizeMultiplier(m float64) (int32, int) {
	if m == 0 {
		return 0, 0
	}
	frac, shift := math.Frexp(m)
	q := int64(math.Round(frac * (1 << 31)))
	if q == 1<<31 {
		q /= 2
		shift++
	}
	if shift < -31 {
		return 0, 0
	}
	if shift > 30 {
		return math.MaxInt32, 30
	}
	return int32(q), shift
}

// multiplyByQuantizedMultiplier is TFLite's MultiplyByQuantizedMultiplier: x * q * 2^shift
// with a saturating, rounding doubling high multiply and a rounding right shift.
func multiplyByQuantizedMultiplier(x, q int32, shift int) int32 {
	left, right := 0, 0
	if shift > 0 {
		left = shift
	} else {
		right = -shift
	}
	return roundingDivideByPOT(saturatingRoundingDoublingHighMul(x*(1<<left), q), right)
}

func saturatingRoundingDoublingHighMul(a, b int32) int32 {
	if a == b && a == math.MinInt32 {
		return math.MaxInt32
	}
	ab := int64(a) * int64(b)
	nudge := int64(1 << 30)
	if ab < 0 {
		nudge = 1 - (1 << 30)
	}
	return int32((ab + nudge) / (1 << 31))
}

func roundingDivideByPOT(x int32, exp int) int32 {
	mask := int32(1)<<exp - 1
	rem := x & mask
	threshold := mask >> 1
	if x < 0 {
		threshold++
	}
	r := x >> exp
	if rem > threshold {
		r++
	}
	return r
}
