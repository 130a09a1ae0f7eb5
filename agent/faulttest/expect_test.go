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

// maxResync is how many windows the check may skip forward to find a result's window again
// (results shed before they got a seq, or a stall longer than maxGap).
const maxResync = 2000

// maxGap is the longest run of dropped samples the check bridges inside a window: 2 s at the
// test's 500 Hz. A longer stall is found again by the forward search once the window is past
// it.
const maxGap = 2 * sampleRate

// smallGap is the gap the check tries first: the sample loop drops a few samples at a time
// while inference is late.
const smallGap = 64

// doubleGap is the longest of two gaps the check bridges within one stride.
const doubleGap = 24

// maxHyps bounds how many readings of the sample stream the check keeps at once.
const maxHyps = 4096

// expected recomputes the results of an agent started with agentConfig{Seed: seed}: a process
// that drops no samples makes its k-th result from samples [k*stride, k*stride+window) of a
// fresh generator, because every start of the agent opens a fresh simulated sensor. A sample
// the agent drops because inference is late was still drawn from the generator, so it leaves
// a gap in the agent's window: the windows after a drop are not windows of the generator's
// stream but its last samples before the gap followed by its first samples after.
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
	idx := make([]int, e.window)
	for j := range idx {
		idx[j] = start + j
	}
	e.outs[start] = e.predict(t, idx)
	return e.outs[start]
}

// ringOutputs returns the model outputs of a window made of the samples at the indices idx.
func (e *expected) ringOutputs(t *testing.T, idx []int) []float32 {
	t.Helper()
	if idx[len(idx)-1]-idx[0] == len(idx)-1 { // contiguous: cached
		return e.outputs(t, idx[0])
	}
	return e.predict(t, idx)
}

// predict runs the model on the samples at the indices idx, normalized as the agent does.
func (e *expected) predict(t *testing.T, idx []int) []float32 {
	t.Helper()
	for len(e.samples) <= idx[len(idx)-1] {
		e.samples = append(e.samples, float32(e.vib.Next()))
	}
	w := make([]float32, len(idx))
	for j, i := range idx {
		w[j] = e.samples[i]
		if len(e.mean) > 0 {
			w[j] -= e.mean[0]
		}
		if len(e.std) > 0 {
			w[j] /= e.std[0]
		}
	}
	out, _, err := e.pred.Predict(w)
	if err != nil {
		t.Fatalf("predict the window of samples %d..%d: %v", idx[0], idx[len(idx)-1], err)
	}
	return slices.Clone(out)
}

func (e *expected) matches(t *testing.T, idx []int, r wire.Result) bool {
	out := e.ringOutputs(t, idx)
	return slices.Equal(out, r.Outputs) && r.Score == float64(out[0])
}

// reading is one account of which samples the agent took: the sample indices of the window of
// the last result checked, oldest first.
type reading struct {
	ring    []int
	restart bool // came from a restart that no later result has confirmed yet
}

// contentCheck walks a device's results in seq order and checks each against the seeded
// sensor. The model's single sigmoid output saturates (1.0 and its neighbours recur in a tenth
// of all windows), so one result rarely pins down its window: the check keeps every reading
// of the sample stream that explains all results so far and lets the next results choose.
// Result n+1 is, in order of preference: the window of result n moved on by one stride; that
// window moved on past a few dropped samples (a gap of up to smallGap), or the first window
// (the agent restarted; with allowRestart a candidate at every step); a gap of up to maxGap,
// or the window moved on by up to maxSkip strides (results shed before they got a seq).
// Every candidate must give the result's outputs bit for bit, so an old window's content
// under a new seq is still caught: no reading ever moves backwards except to the first window.
type contentCheck struct {
	e        *expected
	maxSkip  int       // strides a forward skip may span
	readings []reading // nil before the first result
	// allowRestart: the agent may have restarted, so the first window is a candidate for
	// every result; otherwise only for one that no other small step explains.
	allowRestart            bool
	restarts, resyncs, gaps int
}

// skip moves every reading on by n results that will never be seen (dropped seqs).
func (c *contentCheck) skip(n int) {
	for i, rd := range c.readings {
		c.readings[i].ring = c.extend(rd.ring, n*c.e.stride, 0, 0)
	}
}

