package train

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/sim"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Identity is what the manifest says about the model beyond what training measures.
type Identity struct {
	Name            string
	Version         string
	Created         string // RFC 3339, fixed so regeneration is byte-identical
	MinAgentVersion string
}

// DefaultIdentity names the committed sample model.
func DefaultIdentity() Identity {
	return Identity{
		Name:            "vibration-anomaly-f32",
		Version:         "1.0.0",
		Created:         "2025-01-01T00:00:00Z",
		MinAgentVersion: "0.1.0",
	}
}

// Result is a trained model, serialised and described.
type Result struct {
	Net       *MLP // parameters as stored in the file (rounded to float32)
	Norm      Normalization
	TFLite    []byte
	Manifest  *bundle.Manifest
	JSON      []byte // the manifest as written to disk
	EpochLoss []float64
}

// Run trains a model from cfg and serialises it. progress, if not nil, receives a line per
// epoch; a library logs nothing by itself.
func Run(cfg Config, id Identity, progress io.Writer) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("train config: %w", err)
	}
	train := Windows(cfg.Seed, SplitTrain, cfg.TrainWindows, cfg.Window, cfg.SampleRateHz)
	test := Windows(cfg.Seed, SplitTest, cfg.TestWindows, cfg.Window, cfg.SampleRateHz)
	norm := fitNormalization(train)
	xs := make([][]float64, len(train))
	for i, e := range train {
		xs[i] = norm.Apply(e.X)
	}

	rng := rand.New(rand.NewPCG(cfg.Seed, 0x7472616e)) // stream constant: "tran"
	sizes := append(append([]int{cfg.Window}, cfg.Hidden...), 1)
	net := newMLP(rng, sizes)
	tr := newTrainer(net, cfg.LearningRate)
	order := make([]int, len(train))
	for i := range order {
		order[i] = i
	}
	res := &Result{Net: net, Norm: norm}
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for k, idx := range order {
			tr.accumulate(xs[idx], train[idx].Label())
			if (k+1)%cfg.BatchSize == 0 || k == len(order)-1 {
				tr.step()
			}
		}
		loss := tr.takeLoss()
		res.EpochLoss = append(res.EpochLoss, loss)
		if progress != nil {
			fmt.Fprintf(progress, "epoch %d/%d: loss %.4f\n", epoch+1, cfg.Epochs, loss)
		}
	}
	for _, l := range net.Layers {
		for _, w := range l.W {
			if math.IsNaN(w) || math.IsInf(w, 0) {
				return nil, fmt.Errorf("training diverged: non-finite weight")
			}
		}
	}
	net.roundToFloat32()

	m := evaluate(net, norm, test, cfg.Threshold)
	m.TrainWindows = len(train)

	model, err := BuildTFLite(net, cfg.Window)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(model)
	man := &bundle.Manifest{
		Format:      bundle.ManifestFormat,
		Name:        id.Name,
		Version:     id.Version,
		Description: fmt.Sprintf("Vibration anomaly detector: float32 MLP %v on %d-sample windows of one accelerometer axis at %g Hz; outputs P(fault). Trained on models/sim signals by models/train.", sizes, cfg.Window, cfg.SampleRateHz),
		Created:     id.Created,
		ModelFile:   id.Name + ".tflite",
		SHA256:      hex.EncodeToString(sum[:]),
		Size:        int64(len(model)),
		Input: bundle.Input{
			Sensor:        "vibration",
			Channels:      []string{"accel"},
			SampleRateHz:  cfg.SampleRateHz,
			Window:        cfg.Window,
			Stride:        cfg.Stride,
			Normalization: []bundle.Normalization{{Mean: norm.Mean, Std: norm.Std}},
			DType:         "float32",
			Shape:         []int{1, cfg.Window},
		},
		Output: bundle.Output{
			Kind:      bundle.OutputAnomalyScore,
			Labels:    []string{"normal", "anomaly"},
			Threshold: cfg.Threshold,
		},
		Metrics:         m,
		Ops:             []string{schema.OpFullyConnected.String(), schema.OpLogistic.String()},
		MinAgentVersion: id.MinAgentVersion,
	}
	js, err := man.Encode()
	if err != nil {
		return nil, err
	}
	res.TFLite, res.Manifest, res.JSON = model, man, js
	return res, nil
}

