package agent

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/stats"
)

// Swap is a Predictor whose model can be replaced while the agent runs: the model update
// (agent/update) activates a candidate, runs one in shadow beside the active model, and rolls
// back, all through a Swap handed to the Agent as its Predictor.
//
// Windows reach Predict already normalized with the pipeline's spec (the first model's); a
// model with other normalization gets the window re-normalized for it. Window, stride,
// channels and sample rate are the sensor pipeline's and cannot change while it runs
// (Compatible checks a candidate).
//
// Every window is run by exactly one active model: Activate takes the lock Predict holds for
// the whole window, so a swap lands between two windows, and none is skipped or run twice.
type Swap struct {
	base ModelSpec // the pipeline's spec, fixed

	// mu guards the fields below. Predict holds it for one window.
	mu     sync.Mutex
	cur    *slot // the active model
	shadow *slot // the candidate in shadow, nil when none
	// Shadow comparison since StartShadow.
	shWindows, shAgree uint64
	shActHist          []float64 // score histogram of the active model (shadowBins bins)
	shCanHist          []float64 // score histogram of the candidate
	// Probation figures of cur since Activate.
	prevP99 time.Duration // p99 of the model cur replaced, measured while it ran

	last *slot // the slot that ran the last window; read by the infer loop only
}

// slot is one loaded model with its own figures.
type slot struct {
	p      Predictor
	spec   ModelSpec
	ref    wire.ModelRef
	window []float32 // re-normalized window, when the normalization differs from base
	lat    latRing
	// Counters since the slot started running (active) or started shadowing.
	windows, errors uint64
	// drift: output-0 histogram of the baseline, and the live counts against it.
	drift     *stats.Histogram
	driftFreq []float64
	driftN    []float64
}

// latRing keeps the last latencyRing latencies for a p99.
type latRing struct {
	d    [latencyRing]time.Duration
	n, i int
}

func (r *latRing) add(d time.Duration) {
	r.d[r.i] = d
	r.i = (r.i + 1) % latencyRing
	r.n = min(r.n+1, latencyRing)
}

func (r *latRing) p99() time.Duration {
	if r.n == 0 {
		return 0
	}
	s := slices.Clone(r.d[:r.n])
	slices.Sort(s)
	return s[max(int(math.Ceil(0.99*float64(len(s))))-1, 0)]
}

// DriftBaseline is a model's training distribution of output 0, to watch in probation.
type DriftBaseline struct {
	Histogram   stats.Histogram
	Frequencies []float64
}

// NewSwap returns a Swap running p.
func NewSwap(p Predictor) *Swap {
	s := &Swap{base: p.Spec()}
	s.cur = s.newSlot(p, nil)
	return s
}

func (s *Swap) newSlot(p Predictor, b *DriftBaseline) *slot {
	sl := &slot{p: p, spec: p.Spec(), ref: p.Model()}
	if !slices.Equal(sl.spec.Mean, s.base.Mean) || !slices.Equal(sl.spec.Std, s.base.Std) {
		sl.window = make([]float32, s.base.Window*s.base.Channels)
	}
	if b != nil && len(b.Frequencies) == len(b.Histogram.Edges)-1 && b.Histogram.Validate() == nil {
		sl.drift, sl.driftFreq = &b.Histogram, b.Frequencies
		sl.driftN = make([]float64, len(b.Frequencies))
	}
	return sl
}

// Compatible reports, in one line, why p cannot replace the active model in this pipeline.
func (s *Swap) Compatible(p Predictor) error {
	c, b := p.Spec(), s.base
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Window != b.Window || c.Stride != b.Stride || c.Channels != b.Channels || c.SampleRateHz != b.SampleRateHz {
		return fmt.Errorf("candidate takes %d x %d channels, stride %d at %v Hz; the running pipeline gives %d x %d, stride %d at %v Hz",
			c.Window, c.Channels, c.Stride, c.SampleRateHz, b.Window, b.Channels, b.Stride, b.SampleRateHz)
	}
	return nil
}

