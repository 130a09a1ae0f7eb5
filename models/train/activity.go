package train

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/sim"
)

// The activity classifier reads a window of a waist-worn 3-axis accelerometer (models/sim
// Motion), normalised per axis, and outputs one probability per activity:
//
//	input [1,150] (50 samples x 3 axes, interleaved) → FULLY_CONNECTED+RELU [1,32]
//	            → FULLY_CONNECTED+RELU [1,16] → FULLY_CONNECTED [1,4] → SOFTMAX "probabilities"
//
// A plain MLP over the raw window rather than a convolution: the interpreter runs it in both
// precisions today, and gait is a short, strongly periodic signal whose energy, period and
// gravity direction two dense layers separate well.

// ActivityConfig controls the activity classifier. DefaultActivityConfig gives the committed
// model.
type ActivityConfig struct {
	Seed         uint64
	SampleRateHz float64
	Window       int // samples per axis in one input
	Stride       int
	TrainWindows int // equal parts per activity
	TestWindows  int
	Hidden       []int
	Epochs       int
	BatchSize    int
	LearningRate float64
}

// DefaultActivityConfig: 2 s windows at 25 Hz hold three to six steps and a whole fall (free
// fall, impact and the start of lying); stride 1 s.
func DefaultActivityConfig() ActivityConfig {
	return ActivityConfig{
		Seed:         20250102,
		SampleRateHz: 25,
		Window:       50,
		Stride:       25,
		TrainWindows: 4000,
		TestWindows:  2000,
		Hidden:       []int{32, 16},
		Epochs:       30,
		BatchSize:    32,
		LearningRate: 0.002,
	}
}

// DefaultActivityIdentity names the committed float32 activity model.
func DefaultActivityIdentity() Identity {
	return Identity{Name: "activity-f32", Version: "1.0.0", Created: "2025-01-01T00:00:00Z", MinAgentVersion: "0.1.0"}
}

func (c ActivityConfig) validate() error {
	switch {
	case !(c.SampleRateHz > 0) || math.IsInf(c.SampleRateHz, 0):
		return fmt.Errorf("sample rate %v Hz is not positive", c.SampleRateHz)
	case c.Window < 2 || c.Stride < 1:
		return fmt.Errorf("window %d and stride %d must be at least 2 and 1", c.Window, c.Stride)
	case c.TrainWindows < 8 || c.TestWindows < 8:
		return fmt.Errorf("need at least 8 training and 8 test windows, have %d and %d", c.TrainWindows, c.TestWindows)
	case c.Epochs < 1 || c.BatchSize < 1:
		return fmt.Errorf("epochs %d and batch size %d must be positive", c.Epochs, c.BatchSize)
	case !(c.LearningRate > 0):
		return fmt.Errorf("learning rate %v is not positive", c.LearningRate)
	}
	for _, h := range c.Hidden {
		if h < 1 {
			return fmt.Errorf("hidden layer width %d is not positive", h)
		}
	}
	return nil
}

// ActivityExample is one labelled window: Window samples of x, y, z interleaved, in g.
type ActivityExample struct {
	X        []float64
	Activity sim.Activity
}

// ActivityWindows simulates n windows cycling through the activities, each from its own
// wearer. A fall window starts while the wearer idles or walks; the fall happens 0.2-0.8 s
// into it. Other windows start 0-2 s into the activity, at a random gait phase.
func ActivityWindows(seed uint64, split Split, n, window int, sampleRateHz float64) []ActivityExample {
	rng := rand.New(rand.NewPCG(seed, 0x61637469|uint64(split)<<32)) // stream constant: "acti"
	out := make([]ActivityExample, n)
	for i := range out {
		a := sim.Activities[i%len(sim.Activities)]
		m := sim.NewMotion(sim.MotionConfig{Seed: rng.Uint64(), SampleRateHz: sampleRateHz})
		start := a
		if a == sim.ActivityFall {
			start = sim.Activity(rng.IntN(2)) // idle or walk
		}
		m.SetActivity(start)
		m.Window(make([]float64, 3*rng.IntN(int(2*sampleRateHz)+1)))
		m.SetActivity(a)
		out[i] = ActivityExample{X: m.Window(make([]float64, 3*window)), Activity: a}
	}
	return out
}

// fitChannelNormalization computes per-channel mean and standard deviation of interleaved
// windows with nc channels.
func fitChannelNormalization(windows [][]float64, nc int) []Normalization {
	sum := make([]float64, nc)
	cnt := make([]int, nc)
	for _, w := range windows {
		for i, v := range w {
			sum[i%nc] += v
			cnt[i%nc]++
		}
	}
	norms := make([]Normalization, nc)
	for c := range norms {
		norms[c].Mean = sum[c] / float64(cnt[c])
	}
	ss := make([]float64, nc)
	for _, w := range windows {
		for i, v := range w {
			d := v - norms[i%nc].Mean
			ss[i%nc] += float64(d * d)
		}
	}
	for c := range norms {
		norms[c].Std = math.Sqrt(ss[c] / float64(cnt[c]))
	}
	return norms
}

