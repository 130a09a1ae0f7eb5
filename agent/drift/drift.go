// Package drift watches a model's inputs and outputs on the device and compares them with the
// training baseline the model package carries (docs/monitoring.md).
//
// A Monitor keeps, per input channel and per output value, streaming statistics over a
// window of inferences or of time: a histogram on the baseline's bin edges, mean and
// variance (Welford), min and max, and P² quantile estimates. Memory is fixed when the
// Monitor is made and Observe allocates nothing. When a window closes the Monitor scores
// each feature against its baseline (PSI, binned KS, Jensen–Shannon distance from
// models/stats, and a CUSUM on the standardized window mean across windows) and returns a
// compact wire.DriftSummary, plus a wire.Event of kind EventDrift naming the features whose
// scores crossed their thresholds.
//
// A Monitor is used by one goroutine (the agent's infer loop); it does no I/O and starts no
// goroutines.
package drift

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/stats"
)

// DefaultWindow is the number of inferences in a window unless configured otherwise: with
// the sample vibration model (stride 32 at 50 Hz) about 10.7 minutes, and 64,000 input
// samples, well above the histogram scores' minimum sample size.
const DefaultWindow = 1000

// DefaultQuantiles are the probabilities the summary's quantile estimates are at.
var DefaultQuantiles = []float64{0.05, 0.5, 0.95}

// Config configures a Monitor. A window closes after Window inferences or when Period has
// passed since its first inference, whichever comes first; zero disables that limit, and
// with both zero Window is DefaultWindow.
type Config struct {
	Device     string
	Window     int64         // inferences per window
	Period     time.Duration // time per window
	Thresholds bundle.DriftThresholds
	Quantiles  []float64 // default DefaultQuantiles; at most 8
}

// Report is what a closed window produces.
type Report struct {
	Summary wire.DriftSummary
	// Event is set when a score crossed its threshold; its Reason names the features.
	Event *wire.Event
}

// Monitor accumulates one window at a time. The zero value is not usable; call New.
type Monitor struct {
	cfg      Config
	th       bundle.DriftThresholds
	model    wire.ModelRef
	channels int
	inputs   []feature
	outputs  []feature
	n        int64 // inferences in the window
	start    time.Time
	last     time.Time
	window   uint64 // windows closed so far
}

// feature is one monitored value's window state and baseline. Its slices are allocated once
// by New.
type feature struct {
	name, role string
	base       *bundle.FeatureBaseline
	hist       stats.Histogram // baseline edges, live counts
	live       []float64       // scratch: counts as float64 for the scores
	count      int64
	mean, m2   float64 // Welford's running mean and sum of squared deviations
	min, max   float64
	q          []p2
	cusum      stats.CUSUM
}

