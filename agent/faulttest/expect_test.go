package faulttest

// The independent content check: the agents under test read sim:vibration with a known seed,
// so the outputs every result must carry can be recomputed here from the seeded generator and
// the model, without looking at anything the agent or the controller stored.

import (
	"fmt"
	"slices"
	"testing"

	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/sim"
)

// maxResync is how many windows the check may skip forward to find a result's window again:
// an agent whose inference falls behind drops samples (counted in its health), which shifts
// the windows after the gap.
const maxResync = 2000

// expected recomputes the results of an agent started with agentConfig{Seed: seed}: window k
// of a process's life covers samples [k*stride, k*stride+window) of a fresh generator, because
// every start of the agent opens a fresh simulated sensor.
type expected struct {
	pred    *tfpredict.Predictor
	window  int
	stride  int
	mean    []float32
	std     []float32
	vib     *sim.Vibration
	samples []float32
	outs    [][]float32 // outputs of window k, computed lazily
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
	return &expected{pred: p, window: spec.Window, stride: spec.Stride, mean: spec.Mean, std: spec.Std, vib: vib}
}

// outputs returns the model outputs of window k.
func (e *expected) outputs(t *testing.T, k int) []float32 {
	t.Helper()
	for len(e.outs) <= k {
		i := len(e.outs)
		for len(e.samples) < i*e.stride+e.window {
			e.samples = append(e.samples, float32(e.vib.Next()))
		}
		w := slices.Clone(e.samples[i*e.stride : i*e.stride+e.window])
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
			t.Fatalf("predict window %d: %v", i, err)
		}
		e.outs = append(e.outs, slices.Clone(out))
	}
	return e.outs[k]
}

func (e *expected) matches(t *testing.T, k int, r wire.Result) bool {
	out := e.outputs(t, k)
	return slices.Equal(out, r.Outputs) && r.Score == float64(out[0])
}

// contentCheck walks a device's results in seq order and checks each against the windows of
// the seeded sensor: result n+1 must be the window after result n's, or window 0 (the agent
// restarted), or, after dropped samples or results, a window up to maxSkip further on.
type contentCheck struct {
	e                 *expected
	maxSkip           int // windows a forward skip may span
	k                 int // the window the next result should be
	restarts, resyncs int
}

func (c *contentCheck) check(t *testing.T, r wire.Result) error {
	switch {
	case c.e.matches(t, c.k, r):
	case c.e.matches(t, 0, r):
		c.k = 0
		c.restarts++
	default:
		found := false
		for k := c.k + 1; k <= c.k+c.maxSkip; k++ {
			if c.e.matches(t, k, r) {
				c.k, found = k, true
				c.resyncs++
				break
			}
		}
		if !found {
			return fmt.Errorf("seq %d carries outputs %v, which no window of the seeded sensor near window %d gives (expected %v)",
				r.Seq, r.Outputs, c.k, c.e.outputs(t, c.k))
		}
	}
	c.k++
	return nil
}
