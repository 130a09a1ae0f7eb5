package train

import (
	"math"
	"math/rand/v2"

	"github.com/outpost-ml/outpost/models/internal/detmath"
)

// Dense is a fully connected layer: y = W x + b, W row-major [Out][In] (TFLite's
// FULLY_CONNECTED weight layout).
type Dense struct {
	In, Out int
	W, B    []float64
}

// MLP is a stack of Dense layers: ReLU after every layer but the last, a logistic unit on the
// single output of the last.
type MLP struct {
	Layers []Dense
}

// newMLP initialises weights He-uniform (±sqrt(6/fan_in)) and biases zero. Uniform rather
// than normal draws: NormFloat64 uses math.Exp/Log and so is not portable bit for bit.
func newMLP(rng *rand.Rand, sizes []int) *MLP {
	m := &MLP{}
	for i := 0; i+1 < len(sizes); i++ {
		in, out := sizes[i], sizes[i+1]
		l := Dense{In: in, Out: out, W: make([]float64, in*out), B: make([]float64, out)}
		limit := math.Sqrt(6 / float64(in))
		for j := range l.W {
			l.W[j] = float64(limit * (2*rng.Float64() - 1))
		}
		m.Layers = append(m.Layers, l)
	}
	return m
}

// Logit returns the pre-sigmoid output for one normalised window.
func (m *MLP) Logit(x []float64) float64 {
	acts := m.forward(x, nil)
	return acts[len(acts)-1][0]
}

// Score returns P(fault) for one normalised window.
func (m *MLP) Score(x []float64) float64 { return detmath.Sigmoid(m.Logit(x)) }

// forward returns the activations of every layer (index 0 is x itself); the last entry is
// the logit. acts is reused when it has the right shape.
func (m *MLP) forward(x []float64, acts [][]float64) [][]float64 {
	if len(acts) != len(m.Layers)+1 {
		acts = make([][]float64, len(m.Layers)+1)
		for i, l := range m.Layers {
			acts[i+1] = make([]float64, l.Out)
		}
	}
	acts[0] = x
	for li, l := range m.Layers {
		in, out := acts[li], acts[li+1]
		last := li == len(m.Layers)-1
		for o := 0; o < l.Out; o++ {
			row := l.W[o*l.In : (o+1)*l.In]
			s := l.B[o]
			for i, w := range row {
				s += float64(w * in[i])
			}
			if !last && s < 0 {
				s = 0
			}
			out[o] = s
		}
	}
	return acts
}

// roundToFloat32 rounds every parameter to float32, the precision the .tflite stores, so that
// evaluation measures the model that ships.
func (m *MLP) roundToFloat32() {
	for _, l := range m.Layers {
		for i, w := range l.W {
			l.W[i] = float64(float32(w))
		}
		for i, b := range l.B {
			l.B[i] = float64(float32(b))
		}
	}
}

// adam holds the optimiser state of one parameter slice.
type adam struct {
	m, v []float64
}

type trainer struct {
	net           *MLP
	lr            float64
	b1t, b2t      float64 // beta1^t, beta2^t
	gradW, gradB  [][]float64
	optW, optB    []adam
	acts, deltas  [][]float64
	batchExamples int
	sumLoss       float64
	lossExamples  int
}

const (
	beta1 = 0.9
	beta2 = 0.999
	eps   = 1e-8
)

func newTrainer(net *MLP, lr float64) *trainer {
	t := &trainer{net: net, lr: lr, b1t: 1, b2t: 1}
	for _, l := range net.Layers {
		t.gradW = append(t.gradW, make([]float64, len(l.W)))
		t.gradB = append(t.gradB, make([]float64, len(l.B)))
		t.optW = append(t.optW, adam{make([]float64, len(l.W)), make([]float64, len(l.W))})
		t.optB = append(t.optB, adam{make([]float64, len(l.B)), make([]float64, len(l.B))})
		t.deltas = append(t.deltas, make([]float64, l.Out))
	}
	return t
}

