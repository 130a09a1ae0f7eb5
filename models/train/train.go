// Package train trains the sample models in models/sample: a small float32 anomaly detector
// for machine vibration, learned from models/sim signals and written as a .tflite file plus
// its manifest. `make models` runs it through cmd/outpost-train.
//
// The model reads one raw window of accelerometer samples, normalised with the mean and
// standard deviation of healthy training data, and outputs P(fault) from a logistic unit:
//
//	input [1,64] → FULLY_CONNECTED+RELU [1,16] → FULLY_CONNECTED+RELU [1,8]
//	            → FULLY_CONNECTED [1,1] → LOGISTIC [1,1] "anomaly_score"
//
// Raw windows rather than hand-made features (RMS, spectrum) keep the device side trivial:
// the agent only normalises and copies samples, and the interpreter does all the work. The
// faults the simulator knows change energy and spectral content, which two ReLU layers learn
// well from 64 samples.
//
// Training must be byte-identical on every run and machine. Everything random comes from
// PCG generators seeded from Config.Seed; no map is iterated; every product that feeds a sum
// is rounded by an explicit float64 conversion, which the Go spec says prevents the compiler
// from fusing it into an FMA (it does so on arm64, ppc64le and s390x); exp comes from
// detmath, not math.
package train

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/outpost-ml/outpost/models/sim"
)

// Config controls data generation and training. DefaultConfig gives the committed model.
type Config struct {
	Seed         uint64
	SampleRateHz float64 // the simulator's and the model's sample rate
	Window       int     // samples per model input
	Stride       int     // samples between consecutive windows on the device
	TrainWindows int     // half healthy, half faulty (faults in equal parts)
	TestWindows  int     // held-out windows from different seeds, same mix
	Hidden       []int   // hidden layer widths (ReLU)
	Epochs       int
	BatchSize    int
	LearningRate float64 // Adam step size
	Threshold    float64 // anomaly if score >= Threshold
}

// DefaultConfig returns the configuration of the committed sample model.
//
// 64 samples at 50 Hz is 1.28 s: about six revolutions of the 5 Hz shaft, four cycles of the
// 2.5 Hz looseness sub-harmonic and twenty-odd bearing strikes, enough for every fault to show
// in one window while keeping the first layer at 1024 weights. Stride 32 (50% overlap) gives a
// score every 0.64 s.
func DefaultConfig() Config {
	return Config{
		Seed:         20250101,
		SampleRateHz: 50,
		Window:       64,
		Stride:       32,
		TrainWindows: 4000,
		TestWindows:  2000,
		Hidden:       []int{16, 8},
		Epochs:       40,
		BatchSize:    32,
		LearningRate: 0.002,
		Threshold:    0.5,
	}
}

func (c Config) validate() error {
	switch {
	case !(c.SampleRateHz > 0) || math.IsInf(c.SampleRateHz, 0):
		return fmt.Errorf("sample rate %v Hz is not positive", c.SampleRateHz)
	case c.Window < 2:
		return fmt.Errorf("window %d is shorter than 2 samples", c.Window)
	case c.Stride < 1:
		return fmt.Errorf("stride %d is not positive", c.Stride)
	case c.TrainWindows < 8 || c.TestWindows < 8:
		return fmt.Errorf("need at least 8 training and 8 test windows, have %d and %d", c.TrainWindows, c.TestWindows)
	case c.Epochs < 1 || c.BatchSize < 1:
		return fmt.Errorf("epochs %d and batch size %d must be positive", c.Epochs, c.BatchSize)
	case !(c.LearningRate > 0):
		return fmt.Errorf("learning rate %v is not positive", c.LearningRate)
	case !(c.Threshold > 0 && c.Threshold < 1):
		return fmt.Errorf("threshold %v is not in (0,1)", c.Threshold)
	}
	for _, h := range c.Hidden {
		if h < 1 {
			return fmt.Errorf("hidden layer width %d is not positive", h)
		}
	}
	return nil
}

// Example is one labelled window of raw samples (g).
type Example struct {
	X     []float64
	Fault sim.Fault
	// Anomalous marks a window labelled faulty without a known fault (captured field data,
	// capture.go); Fault is then FaultNone.
	Anomalous bool
}

// Label is 1 for a faulty window, 0 for a healthy one.
func (e Example) Label() float64 {
	if e.Fault == sim.FaultNone && !e.Anomalous {
		return 0
	}
	return 1
}

// Split names the independent seed streams of the data sets.
type Split uint64

// The data sets; their seeds never overlap.
const (
	SplitTrain Split = 1
	SplitTest  Split = 2
	SplitDemo  Split = 3 // windows for golden files and docs
)

// Windows simulates n labelled windows: even indices healthy, odd ones cycling through the
// faults. Every window comes from its own simulated machine (its own seed and a shaft speed
// in [4.5, 5.5] Hz), so the set covers machine-to-machine variation.
func Windows(seed uint64, split Split, n, window int, sampleRateHz float64) []Example {
	rng := rand.New(rand.NewPCG(seed, uint64(split)))
	faults := sim.Faults[1:]
	out := make([]Example, n)
	for i := range out {
		f := sim.FaultNone
		if i%2 == 1 {
			f = faults[(i/2)%len(faults)]
		}
		v := sim.NewVibration(sim.VibrationConfig{
			Seed:         rng.Uint64(),
			SampleRateHz: sampleRateHz,
			ShaftHz:      4.5 + rng.Float64(),
			Fault:        f,
		})
		out[i] = Example{X: v.Window(make([]float64, window)), Fault: f}
	}
	return out
}

// Normalization is the per-channel affine map applied before the model: (x - Mean) / Std.
type Normalization struct {
	Mean, Std float64
}

// Apply returns the normalised copy of x.
func (n Normalization) Apply(x []float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = (v - n.Mean) / n.Std
	}
	return out
}

// fitNormalization computes mean and standard deviation over the healthy examples: the scale
// is then "how far from normal operation", which stays meaningful whatever faults are seen.
func fitNormalization(data []Example) Normalization {
	var sum float64
	var n int
	for _, e := range data {
		if e.Label() != 0 {
			continue
		}
		for _, v := range e.X {
			sum += v
			n++
		}
	}
	mean := sum / float64(n)
	var ss float64
	for _, e := range data {
		if e.Label() != 0 {
			continue
		}
		for _, v := range e.X {
			d := v - mean
			ss += float64(d * d)
		}
	}
	return Normalization{Mean: mean, Std: math.Sqrt(ss / float64(n))}
}
