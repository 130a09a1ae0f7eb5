package synth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// VisionManifest returns a valid manifest for an int8 image model written by this package
// (one [1,H,W,C] int8 input, one int8 class-score output), so that the agent can run it: one
// window is one image (H×W samples of C channels, stride one image), sampleRateHz samples a
// second (H×W gives one inference a second), a baseline and one golden vector computed by
// running the model on seeded random images.
func VisionManifest(name string, model []byte, sampleRateHz float64, seed uint64) (*bundle.Manifest, error) {
	m, err := tflite.Load(model)
	if err != nil {
		return nil, err
	}
	ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
	if err != nil {
		return nil, err
	}
	defer ip.Close()
	x, y := ip.Input(0), ip.Output(0)
	if x.DType() != tensor.Int8 || y.DType() != tensor.Int8 || len(x.Shape()) != 4 {
		return nil, fmt.Errorf("synth: want an int8 [1,H,W,C] input and an int8 output, have %v %v and %v", x.DType(), x.Shape(), y.DType())
	}
	xq, yq := x.Quant(), y.Quant()
	inQ := &bundle.Quantization{Scale: float64(xq.Scale[0]), ZeroPoint: int(xq.ZeroPoint[0])}
	outQ := &bundle.Quantization{Scale: float64(yq.Scale[0]), ZeroPoint: int(yq.ZeroPoint[0])}
	c := x.Shape()[3]
	window := x.NumElements() / c
	channels := []string{"r", "g", "b"}[:min(c, 3)]
	for i := len(channels); i < c; i++ {
		channels = append(channels, fmt.Sprintf("c%d", i))
	}
	norm := make([]bundle.Normalization, c)
	for i := range norm {
		norm[i] = bundle.Normalization{Mean: 0, Std: 1}
	}
	labels := make([]string, y.NumElements())
	for i := range labels {
		labels[i] = fmt.Sprintf("class-%d", i)
	}
	sum := sha256.Sum256(model)
	man := &bundle.Manifest{
		Format: bundle.ManifestFormat, Name: name, Version: "1.0.0",
		Description: "synthetic int8 vision model (random weights) for benchmarks and memory measurements",
		Created:     "2026-01-01T00:00:00Z", ModelFile: name + ".tflite",
		SHA256: hex.EncodeToString(sum[:]), Size: int64(len(model)),
		Input: bundle.Input{Sensor: "camera", Channels: channels, SampleRateHz: sampleRateHz, Window: window, Stride: window,
			Normalization: norm, DType: "int8", Quantization: inQ, Shape: append([]int(nil), x.Shape()...)},
		Output:          bundle.Output{Kind: bundle.OutputClasses, Labels: labels, DType: "int8", Quantization: outQ},
		Metrics:         bundle.Metrics{Accuracy: 0},
		MinAgentVersion: "0.0.0",
	}
	for _, op := range m.Ops() {
		man.Ops = append(man.Ops, op.Name())
	}
	r := rand.New(rand.NewPCG(seed, 0x766973696f6e))
	const windows = 2
	var raws, reals [][]float64
	var golden bundle.GoldenVector
	for k := range windows {
		raw := make([]float64, x.NumElements())
		in := x.Int8()
		for i := range raw {
			q := int8(r.IntN(256) - 128)
			in[i] = q
			raw[i] = inQ.Scale * float64(int(q)-inQ.ZeroPoint) // quantizes back to q exactly
		}
		if err := ip.Invoke(); err != nil {
			return nil, err
		}
		out := y.Int8()
		real := make([]float64, len(out))
		for i, q := range out {
			real[i] = outQ.Scale * float64(int(q)-outQ.ZeroPoint)
		}
		raws, reals = append(raws, raw), append(reals, real)
		if k == 0 {
			golden.Name = "random-image-0"
			for _, q := range in {
				golden.Input = append(golden.Input, float64(q))
			}
			for _, q := range out {
				golden.Output = append(golden.Output, float64(q))
			}
		}
	}
	if man.Baseline, err = bundle.ComputeBaseline("seeded random images", channels, raws, reals, labels); err != nil {
		return nil, err
	}
	man.Golden = &bundle.Golden{Tolerance: bundle.Tolerance{Abs: 0, Rel: 0}, Vectors: []bundle.GoldenVector{golden}}
	if math.IsNaN(man.Input.Quantization.Scale) {
		return nil, fmt.Errorf("synth: input scale is NaN")
	}
	return man, man.Validate()
}
