package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/stats"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// testManifest has a two-channel N(0,1), N(10,2) baseline and one output N(0.2, 0.1).
func testManifest(t testing.TB) *bundle.Manifest {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var windows, outputs [][]float64
	for range 200 {
		w := make([]float64, 0, 2*16)
		for range 16 {
			w = append(w, rng.NormFloat64(), 10+2*rng.NormFloat64())
		}
		windows = append(windows, w)
		outputs = append(outputs, []float64{0.2 + 0.1*rng.NormFloat64()})
	}
	b, err := bundle.ComputeBaseline("test", []string{"a", "b"}, windows, outputs, []string{"score"})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle.Manifest{Baseline: b}
}

// feed observes n inferences of 16 samples per channel drawn with channel a shifted by
// shiftA standard deviations, one second apart from start.
func feed(m *Monitor, rng *rand.Rand, start time.Time, n int, shiftA float64) []*Report {
	var reps []*Report
	in := make([]float32, 32)
	out := make([]float32, 1)
	for i := range n {
		for j := 0; j < 32; j += 2 {
			in[j] = float32(rng.NormFloat64() + shiftA)
			in[j+1] = float32(10 + 2*rng.NormFloat64())
		}
		out[0] = float32(0.2 + 0.1*rng.NormFloat64())
		if r := m.Observe(start.Add(time.Duration(i)*time.Second), in, out); r != nil {
			reps = append(reps, r)
		}
	}
	return reps
}

func TestWindowsAndScores(t *testing.T) {
	man := testManifest(t)
	ref := wire.ModelRef{Name: "m", Version: "1.0.0"}
	m, err := New(man, ref, Config{Device: "dev-1", Window: 100})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	// Three windows without drift, then three with channel a shifted by 1σ.
	reps := append(feed(m, rng, t0, 300, 0), feed(m, rng, t0.Add(time.Hour), 300, 1)...)
	if len(reps) != 6 {
		t.Fatalf("%d reports for 600 inferences in windows of 100, want 6", len(reps))
	}
	for i, r := range reps {
		s := r.Summary
		if s.Window != uint64(i+1) || s.Inferences != 100 || s.Device != "dev-1" || s.Model != ref || len(s.Features) != 3 {
			t.Fatalf("report %d: window %d, %d inferences, device %q, model %v, %d features", i, s.Window, s.Inferences, s.Device, s.Model, len(s.Features))
		}
		if err := s.Validate(); err != nil {
			t.Errorf("report %d: %v", i, err)
		}
		a, b, out := s.Features[0], s.Features[1], s.Features[2]
		if a.Name != "a" || a.Role != wire.DriftInput || out.Role != wire.DriftOutput || a.Count != 1600 || out.Count != 100 {
			t.Fatalf("report %d: features %+v", i, s.Features)
		}
		if !a.Scored || out.Scored { // 1600 values reach the default minimum, 100 outputs do not
			t.Errorf("report %d: scored a %v, out %v; want true, false", i, a.Scored, out.Scored)
		}
		drifted := i >= 3
		if got := len(a.Drifted) > 0; got != drifted {
			t.Errorf("report %d: channel a drifted %v (%v, psi %.3f ks %.3f js %.3f cusum %.2f), want %v", i, a.Drifted, got, a.PSI, a.KS, a.JS, a.CUSUM, drifted)
		}
		if len(b.Drifted) > 0 {
			t.Errorf("report %d: channel b drifted %v (psi %.3f ks %.3f js %.3f cusum %.2f)", i, b.Drifted, b.PSI, b.KS, b.JS, b.CUSUM)
		}
		if (r.Event != nil) != drifted {
			t.Errorf("report %d: event %+v, want one: %v", i, r.Event, drifted)
		}
		if r.Event != nil && (r.Event.Kind != wire.EventDrift || !strings.HasPrefix(r.Event.Reason, "drift in a (") || strings.Contains(r.Event.Reason, " b (")) {
			t.Errorf("report %d: event %+v does not name channel a alone", i, r.Event)
		}
		want := 0.0
		if drifted {
			want = 1
		}
		if math.Abs(a.Mean-want) > 0.1 || math.Abs(a.Std-1) > 0.1 || math.Abs(b.Mean-10) > 0.2 {
			t.Errorf("report %d: a mean %v std %v, b mean %v", i, a.Mean, a.Std, b.Mean)
		}
		if a.Quantiles[1] < want-0.15 || a.Quantiles[1] > want+0.15 {
			t.Errorf("report %d: a median estimate %v, want about %v", i, a.Quantiles[1], want)
		}
		var n int64
		for _, c := range a.Counts {
			n += c
		}
		if n != a.Count || a.Min > a.Quantiles[0] || a.Max < a.Quantiles[2] {
			t.Errorf("report %d: counts add to %d of %d; min %v, max %v, quantiles %v", i, n, a.Count, a.Min, a.Max, a.Quantiles)
		}
	}
}