// evaluate scores the held-out set. Rates are rounded to 4 decimals: the manifest is for
// people as much as programs.
func evaluate(net *MLP, norm Normalization, test []Example, threshold float64) bundle.Metrics {
	var correct, healthy, falsePos int
	hits := make([]int, len(sim.Faults))
	totals := make([]int, len(sim.Faults))
	for _, e := range test {
		anomaly := net.Score(norm.Apply(e.X)) >= threshold
		if anomaly == (e.Fault != sim.FaultNone) {
			correct++
		}
		totals[e.Fault]++
		if e.Fault == sim.FaultNone {
			healthy++
			if anomaly {
				falsePos++
			}
		} else if anomaly {
			hits[e.Fault]++
		}
	}
	round := func(x float64) float64 { return math.Round(x*1e4) / 1e4 }
	m := bundle.Metrics{
		Accuracy:    round(float64(correct) / float64(len(test))),
		Recall:      map[string]float64{},
		EvalWindows: len(test),
	}
	if healthy > 0 {
		m.FalsePositiveRate = round(float64(falsePos) / float64(healthy))
	}
	for _, f := range sim.Faults[1:] {
		if totals[f] > 0 {
			m.Recall[f.String()] = round(float64(hits[f]) / float64(totals[f]))
		}
	}
	return m
}

// BuildTFLite writes net as a float32 .tflite model with input [1,window] named "window" and
// output [1,1] named "anomaly_score": FULLY_CONNECTED (+RELU) per layer, then LOGISTIC.
func BuildTFLite(net *MLP, window int) ([]byte, error) {
	if len(net.Layers) == 0 || net.Layers[0].In != window || net.Layers[len(net.Layers)-1].Out != 1 {
		return nil, fmt.Errorf("build tflite: network does not map %d inputs to 1 output", window)
	}
	m := write.NewModel("Outpost sample model: vibration anomaly detector (float32 MLP), generated by models/train")
	sg := m.Subgraph()
	sg.SetName("main")
	f32 := schema.TensorTypeFloat32
	x := sg.AddTensor(write.Tensor{Name: "window", Type: f32, Shape: []int32{1, int32(window)}})
	in := x
	for i, l := range net.Layers {
		w := make([]float32, len(l.W))
		for j, v := range l.W {
			w[j] = float32(v)
		}
		b := make([]float32, len(l.B))
		for j, v := range l.B {
			b[j] = float32(v)
		}
		wt := sg.AddTensor(write.Tensor{Name: fmt.Sprintf("dense_%d/weights", i), Type: f32,
			Shape: []int32{int32(l.Out), int32(l.In)}, Data: write.Float32s(w)})
		bt := sg.AddTensor(write.Tensor{Name: fmt.Sprintf("dense_%d/bias", i), Type: f32,
			Shape: []int32{int32(l.Out)}, Data: write.Float32s(b)})
		act, name := schema.ActivationRelu, fmt.Sprintf("dense_%d/relu", i)
		if i == len(net.Layers)-1 {
			act, name = schema.ActivationNone, "logit"
		}
		out := sg.AddTensor(write.Tensor{Name: name, Type: f32, Shape: []int32{1, int32(l.Out)}})
		sg.AddOp(schema.OpFullyConnected, 1, []int32{in, wt, bt}, []int32{out},
			write.FullyConnectedOptions{Activation: act})
		in = out
	}
	score := sg.AddTensor(write.Tensor{Name: "anomaly_score", Type: f32, Shape: []int32{1, 1}})
	sg.AddOp(schema.OpLogistic, 1, []int32{in}, []int32{score}, nil)
	sg.SetInputs(x)
	sg.SetOutputs(score)
	buf, err := m.Bytes()
	if err != nil {
		return nil, fmt.Errorf("build tflite: %w", err)
	}
	return buf, nil
}

// WriteFiles writes NAME.tflite and NAME.json into dir, NAME being the manifest's name.
func (r *Result) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{r.Manifest.ModelFile, r.TFLite},
		{r.Manifest.Name + ".json", r.JSON},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// OracleBatch returns n normalised simulated windows (half healthy, half faulty) as JSON
// Lines in the input format of the TFLite oracle's --batch mode, each line named after its
// condition. The values are float32, the model's input type, printed exactly.
func OracleBatch(cfg Config, norm Normalization, n int) []byte {
	var out []byte
	for i, e := range Windows(cfg.Seed, SplitDemo, n, cfg.Window, cfg.SampleRateHz) {
		out = fmt.Appendf(out, `{"name":"%s-%d","inputs":[[`, e.Fault, i)
		for j, v := range norm.Apply(e.X) {
			if j > 0 {
				out = append(out, ',')
			}
			out = strconv.AppendFloat(out, float64(float32(v)), 'g', -1, 32)
		}
		out = append(out, "]]}\n"...)
	}
	return out
}