// New returns a Monitor for the model m describes; model names the model in summaries.
// cfg.Thresholds' zero fields take the manifest's thresholds, then the defaults.
func New(m *bundle.Manifest, model wire.ModelRef, cfg Config) (*Monitor, error) {
	if m == nil || m.Baseline == nil {
		return nil, errors.New("drift monitor: the model has no baseline")
	}
	if cfg.Window < 0 || cfg.Period < 0 {
		return nil, fmt.Errorf("drift monitor: window %d and period %v must not be negative", cfg.Window, cfg.Period)
	}
	if cfg.Window == 0 && cfg.Period == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Quantiles == nil {
		cfg.Quantiles = DefaultQuantiles
	}
	if len(cfg.Quantiles) > 8 {
		return nil, fmt.Errorf("drift monitor: %d quantiles, at most 8", len(cfg.Quantiles))
	}
	for _, p := range cfg.Quantiles {
		if !(p > 0 && p < 1) {
			return nil, fmt.Errorf("drift monitor: quantile probability %v is not in (0,1)", p)
		}
	}
	if err := cfg.Thresholds.Validate(); err != nil {
		return nil, fmt.Errorf("drift monitor: %w", err)
	}
	th := m.Drift.WithDefaults().Override(&cfg.Thresholds)
	if len(m.Baseline.Inputs)+len(m.Baseline.Outputs) > wire.MaxDriftFeatures {
		return nil, fmt.Errorf("drift monitor: %d features, at most %d", len(m.Baseline.Inputs)+len(m.Baseline.Outputs), wire.MaxDriftFeatures)
	}
	mon := &Monitor{cfg: cfg, th: th, model: model, channels: len(m.Baseline.Inputs)}
	mk := func(fb *bundle.FeatureBaseline, role string) (feature, error) {
		if err := fb.Histogram.Validate(); err != nil {
			return feature{}, fmt.Errorf("drift monitor: baseline of %s: %w", fb.Name, err)
		}
		if len(fb.Frequencies) != len(fb.Histogram.Counts) || len(fb.Frequencies) > wire.MaxDriftBins {
			return feature{}, fmt.Errorf("drift monitor: baseline of %s has %d frequencies for %d bins", fb.Name, len(fb.Frequencies), len(fb.Histogram.Counts))
		}
		f := feature{name: fb.Name, role: role, base: fb,
			hist: stats.Histogram{Edges: fb.Histogram.Edges, Counts: make([]int64, len(fb.Histogram.Counts))},
			live: make([]float64, len(fb.Histogram.Counts)), q: make([]p2, len(cfg.Quantiles)),
			cusum: stats.CUSUM{K: th.CUSUMK, H: th.CUSUMH}}
		f.reset(cfg.Quantiles)
		return f, nil
	}
	for i := range m.Baseline.Inputs {
		f, err := mk(&m.Baseline.Inputs[i], wire.DriftInput)
		if err != nil {
			return nil, err
		}
		mon.inputs = append(mon.inputs, f)
	}
	for i := range m.Baseline.Outputs {
		f, err := mk(&m.Baseline.Outputs[i], wire.DriftOutput)
		if err != nil {
			return nil, err
		}
		mon.outputs = append(mon.outputs, f)
	}
	return mon, nil
}

// Window returns the inferences per window in effect (0: windows are by time only).
func (m *Monitor) Window() int64 { return m.cfg.Window }

// Thresholds returns the thresholds in effect.
func (m *Monitor) Thresholds() bundle.DriftThresholds { return m.th }

func (f *feature) reset(ps []float64) {
	clear(f.hist.Counts)
	f.count, f.mean, f.m2 = 0, 0, 0
	f.min, f.max = math.Inf(1), math.Inf(-1)
	for i := range f.q {
		f.q[i].reset(ps[i])
	}
}

// add observes one value; NaN and ±Inf are skipped (they have no bin and no moment).
func (f *feature) add(v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	f.hist.Counts[f.hist.Bin(v)]++
	f.count++
	d := v - f.mean
	f.mean += d / float64(f.count)
	f.m2 += float64(d * (v - f.mean))
	f.min, f.max = min(f.min, v), max(f.max, v)
	for i := range f.q {
		f.q[i].add(v)
	}
}

// Observe records one inference at time t: input holds the raw (not normalised) samples of
// the window the model saw, channels of one instant adjacent, in any sample order; output
// holds the model's real-valued outputs. It returns a Report when this inference closes a
// window (or, for time windows, when t is past the open window's period, which then closes
// before t's inference joins the next), and nil otherwise. Values beyond the baseline's
// feature counts are ignored. Observe allocates only when it returns a Report.
func (m *Monitor) Observe(t time.Time, input, output []float32) *Report {
	var r *Report
	if m.cfg.Period > 0 && m.n > 0 && t.Sub(m.start) >= m.cfg.Period {
		r = m.close()
	}
	if m.n == 0 {
		m.start = t
	}
	m.n++
	m.last = t
	if c := m.channels; c > 0 {
		for i, v := range input[:len(input)/c*c] {
			m.inputs[i%c].add(float64(v))
		}
	}
	for i, v := range output[:min(len(output), len(m.outputs))] {
		m.outputs[i].add(float64(v))
	}
	if r == nil && m.cfg.Window > 0 && m.n >= m.cfg.Window {
		r = m.close()
	}
	return r
}

// Flush closes the open window now, e.g. before the model changes; nil when it is empty.
func (m *Monitor) Flush() *Report {
	if m.n == 0 {
		return nil
	}
	return m.close()
}