// Predict implements Predictor with the active model, and runs the shadow candidate, if any,
// on the same window (its failures count against it and never reach the caller).
func (s *Swap) Predict(window []float32) ([]float32, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur
	s.last = cur
	out, lat, err := s.run(cur, window)
	cur.windows++
	if err != nil {
		cur.errors++
		return nil, 0, err
	}
	if !finite(out) {
		cur.errors++ // the agent refuses the result too; probation counts it as a failure
	}
	cur.lat.add(lat)
	if cur.drift != nil && len(out) > 0 {
		cur.driftN[cur.drift.Bin(float64(out[0]))]++
	}
	if sh := s.shadow; sh != nil {
		s.compare(sh, window, out)
	}
	return out, lat, nil
}

// run feeds window (normalized with the base spec) to sl's model.
func (s *Swap) run(sl *slot, window []float32) ([]float32, time.Duration, error) {
	if sl.window == nil {
		return sl.p.Predict(window)
	}
	c := s.base.Channels
	for i, x := range window {
		ch := i % c
		raw := x
		if len(s.base.Std) > 0 {
			raw *= s.base.Std[ch]
		}
		if len(s.base.Mean) > 0 {
			raw += s.base.Mean[ch]
		}
		if len(sl.spec.Mean) > 0 {
			raw -= sl.spec.Mean[ch]
		}
		if len(sl.spec.Std) > 0 {
			raw /= sl.spec.Std[ch]
		}
		sl.window[i] = raw
	}
	return sl.p.Predict(sl.window)
}

// shadowBins is the number of equal-width score bins over [0, 1] the shadow comparison's
// output distributions are counted in (scores outside land in the end bins).
const shadowBins = 20

// compare runs the shadow candidate on window and scores it against the active output.
// Called with mu held; active is only read before the candidate runs (it may alias the
// active model's tensor, which the candidate does not touch).
func (s *Swap) compare(sh *slot, window, active []float32) {
	aLabel, aEvent, aScore, aErr := Outcome(s.cur.spec, active)
	if aErr != nil {
		return
	}
	out, lat, err := s.run(sh, window)
	sh.windows++
	s.shWindows++
	if err != nil {
		sh.errors++
		return
	}
	sh.lat.add(lat)
	cLabel, cEvent, cScore, cErr := Outcome(sh.spec, out)
	if cErr != nil {
		sh.errors++
		return
	}
	if cLabel == aLabel && cEvent == aEvent {
		s.shAgree++
	}
	s.shActHist[scoreBin(aScore)]++
	s.shCanHist[scoreBin(cScore)]++
}

func finite(out []float32) bool {
	for _, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}

func scoreBin(v float64) int {
	return min(max(int(v*shadowBins), 0), shadowBins-1)
}

// StartShadow runs p beside the active model on every window from the next one on, until
// StopShadow. It replaces a shadow already running and resets the figures.
func (s *Swap) StartShadow(p Predictor) error {
	if err := s.Compatible(p); err != nil {
		return err
	}
	sl := s.newSlot(p, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shadow = sl
	s.shWindows, s.shAgree = 0, 0
	s.shActHist, s.shCanHist = make([]float64, shadowBins), make([]float64, shadowBins)
	return nil
}

// StopShadow ends the shadow run and returns its final figures.
func (s *Swap) StopShadow() wire.ShadowStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.shadowStatsLocked()
	s.shadow = nil
	return st
}

// ShadowStats returns the figures of the shadow run so far; zero when none runs.
func (s *Swap) ShadowStats() wire.ShadowStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shadowStatsLocked()
}

func (s *Swap) shadowStatsLocked() wire.ShadowStats {
	sh := s.shadow
	if sh == nil || s.shWindows == 0 {
		return wire.ShadowStats{}
	}
	st := wire.ShadowStats{
		Windows:   s.shWindows,
		Agreement: float64(s.shAgree) / float64(s.shWindows),
		OutputJS:  JSDistance(s.shActHist, s.shCanHist),
	}
	if a := s.cur.lat.p99(); a > 0 {
		st.LatencyRatio = float64(sh.lat.p99()) / float64(a)
	}
	return st
}