// ActivityResult is the trained classifier and its artifacts, float32 then int8.
type ActivityResult struct {
	Net       *MLP
	Norms     []Normalization
	QNet      *QNet
	EpochLoss []float64
	Artifacts []*Artifact
}

// RunActivity trains the activity classifier and serialises it in float32 and int8.
func RunActivity(cfg ActivityConfig, id Identity, progress io.Writer) (*ActivityResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("activity config: %w", err)
	}
	train := ActivityWindows(cfg.Seed, SplitTrain, cfg.TrainWindows, cfg.Window, cfg.SampleRateHz)
	test := ActivityWindows(cfg.Seed, SplitTest, cfg.TestWindows, cfg.Window, cfg.SampleRateHz)
	raw := make([][]float64, len(train))
	for i, e := range train {
		raw[i] = e.X
	}
	labels := make([]string, len(sim.Activities))
	for i, a := range sim.Activities {
		labels[i] = a.String()
	}
	spec := &modelSpec{
		modelDesc:   "Outpost sample model: activity classifier (%s MLP), generated by models/train",
		sensor:      "accelerometer",
		channels:    []string{"x", "y", "z"},
		fs:          cfg.SampleRateHz,
		window:      cfg.Window,
		stride:      cfg.Stride,
		norms:       fitChannelNormalization(raw, 3),
		softmax:     true,
		kind:        bundle.OutputClasses,
		labels:      labels,
		inputName:   "window",
		outputName:  "probabilities",
		outputNames: labels,
		trainRaw:    raw,
		source:      fmt.Sprintf("models/sim motion, %d training windows (equal parts %v), seed %d", len(train), labels, cfg.Seed),
	}
	xs := make([][]float64, len(train))
	for i, e := range train {
		xs[i] = spec.normalise(e.X)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x7472616e)) // stream constant: "tran"
	sizes := append(append([]int{3 * cfg.Window}, cfg.Hidden...), len(labels))
	net := newMLP(rng, sizes)
	tr := newTrainer(net, cfg.LearningRate)
	order := make([]int, len(train))
	for i := range order {
		order[i] = i
	}
	res := &ActivityResult{Net: net, Norms: spec.norms}
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for k, idx := range order {
			tr.accumulateClass(xs[idx], int(train[idx].Activity))
			if (k+1)%cfg.BatchSize == 0 || k == len(order)-1 {
				tr.step()
			}
		}
		loss := tr.takeLoss()
		res.EpochLoss = append(res.EpochLoss, loss)
		if progress != nil {
			fmt.Fprintf(progress, "activity epoch %d/%d: loss %.4f\n", epoch+1, cfg.Epochs, loss)
		}
	}
	if err := net.checkFinite(); err != nil {
		return nil, err
	}
	net.roundToFloat32()
	spec.net = net
	spec.description = fmt.Sprintf("Activity classifier (idle, walk, run, fall): %%s MLP %v on %d-sample windows of a waist-worn 3-axis accelerometer at %g Hz; outputs one probability per activity. Trained on models/sim signals by models/train.", sizes, cfg.Window, cfg.SampleRateHz)
	spec.metrics = func(predict func([]float64) []float64) bundle.Metrics {
		m := evaluateActivity(predict, spec, test)
		m.TrainWindows = len(train)
		return m
	}
	for i, e := range ActivityWindows(cfg.Seed, SplitDemo, GoldenWindows, cfg.Window, cfg.SampleRateHz) {
		spec.golden = append(spec.golden, namedWindow{name: fmt.Sprintf("%s-%d", e.Activity, i), x: e.X})
	}
	fa, err := spec.buildFloat(id)
	if err != nil {
		return nil, err
	}
	q, err := QuantizeNet(net, xs, true)
	if err != nil {
		return nil, err
	}
	qa, err := spec.buildInt8(Int8Identity(id), q)
	if err != nil {
		return nil, err
	}
	res.QNet = q
	res.Artifacts = []*Artifact{fa, qa}
	return res, nil
}

// evaluateActivity measures accuracy, recall per activity and the false alarm rate of the
// "fall" class (windows of other activities classified as a fall), on held-out windows.
func evaluateActivity(predict func([]float64) []float64, spec *modelSpec, test []ActivityExample) bundle.Metrics {
	n := len(sim.Activities)
	hits, totals := make([]int, n), make([]int, n)
	var correct, notFall, falseFall int
	for _, e := range test {
		got := sim.Activity(bundle.ArgMax(predict(spec.normalise(e.X))))
		totals[e.Activity]++
		if got == e.Activity {
			correct++
			hits[e.Activity]++
		}
		if e.Activity != sim.ActivityFall {
			notFall++
			if got == sim.ActivityFall {
				falseFall++
			}
		}
	}
	round := func(x float64) float64 { return math.Round(x*1e4) / 1e4 }
	m := bundle.Metrics{Accuracy: round(float64(correct) / float64(len(test))), Recall: map[string]float64{}, EvalWindows: len(test)}
	if notFall > 0 {
		m.FalsePositiveRate = round(float64(falseFall) / float64(notFall))
	}
	for _, a := range sim.Activities {
		if totals[a] > 0 {
			m.Recall[a.String()] = round(float64(hits[a]) / float64(totals[a]))
		}
	}
	return m
}