// close scores the window, builds its Report and starts the next window.
func (m *Monitor) close() *Report {
	m.window++
	s := wire.DriftSummary{V: wire.SchemaVersion, Device: m.cfg.Device, Model: m.model, Window: m.window,
		Start: m.start, End: m.last, Inferences: m.n,
		Thresholds: &wire.DriftThresholds{PSI: m.th.PSI, KS: m.th.KS, JS: m.th.JS, CUSUMH: m.th.CUSUMH, MinSamples: m.th.MinSamples}}
	var culprits []string
	for _, fs := range [][]feature{m.inputs, m.outputs} {
		for i := range fs {
			df := fs[i].score(m.th, m.cfg.Quantiles)
			if len(df.Drifted) > 0 {
				culprits = append(culprits, culprit(&df, m.th))
			}
			s.Features = append(s.Features, df)
			fs[i].reset(m.cfg.Quantiles)
		}
	}
	m.n = 0
	r := &Report{Summary: s}
	if len(culprits) > 0 {
		r.Event = &wire.Event{V: wire.SchemaVersion, Device: m.cfg.Device, Time: m.last, Kind: wire.EventDrift,
			Model: m.model, Reason: "drift in " + strings.Join(culprits, "; ")}
	}
	return r
}

// score computes the window's statistics and scores for f.
func (f *feature) score(th bundle.DriftThresholds, ps []float64) wire.DriftFeature {
	df := wire.DriftFeature{Name: f.name, Role: f.role, Count: f.count,
		QuantileP: slices.Clone(ps), Quantiles: make([]float64, len(f.q)), Counts: slices.Clone(f.hist.Counts)}
	if f.count > 0 {
		df.Mean, df.Std, df.Min, df.Max = f.mean, math.Sqrt(f.m2/float64(f.count)), f.min, f.max
	}
	for i := range f.q {
		df.Quantiles[i] = f.q[i].value()
	}
	if f.count >= max(th.MinSamples, 1) {
		for i, c := range f.hist.Counts {
			f.live[i] = float64(c) / float64(f.count)
		}
		// The baseline's frequencies and these counts are valid by construction, so the
		// scores cannot fail.
		df.PSI, _ = stats.PSIEvidently(f.base.Frequencies, f.live)
		df.KS, _ = stats.KSBinned(f.base.Frequencies, f.live)
		df.JS, _ = stats.JSDistance(f.base.Frequencies, f.live)
		df.Scored = true
		for _, c := range []struct {
			name     string
			v, limit float64
		}{{wire.ScorePSI, df.PSI, th.PSI}, {wire.ScoreKS, df.KS, th.KS}, {wire.ScoreJS, df.JS, th.JS}} {
			if c.v > c.limit {
				df.Drifted = append(df.Drifted, c.name)
			}
		}
	}
	// The CUSUM needs a baseline spread to standardize by; a constant training feature has
	// none, and its drift shows in the histogram scores instead.
	if f.count >= stats.MinSamplesMean && f.base.Std > 0 {
		if f.cusum.Update((f.mean - f.base.Mean) / f.base.Std) {
			df.Drifted = append(df.Drifted, wire.ScoreCUSUM)
		}
	}
	df.CUSUM = f.cusum.Score()
	return df
}

// culprit describes one drifted feature for an event's reason: "accel (psi 0.41 > 0.25)".
func culprit(df *wire.DriftFeature, th bundle.DriftThresholds) string {
	var parts []string
	for _, d := range df.Drifted {
		var v, limit float64
		switch d {
		case wire.ScorePSI:
			v, limit = df.PSI, th.PSI
		case wire.ScoreKS:
			v, limit = df.KS, th.KS
		case wire.ScoreJS:
			v, limit = df.JS, th.JS
		case wire.ScoreCUSUM:
			v, limit = df.CUSUM, th.CUSUMH
		}
		parts = append(parts, d+" "+strconv.FormatFloat(v, 'g', 3, 64)+" > "+strconv.FormatFloat(limit, 'g', 3, 64))
	}
	return df.Name + " (" + strings.Join(parts, ", ") + ")"
}

// Model returns the model the monitor scores, as given to New.
func (m *Monitor) Model() wire.ModelRef { return m.model }