// accumulate adds the binary cross-entropy gradient of one example (logistic head).
func (t *trainer) accumulate(x []float64, y float64) {
	t.acts = t.net.forward(x, t.acts)
	L := len(t.net.Layers)
	z := t.acts[L][0]
	p := detmath.Sigmoid(z)
	// d(BCE)/dz for a logistic output is p - y.
	t.deltas[L-1][0] = p - y
	t.backprop()
	// Loss is for the report only; clamp p away from 0 and 1 so log stays finite.
	pc := min(max(p, 1e-12), 1-1e-12)
	if y == 1 {
		t.sumLoss -= math.Log(pc)
	} else {
		t.sumLoss -= math.Log(1 - pc)
	}
	t.lossExamples++
}

// accumulateClass adds the categorical cross-entropy gradient of one example (softmax head)
// whose true class is label.
func (t *trainer) accumulateClass(x []float64, label int) {
	t.acts = t.net.forward(x, t.acts)
	L := len(t.net.Layers)
	p := softmax(t.acts[L])
	// d(CE)/dz_k for a softmax output is p_k - [k == label].
	d := t.deltas[L-1]
	for k := range d {
		d[k] = p[k]
		if k == label {
			d[k] -= 1
		}
	}
	t.backprop()
	t.sumLoss -= math.Log(max(p[label], 1e-12))
	t.lossExamples++
}

// backprop accumulates the gradients of every layer from the deltas of the last one.
func (t *trainer) backprop() {
	L := len(t.net.Layers)
	for li := L - 1; li >= 0; li-- {
		l := t.net.Layers[li]
		d := t.deltas[li]
		in := t.acts[li]
		gw, gb := t.gradW[li], t.gradB[li]
		for o := 0; o < l.Out; o++ {
			gb[o] += d[o]
			row := gw[o*l.In : (o+1)*l.In]
			for i := range row {
				row[i] += float64(d[o] * in[i])
			}
		}
		if li == 0 {
			break
		}
		prev := t.deltas[li-1]
		for i := 0; i < l.In; i++ {
			if in[i] <= 0 { // ReLU gradient; in[i] is the previous layer's output
				prev[i] = 0
				continue
			}
			var s float64
			for o := 0; o < l.Out; o++ {
				s += float64(l.W[o*l.In+i] * d[o])
			}
			prev[i] = s
		}
	}
	t.batchExamples++
}

// softmax returns exp(z_k - max) / sum, with detmath's exp so results are portable.
func softmax(z []float64) []float64 {
	mx := z[0]
	for _, v := range z {
		mx = max(mx, v)
	}
	p := make([]float64, len(z))
	var sum float64
	for k, v := range z {
		p[k] = detmath.Exp(v - mx)
		sum += p[k]
	}
	for k := range p {
		p[k] /= sum
	}
	return p
}

// Probs returns the softmax of the last layer for one normalised window (classifier nets).
func (m *MLP) Probs(x []float64) []float64 {
	acts := m.forward(x, nil)
	return softmax(acts[len(acts)-1])
}

// step applies one Adam update with the mean gradient of the accumulated batch.
func (t *trainer) step() {
	if t.batchExamples == 0 {
		return
	}
	scale := 1 / float64(t.batchExamples)
	t.b1t = float64(t.b1t * beta1)
	t.b2t = float64(t.b2t * beta2)
	c1 := 1 - t.b1t
	c2 := 1 - t.b2t
	for li, l := range t.net.Layers {
		t.update(l.W, t.gradW[li], t.optW[li], scale, c1, c2)
		t.update(l.B, t.gradB[li], t.optB[li], scale, c1, c2)
	}
	t.batchExamples = 0
}

func (t *trainer) update(w, g []float64, o adam, scale, c1, c2 float64) {
	for i := range w {
		gi := float64(g[i] * scale)
		o.m[i] = float64(beta1*o.m[i]) + float64((1-beta1)*gi)
		o.v[i] = float64(beta2*o.v[i]) + float64(float64((1-beta2)*gi)*gi)
		mhat := o.m[i] / c1
		vhat := o.v[i] / c2
		w[i] -= float64(t.lr*mhat) / (math.Sqrt(vhat) + eps)
		g[i] = 0
	}
}

// takeLoss returns the mean loss since the last call.
func (t *trainer) takeLoss() float64 {
	if t.lossExamples == 0 {
		return 0
	}
	l := t.sumLoss / float64(t.lossExamples)
	t.sumLoss, t.lossExamples = 0, 0
	return l
}
