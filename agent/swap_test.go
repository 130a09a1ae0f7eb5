package agent_test

import (
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// namedPredictor is a fakePredictor under its own name.
type namedPredictor struct {
	*fakePredictor
	name string
}

func (p namedPredictor) Model() wire.ModelRef { return wire.ModelRef{Name: p.name, Version: "1"} }

// While the running agent swaps models as fast as it can, every window is run by exactly one
// model: none skipped, none run twice, and each result names the model that ran it.
func TestSwapBetweenWindows(t *testing.T) {
	r := newRig()
	a := namedPredictor{&fakePredictor{spec: testSpec()}, "a"}
	b := namedPredictor{&fakePredictor{spec: testSpec()}, "b"}
	sw := agent.NewSwap(a)
	r.opts.Predictor = sw
	r.src.limit = 2000 // then the source blocks, so the count is exact
	_, stop := r.start(t)
	var swaps atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(time.Minute) // fail, not hang, if windows go missing
		for i := 0; len(a.windows())+len(b.windows()) < 999; i++ {
			if time.Now().After(deadline) {
				t.Errorf("after a minute of swaps, %d of 999 windows run", len(a.windows())+len(b.windows()))
				return
			}
			next := a
			if i%2 == 0 {
				next = b
			}
			if _, err := sw.Activate(next, nil); err != nil {
				t.Error(err)
				return
			}
			swaps.Add(1)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	<-done
	eventually(t, "every result uploaded", func() bool { return len(r.up.seqs()) == 999 })
	stop()

	// Sample n (1-based) normalized is (n-1)/2; the window ending at sample n scores that.
	// Windows end at samples 4, 6, 8, …, 2000.
	byScore := map[float64]string{}
	for _, p := range []namedPredictor{a, b} {
		for _, w := range p.windows() {
			s := float64(w[len(w)-1])
			if prev, dup := byScore[s]; dup {
				t.Fatalf("window ending %v run by %s and %s", s, prev, p.name)
			}
			byScore[s] = p.name
		}
	}
	if len(byScore) != 999 {
		t.Fatalf("%d windows run, want 999", len(byScore))
	}
	for n := 4; n <= 2000; n += 2 {
		if _, ok := byScore[float64(n-1)/2]; !ok {
			t.Fatalf("window ending at sample %d was skipped", n)
		}
	}
	if swaps.Load() < 10 || len(a.windows()) == 0 || len(b.windows()) == 0 {
		t.Fatalf("%d swaps, %d windows on a, %d on b: the test did not interleave", swaps.Load(), len(a.windows()), len(b.windows()))
	}
	r.up.mu.Lock()
	defer r.up.mu.Unlock()
	for _, batch := range r.up.batches {
		for _, res := range batch.Results {
			if want := (wire.ModelRef{Name: byScore[res.Score], Version: "1"}).String(); res.Model != want {
				t.Fatalf("result scoring %v names %s, but %s ran it", res.Score, res.Model, want)
			}
		}
	}
}

// A candidate with other normalization gets the window re-normalized for it.
func TestSwapRenormalizes(t *testing.T) {
	base := namedPredictor{&fakePredictor{spec: testSpec()}, "a"} // mean 1, std 2
	spec := testSpec()
	spec.Mean, spec.Std = []float32{3}, []float32{0.5}
	cand := namedPredictor{&fakePredictor{spec: spec}, "b"}
	sw := agent.NewSwap(base)
	if _, err := sw.Activate(cand, nil); err != nil {
		t.Fatal(err)
	}
	raw := []float32{1, 5, 9, 3}
	w := make([]float32, len(raw))
	for i, x := range raw {
		w[i] = (x - 1) / 2 // what the agent hands over: the base spec's normalization
	}
	if _, _, err := sw.Predict(w); err != nil {
		t.Fatal(err)
	}
	got := cand.windows()[0]
	for i, x := range raw {
		if want := (x - 3) / 0.5; math.Abs(float64(got[i]-want)) > 1e-5 {
			t.Errorf("value %d: candidate saw %v, want %v", i, got[i], want)
		}
	}
}

func TestSwapRefusesAnotherPipeline(t *testing.T) {
	sw := agent.NewSwap(namedPredictor{&fakePredictor{spec: testSpec()}, "a"})
	for _, mut := range []func(*agent.ModelSpec){
		func(s *agent.ModelSpec) { s.Window = 8 },
		func(s *agent.ModelSpec) { s.Stride = 1 },
		func(s *agent.ModelSpec) { s.SampleRateHz = 100 },
		func(s *agent.ModelSpec) { s.Channels, s.Mean, s.Std = 2, nil, nil },
	} {
		spec := testSpec()
		mut(&spec)
		if _, err := sw.Activate(namedPredictor{&fakePredictor{spec: spec}, "b"}, nil); err == nil {
			t.Errorf("spec %+v accepted", spec)
		}
		if err := sw.StartShadow(namedPredictor{&fakePredictor{spec: spec}, "b"}); err == nil {
			t.Errorf("spec %+v accepted in shadow", spec)
		}
	}
	if got := sw.Model().Name; got != "a" {
		t.Errorf("active %s after refusals", got)
	}
}

func TestShadowAndProbationStats(t *testing.T) {
	a := namedPredictor{&fakePredictor{spec: testSpec()}, "a"}
	// b sees the same windows; a threshold of 1.5 turns scores in [1.5, 10) into events
	// that a (threshold 10) does not report.
	spec := testSpec()
	spec.Threshold = 1.5
	b := namedPredictor{&fakePredictor{spec: spec}, "b"}
	sw := agent.NewSwap(a)
	if err := sw.StartShadow(b); err != nil {
		t.Fatal(err)
	}
	w := make([]float32, 4)
	for i := range 10 {
		w[3] = float32(i) * 0.5 // scores 0 … 4.5: 3, 3.5, … are events for b only
		if _, _, err := sw.Predict(w); err != nil {
			t.Fatal(err)
		}
	}
	st := sw.StopShadow()
	if st.Windows != 10 || st.Agreement != 0.3 || !(st.LatencyRatio > 0) {
		t.Errorf("shadow %+v, want 10 windows, agreement 0.3 (scores 0, 0.5 and 1 agree), a latency ratio", st)
	}
	if st.OutputJS != 0 {
		t.Errorf("same scores, JS distance %v, want 0", st.OutputJS)
	}
	if got := len(a.windows()); got != 10 {
		t.Errorf("active model ran %d windows, want 10", got)
	}
	if got := sw.ShadowStats(); got.Windows != 0 {
		t.Errorf("after StopShadow: %+v", got)
	}

	if _, err := sw.Activate(b, nil); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.err = errors.New("tensor arena corrupt")
	b.mu.Unlock()
	for range 4 {
		_, _, _ = sw.Predict(w)
	}
	if st := sw.ProbationStats(); st.Windows != 4 || st.Errors != 4 {
		t.Errorf("probation %+v, want 4 windows, 4 errors", st)
	}
}

func TestJSDistance(t *testing.T) {
	tests := []struct {
		p, q []float64
		want float64
	}{
		{[]float64{1, 0}, []float64{0, 1}, math.Sqrt(math.Ln2)}, // disjoint: the maximum
		{[]float64{5, 5}, []float64{1, 1}, 0},                   // same shape, other counts
		{[]float64{0, 0}, []float64{1, 1}, 0},                   // empty: undefined, 0
		{[]float64{1, 1}, []float64{1, 0}, math.Sqrt(0.5*(0.5*math.Log(0.5/0.75)+0.5*math.Log(0.5/0.25)) + 0.5*math.Log(1/0.75))},
	}
	for _, tt := range tests {
		if got := agent.JSDistance(tt.p, tt.q); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("JSDistance(%v, %v) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}
