package faulttest

// The independent content check: the agents under test read sim:vibration with a known seed,
// so the outputs every result must carry can be recomputed here from the seeded generator and
// the model, without looking at anything the agent or the controller stored.

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/sim"
)

// maxResync is how many windows the check may skip forward to find a result's window again:
// an agent whose inference falls behind drops samples (counted in its health), which shifts
// the windows after the gap.
const maxResync = 2000

// expected recomputes the results of an agent started with agentConfig{Seed: seed}: a process
// that drops no samples makes its k-th result from samples [k*stride, k*stride+window) of a
// fresh generator, because every start of the agent opens a fresh simulated sensor. Samples
// dropped when inference falls behind shift the windows after them by any number of samples.
type expected struct {
	pred    *tfpredict.Predictor
	window  int
	stride  int
	mean    []float32
	std     []float32
	vib     *sim.Vibration
	samples []float32
	outs    map[int][]float32 // outputs of the window starting at a sample, computed lazily
}

func newExpected(t *testing.T, seed uint64) *expected {
	t.Helper()
	p, err := tfpredict.Load(modelPath, tfpredict.ManifestPath(modelPath))
	if err != nil {
		t.Fatalf("load the test model: %v", err)
	}
	spec := p.Spec()
	if spec.Channels != 1 {
		t.Fatalf("test model has %d channels, the check handles 1", spec.Channels)
	}
	// The same configuration as the agent's "sim:vibration?rate=…&seed=…" (see agentConfig).
	vib := sim.NewVibration(sim.VibrationConfig{Seed: seed % 1_000_000, SampleRateHz: sampleRate})
	return &expected{pred: p, window: spec.Window, stride: spec.Stride, mean: spec.Mean, std: spec.Std, vib: vib, outs: map[int][]float32{}}
}

// outputs returns the model outputs of the window starting at sample start.
func (e *expected) outputs(t *testing.T, start int) []float32 {
	t.Helper()
	if out, ok := e.outs[start]; ok {
		return out
	}
	for len(e.samples) < start+e.window {
		e.samples = append(e.samples, float32(e.vib.Next()))
	}
	w := slices.Clone(e.samples[start : start+e.window])
	for j := range w {
		if len(e.mean) > 0 {
			w[j] -= e.mean[0]
		}
		if len(e.std) > 0 {
			w[j] /= e.std[0]
		}
	}
	out, _, err := e.pred.Predict(w)
	if err != nil {
		t.Fatalf("predict the window at sample %d: %v", start, err)
	}
	e.outs[start] = slices.Clone(out)
	return e.outs[start]
}

func (e *expected) matches(t *testing.T, start int, r wire.Result) bool {
	out := e.outputs(t, start)
	return slices.Equal(out, r.Outputs) && r.Score == float64(out[0])
}

// contentCheck walks a device's results in seq order and checks each against the windows of
// the seeded sensor: result n+1 must be the window one stride after result n's, or the first
// window (the agent restarted), or, after dropped samples or results, a window up to maxSkip
// strides further on.
type contentCheck struct {
	e                 *expected
	maxSkip           int // strides a forward skip may span
	pos               int // the first sample of the window the next result should be
	restarts, resyncs int
}

// skip moves the expected window on by n results that will never be seen (dropped seqs).
func (c *contentCheck) skip(n int) { c.pos += n * c.e.stride }

func (c *contentCheck) check(t *testing.T, r wire.Result) error {
	switch {
	case c.e.matches(t, c.pos, r):
	case c.e.matches(t, 0, r):
		c.pos = 0
		c.restarts++
	default:
		found := false
		for p := c.pos + 1; p <= c.pos+c.maxSkip*c.e.stride; p++ {
			if c.e.matches(t, p, r) {
				c.pos, found = p, true
				c.resyncs++
				break
			}
		}
		if !found {
			return fmt.Errorf("seq %d (ts %s) carries outputs %v, which no window of the seeded sensor from sample %d on gives (expected %v)",
				r.Seq, r.Time.Format(time.RFC3339Nano), r.Outputs, c.pos, c.e.outputs(t, c.pos))
		}
	}
	c.pos += c.e.stride
	return nil
}