// The summary's statistics equal those computed from the raw values directly.
func TestSummaryMatchesDirect(t *testing.T) {
	man := testManifest(t)
	m, err := New(man, wire.ModelRef{}, Config{Window: 50})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var a []float64
	in := make([]float32, 32)
	var r *Report
	for i := range 50 {
		for j := range in {
			in[j] = float32(rng.NormFloat64())
			if j%2 == 0 {
				a = append(a, float64(in[j]))
			}
		}
		r = m.Observe(t0.Add(time.Duration(i)*time.Millisecond), in, nil)
	}
	if r == nil {
		t.Fatal("no report after a full window")
	}
	mean, std := stats.MeanStd(a)
	f := r.Summary.Features[0]
	h := stats.Histogram{Edges: man.Baseline.Inputs[0].Histogram.Edges, Counts: make([]int64, len(f.Counts))}
	for _, v := range a {
		h.Counts[h.Bin(v)]++
	}
	if math.Abs(f.Mean-mean) > 1e-12 || math.Abs(f.Std-std) > 1e-12 || f.Min != slices.Min(a) || f.Max != slices.Max(a) || !slices.Equal(f.Counts, h.Counts) {
		t.Errorf("summary mean %v std %v min %v max %v counts %v; direct %v %v %v %v %v", f.Mean, f.Std, f.Min, f.Max, f.Counts, mean, std, slices.Min(a), slices.Max(a), h.Counts)
	}
	if r.Summary.Features[2].Count != 0 {
		t.Errorf("output count %d with no outputs observed", r.Summary.Features[2].Count)
	}
}