// extend returns ring moved on by n taken samples, the first taken of which come after a gap
// of g dropped samples at offset at (0 ≤ at ≤ n) among them.
func (c *contentCheck) extend(ring []int, n, at, g int) []int {
	w, last := len(ring), ring[len(ring)-1]
	next := make([]int, w)
	for j := range next {
		p := n + j // position in ring followed by the n taken samples: the last w are kept
		if p < w {
			next[j] = ring[p]
			continue
		}
		k := p - w
		next[j] = last + 1 + k
		if k >= at {
			next[j] += g
		}
	}
	return next
}

func (c *contentCheck) check(t *testing.T, r wire.Result) error {
	w, stride := c.e.window, c.e.stride
	if c.readings == nil {
		// Before the first result: a ring that one stride moves onto the first window.
		first := make([]int, w)
		for i := range first {
			first[i] = i - stride
		}
		c.readings = []reading{{ring: first}}
	}
	var next []reading
	seen := map[string]bool{}
	try := func(ring []int, restart bool) {
		if len(next) >= maxHyps || !c.e.matches(t, ring, r) {
			return
		}
		key := fmt.Sprint(ring)
		if !seen[key] {
			seen[key] = true
			next = append(next, reading{ring: ring, restart: restart})
		}
	}
	gaps := func(from, to, readings int) {
		for _, rd := range c.readings[:min(readings, len(c.readings))] {
			for g := from; g <= to; g++ {
				for at := range stride {
					try(c.extend(rd.ring, stride, at, g), rd.restart)
				}
			}
		}
	}
	window0 := make([]int, w)
	for i := range window0 {
		window0[i] = i
	}
	for _, rd := range c.readings {
		try(c.extend(rd.ring, stride, 0, 0), rd.restart)
	}
	if c.allowRestart {
		try(window0, true)
	}
	// A restart found among the first candidates does not rule out a gap: both are kept.
	if !slices.ContainsFunc(next, func(rd reading) bool { return !rd.restart }) {
		n := len(next)
		gaps(1, smallGap, len(c.readings))
		try(window0, true)
		if slices.ContainsFunc(next[n:], func(rd reading) bool { return !rd.restart }) {
			c.gaps++
		}
	}
	if len(next) == 0 {
		// Two gaps within one stride: the infer loop took part of a stride's samples before
		// it stalled again.
		for _, rd := range c.readings[:min(16, len(c.readings))] {
			for a := 1; a < stride; a++ {
				for g1 := 1; g1 <= doubleGap; g1++ {
					for g2 := 1; g2 <= doubleGap; g2++ {
						for at := range a {
							ring := c.extend(c.extend(rd.ring, a, at, g1), stride-a, 0, g2)
							try(ring, rd.restart)
						}
					}
				}
			}
		}
		if len(next) > 0 {
			c.gaps++
		}
	}
	if len(next) == 0 {
		// The long search runs from the first few readings only (the nearest, as candidates
		// are found in order): it costs thousands of windows each.
		gaps(smallGap+1, maxGap, 16)
		for _, rd := range c.readings[:min(16, len(c.readings))] {
			for n := stride + 1; n <= c.maxSkip*stride; n++ {
				try(c.extend(rd.ring, n, 0, 0), rd.restart)
			}
		}
		if len(next) > 0 {
			c.resyncs++
		}
	}
	if len(next) == 0 {
		ring := c.extend(c.readings[0].ring, stride, 0, 0)
		return fmt.Errorf("seq %d (ts %s) carries outputs %v, which no reading of the seeded sensor gives (%d readings; the first expected %v from samples %d..%d)",
			r.Seq, r.Time.Format(time.RFC3339Nano), r.Outputs, len(c.readings), c.e.ringOutputs(t, ring), ring[0], ring[len(ring)-1])
	}
	c.readings = next
	c.confirm()
	return nil
}

// confirm counts a restart once every reading left comes from one.
func (c *contentCheck) confirm() {
	for _, rd := range c.readings {
		if !rd.restart {
			return
		}
	}
	c.restarts++
	for i := range c.readings {
		c.readings[i].restart = false
	}
}
