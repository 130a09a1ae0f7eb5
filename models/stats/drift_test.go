package stats

import (
	"math"
	"testing"
)

// The wants below are worked by hand from each score's definition (the comment beside each
// shows the arithmetic), not computed by the code under test.
func TestDriftScores(t *testing.T) {
	ln := math.Log
	tests := []struct {
		name        string
		e, a        []float64
		psi, ks, js float64
	}{
		{name: "equal", e: []float64{0.2, 0.3, 0.5}, a: []float64{0.2, 0.3, 0.5}, psi: 0, ks: 0, js: 0},
		{
			name: "shifted half",
			e:    []float64{0.5, 0.5}, a: []float64{0.25, 0.75},
			// (0.5-0.25)·ln(0.5/0.25) + (0.5-0.75)·ln(0.5/0.75) = 0.25·ln2 + 0.25·ln1.5 = 0.25·ln3
			psi: 0.25 * ln(3),
			// CDFs 0.5,1 and 0.25,1
			ks: 0.25,
			// m = (0.375, 0.625); ½[0.5·log2(0.5/0.375) + 0.5·log2(0.5/0.625)
			//   + 0.25·log2(0.25/0.375) + 0.75·log2(0.75/0.625)]
			js: math.Sqrt(0.5 * (0.5*math.Log2(4.0/3) + 0.5*math.Log2(0.8) + 0.25*math.Log2(2.0/3) + 0.75*math.Log2(1.2))),
		},
		{
			name: "empty bin takes evidently's epsilon",
			e:    []float64{1, 0}, a: []float64{0.5, 0.5},
			// e₂ = 0.0001: (1-0.5)·ln(1/0.5) + (0.0001-0.5)·ln(0.0001/0.5)
			psi: 0.5*ln(2) + (0.0001-0.5)*ln(0.0002),
			ks:  0.5,
			// m = (0.75, 0.25): ½[1·log2(4/3) + 0.5·log2(2/3) + 0.5·log2(2)] = ½·0.6225562489
			js: math.Sqrt(0.5 * (math.Log2(4.0/3) + 0.5*math.Log2(2.0/3) + 0.5)),
		},
		{
			name: "disjoint",
			e:    []float64{0.5, 0.5, 0, 0}, a: []float64{0, 0, 0.5, 0.5},
			// each bin: ±(0.5-0.0001)·ln(0.5/0.0001) = 0.4999·ln5000, four bins
			psi: 4 * 0.4999 * ln(5000),
			ks:  1, // CDFs 0.5,1,1,1 and 0,0,0.5,1
			js:  1, // log2 makes disjoint distributions exactly 1 apart
		},
		{
			name: "counts are normalised for ks and js",
			e:    []float64{0.25, 0.25, 0.25, 0.25}, a: []float64{0.5, 0.5, 0, 0},
			psi: 2*(0.25-0.5)*ln(0.5) + 2*(0.25-0.0001)*ln(0.25/0.0001),
			ks:  0.5, // CDFs .25,.5,.75,1 and .5,1,1,1
			// m = (.375,.375,.125,.125): ½[2·.25·log2(2/3) + 2·.25·log2(2) + 2·.5·log2(4/3)]
			js: math.Sqrt(0.5 * (0.5*math.Log2(2.0/3) + 0.5 + math.Log2(4.0/3))),
		},
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-12*max(1, math.Abs(want)) }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := PSIEvidently(tt.e, tt.a); err != nil || !near(got, tt.psi) {
				t.Errorf("PSIEvidently = %v, %v; want %v", got, err, tt.psi)
			}
			if got, err := KSBinned(tt.e, tt.a); err != nil || !near(got, tt.ks) {
				t.Errorf("KSBinned = %v, %v; want %v", got, err, tt.ks)
			}
			if got, err := JSDistance(tt.e, tt.a); err != nil || !near(got, tt.js) {
				t.Errorf("JSDistance = %v, %v; want %v", got, err, tt.js)
			}
			// Scaling the actual frequencies to counts changes neither KS nor JS.
			counts := make([]float64, len(tt.a))
			for i, v := range tt.a {
				counts[i] = v * 1000
			}
			if got, _ := KSBinned(tt.e, counts); !near(got, tt.ks) {
				t.Errorf("KSBinned(counts) = %v, want %v", got, tt.ks)
			}
			if got, _ := JSDistance(tt.e, counts); !near(got, tt.js) {
				t.Errorf("JSDistance(counts) = %v, want %v", got, tt.js)
			}
		})
	}
}

func TestDriftScoresReject(t *testing.T) {
	bad := []struct {
		name string
		e, a []float64
	}{
		{"lengths differ", []float64{1}, []float64{0.5, 0.5}},
		{"no bins", nil, nil},
		{"negative", []float64{1, 0}, []float64{-0.5, 1.5}},
		{"nan", []float64{1, 0}, []float64{math.NaN(), 1}},
		{"inf", []float64{1, 0}, []float64{math.Inf(1), 1}},
	}
	for _, b := range bad {
		for name, f := range map[string]func(e, a []float64) (float64, error){"psi": PSIEvidently, "ks": KSBinned, "js": JSDistance} {
			if _, err := f(b.e, b.a); err == nil {
				t.Errorf("%s(%s): no error", name, b.name)
			}
		}
	}
	if _, err := KSBinned([]float64{1, 0}, []float64{0, 0}); err == nil {
		t.Error("KSBinned of an empty histogram: no error")
	}
	if _, err := JSDistance([]float64{0, 0}, []float64{1, 0}); err == nil {
		t.Error("JSDistance of an empty histogram: no error")
	}
}

func TestCUSUM(t *testing.T) {
	tests := []struct {
		name  string
		z     []float64
		alarm int // 1-based window of the first alarm, 0 for none
		hi    float64
		lo    float64
	}{
		// K = 0.25, H = 1. S⁺: 0.75, 1.5 > 1 in window 2.
		{"1 sigma", []float64{1, 1, 1}, 2, 2.25, 0},
		// S⁺: 0.25, 0.5, 0.75, 1.0 (not > 1), 1.25 in window 5.
		{"half sigma", []float64{0.5, 0.5, 0.5, 0.5, 0.5}, 5, 1.25, 0},
		// S⁻: 1.75 > 1 at once.
		{"minus 2 sigma", []float64{-2}, 1, 0, 1.75},
		// Noise inside the slack never accumulates.
		{"within slack", []float64{0.2, -0.2, 0.25, -0.1}, 0, 0, 0},
		// S⁺: 0.75, then 0.75-0.25-1 < 0 → 0; S⁻: 0, 0.75.
		{"reversal", []float64{1, -1}, 0, 0, 0.75},
		{"nan ignored", []float64{math.NaN()}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := CUSUM{K: 0.25, H: 1}
			first := 0
			for i, z := range tt.z {
				if c.Update(z) && first == 0 {
					first = i + 1
				}
			}
			if first != tt.alarm || math.Abs(c.Hi-tt.hi) > 1e-12 || math.Abs(c.Lo-tt.lo) > 1e-12 {
				t.Errorf("first alarm %d, S⁺ %v, S⁻ %v; want %d, %v, %v", first, c.Hi, c.Lo, tt.alarm, tt.hi, tt.lo)
			}
			c.Reset()
			if c.Score() != 0 {
				t.Errorf("Score after Reset = %v", c.Score())
			}
		})
	}
}