func TestTimeWindow(t *testing.T) {
	m, err := New(testManifest(t), wire.ModelRef{}, Config{Period: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	// One inference a second for 35 minutes: windows close at 10, 20 and 30 minutes, each
	// with 600 inferences; the inference that crosses the boundary opens the next window.
	reps := feed(m, rng, t0, 35*60, 0)
	if len(reps) != 3 {
		t.Fatalf("%d reports, want 3", len(reps))
	}
	for i, r := range reps {
		s := r.Summary
		if s.Inferences != 600 || !s.Start.Equal(t0.Add(time.Duration(i)*10*time.Minute)) || s.End.Sub(s.Start) != 599*time.Second {
			t.Errorf("window %d: %d inferences from %v to %v", i+1, s.Inferences, s.Start, s.End)
		}
	}
	if r := m.Flush(); r == nil || r.Summary.Inferences != 300 {
		t.Errorf("Flush = %+v, want the last 300 inferences", r)
	}
	if r := m.Flush(); r != nil {
		t.Errorf("second Flush = %+v, want nil", r)
	}
}

func TestMinSamples(t *testing.T) {
	man := testManifest(t)
	m, err := New(man, wire.ModelRef{}, Config{Window: 10})
	if err != nil {
		t.Fatal(err)
	}
	// 160 values of a wildly shifted channel: too few for the histogram scores (1000), enough
	// for the CUSUM (100), which alarms on a 5σ mean.
	r := feed(m, rand.New(rand.NewPCG(9, 9)), t0, 10, 5)[0]
	a := r.Summary.Features[0]
	if a.Scored || a.PSI != 0 || !slices.Equal(a.Drifted, []string{wire.ScoreCUSUM}) {
		t.Errorf("scored %v, psi %v, drifted %v; want unscored, only cusum", a.Scored, a.PSI, a.Drifted)
	}
	// A manifest threshold lowers the minimum; a config override wins over it.
	man.Drift = &bundle.DriftThresholds{MinSamples: 100, PSI: 5}
	m, err = New(man, wire.ModelRef{}, Config{Window: 10, Thresholds: bundle.DriftThresholds{PSI: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	if th := m.Thresholds(); th.MinSamples != 100 || th.PSI != 0.5 || th.KS != bundle.DefaultDriftThresholds.KS {
		t.Errorf("thresholds %+v", th)
	}
	r = feed(m, rand.New(rand.NewPCG(9, 9)), t0, 10, 5)[0]
	a = r.Summary.Features[0]
	if !a.Scored || !slices.Contains(a.Drifted, wire.ScorePSI) {
		t.Errorf("scored %v, drifted %v; want scored with psi", a.Scored, a.Drifted)
	}
	// The summary says which thresholds judged it.
	want := wire.DriftThresholds{PSI: 0.5, KS: bundle.DefaultDriftThresholds.KS, JS: bundle.DefaultDriftThresholds.JS,
		CUSUMH: bundle.DefaultDriftThresholds.CUSUMH, MinSamples: 100}
	if th := r.Summary.Thresholds; th == nil || *th != want {
		t.Errorf("summary thresholds %+v, want %+v", th, want)
	}
}

func TestNewRejects(t *testing.T) {
	man := testManifest(t)
	tests := []struct {
		name string
		m    *bundle.Manifest
		cfg  Config
		want string
	}{
		{"no manifest", nil, Config{}, "no baseline"},
		{"no baseline", &bundle.Manifest{}, Config{}, "no baseline"},
		{"negative window", man, Config{Window: -1}, "negative"},
		{"quantile", man, Config{Quantiles: []float64{1}}, "quantile probability 1"},
		{"threshold", man, Config{Thresholds: bundle.DriftThresholds{KS: 2}}, "ks threshold 2"},
	}
	for _, tt := range tests {
		if _, err := New(tt.m, wire.ModelRef{}, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestNonFiniteSkipped(t *testing.T) {
	m, err := New(testManifest(t), wire.ModelRef{}, Config{Window: 1})
	if err != nil {
		t.Fatal(err)
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	r := m.Observe(t0, []float32{nan, 1, inf, 2, 0.5, 3}, []float32{nan})
	a, b := r.Summary.Features[0], r.Summary.Features[1]
	if a.Count != 1 || a.Mean != 0.5 || b.Count != 3 || r.Summary.Features[2].Count != 0 {
		t.Errorf("counts %d %d, mean %v", a.Count, b.Count, a.Mean)
	}
	if err := r.Summary.Validate(); err != nil {
		t.Error(err)
	}
}

func TestObserveAllocs(t *testing.T) {
	m, err := New(testManifest(t), wire.ModelRef{}, Config{Window: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	in := make([]float32, 32)
	for i := range in {
		in[i] = float32(i) / 7
	}
	out := []float32{0.3}
	now := t0
	if n := testing.AllocsPerRun(1000, func() { m.Observe(now, in, out) }); n != 0 {
		t.Errorf("Observe allocates %v times per inference, want 0", n)
	}
}

func TestP2(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, p := range []float64{0.05, 0.5, 0.95} {
		var e p2
		e.reset(p)
		var xs []float64
		for range 20000 {
			x := rng.ExpFloat64() // skewed, so a symmetric shortcut would not pass
			xs = append(xs, x)
			e.add(x)
		}
		slices.Sort(xs)
		want := stats.QuantileSorted(xs, p)
		if math.Abs(e.value()-want) > 0.02*max(1, want) {
			t.Errorf("P² %v-quantile %v, exact %v", p, e.value(), want)
		}
	}
	var e p2
	e.reset(0.5)
	for _, x := range []float64{3, 1, 2} {
		e.add(x)
	}
	if e.value() != 2 {
		t.Errorf("median of 3, 1, 2 = %v, want 2", e.value())
	}
}

func BenchmarkObserve(b *testing.B) {
	m, err := New(testManifest(b), wire.ModelRef{}, Config{Window: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	in := make([]float32, 32)
	out := []float32{0.3}
	for b.Loop() {
		m.Observe(t0, in, out)
	}
}