// Activate makes p the active model from the next window on and returns the model it
// replaced. b, if not nil, is p's training output distribution, watched for drift in
// ProbationStats. A shadow run of p ends.
func (s *Swap) Activate(p Predictor, b *DriftBaseline) (Predictor, error) {
	if err := s.Compatible(p); err != nil {
		return nil, err
	}
	sl := s.newSlot(p, b)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur
	s.prevP99 = old.lat.p99()
	s.cur, s.shadow = sl, nil
	return old.p, nil
}

// ProbationStats returns the active model's figures since Activate.
func (s *Swap) ProbationStats() wire.ProbationStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cur
	st := wire.ProbationStats{Windows: c.windows, Errors: c.errors}
	if p := c.lat.p99(); s.prevP99 > 0 && p > 0 {
		st.LatencyRatio = float64(p) / float64(s.prevP99)
	}
	if c.drift != nil && c.windows > c.errors {
		n := float64(c.windows - c.errors)
		live := make([]float64, len(c.driftN))
		for i, v := range c.driftN {
			live[i] = v / n
		}
		if psi, err := stats.PSI(c.driftFreq, live, 0); err == nil {
			st.DriftPSI = psi
		}
	}
	return st
}

// Model implements Predictor: the active model.
func (s *Swap) Model() wire.ModelRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.ref
}

// Active returns the active Predictor.
func (s *Swap) Active() Predictor {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.p
}

// Spec implements Predictor: the pipeline's spec, which never changes.
func (s *Swap) Spec() ModelSpec { return s.base }

// lastRun returns the spec and identity of the model that ran the last window. Only the
// goroutine calling Predict may call it.
func (s *Swap) lastRun() (ModelSpec, wire.ModelRef) {
	if s.last == nil {
		return s.cur.spec, s.cur.ref
	}
	return s.last.spec, s.last.ref
}

// windowModel returns the spec and identity of the model that ran the infer loop's last
// window: the Agent's own unless its Predictor is a Swap.
func (a *Agent) windowModel() (ModelSpec, wire.ModelRef) {
	if s, ok := a.opts.Predictor.(*Swap); ok {
		return s.lastRun()
	}
	return a.spec, a.model
}

// activeModel is the model running now.
func (a *Agent) activeModel() wire.ModelRef {
	if s, ok := a.opts.Predictor.(*Swap); ok {
		return s.Model()
	}
	return a.model
}

// Outcome reads a model's outputs the way a wire.Result reports them: the outcome label,
// whether it is an event, and the score.
func Outcome(spec ModelSpec, out []float32) (label string, event bool, score float64, err error) {
	if len(out) == 0 {
		return "", false, 0, errors.New("predict: model returned no outputs")
	}
	switch spec.OutputKind {
	case OutputAnomaly:
		score = float64(out[0])
		event = score >= spec.Threshold
		labels := []string{"normal", "anomaly"}
		if len(spec.Labels) == 2 {
			labels = spec.Labels
		}
		label = labels[0]
		if event {
			label = labels[1]
		}
	case OutputClassify:
		best := 0
		for i, v := range out {
			if v > out[best] {
				best = i
			}
		}
		score = float64(out[best])
		if best < len(spec.Labels) {
			label = spec.Labels[best]
		} else {
			label = fmt.Sprintf("class%d", best)
		}
		event = best != 0 && score >= spec.Threshold
	}
	if math.IsNaN(score) || math.IsInf(score, 0) {
		return "", false, 0, fmt.Errorf("predict: model returned non-finite score %v", score)
	}
	return label, event, score, nil
}

// JSDistance is the Jensen–Shannon distance (square root of the divergence, natural log,
// so in [0, sqrt(ln 2)]) between two histograms of counts over the same bins; 0 when either
// is empty.
func JSDistance(p, q []float64) float64 {
	var sp, sq float64
	for i := range p {
		sp += p[i]
		sq += q[i]
	}
	if sp == 0 || sq == 0 {
		return 0
	}
	kl := func(a, m float64) float64 {
		if a == 0 {
			return 0
		}
		return a * math.Log(a/m)
	}
	var d float64
	for i := range p {
		a, b := p[i]/sp, q[i]/sq
		m := (a + b) / 2
		d += (kl(a, m) + kl(b, m)) / 2
	}
	return math.Sqrt(max(d, 0))
}
