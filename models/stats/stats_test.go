package stats

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestQuantileSorted(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5}
	tests := []struct{ p, want float64 }{{0, 1}, {1, 5}, {0.5, 3}, {0.25, 2}, {0.1, 1.4}, {-1, 1}, {2, 5}}
	for _, tt := range tests {
		if got := QuantileSorted(s, tt.p); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("QuantileSorted(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := QuantileSorted([]float64{7}, 0.3); got != 7 {
		t.Errorf("single value quantile = %v, want 7", got)
	}
}

func TestSummarize(t *testing.T) {
	vals := make([]float64, 1000)
	for i := range vals {
		vals[i] = float64((i * 37) % 1000) // 0..999, shuffled
	}
	s, err := Summarize(vals, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Count != 1000 || s.Min != 0 || s.Max != 999 || math.Abs(s.Mean-499.5) > 1e-9 {
		t.Errorf("count %d min %v max %v mean %v", s.Count, s.Min, s.Max, s.Mean)
	}
	if want := math.Sqrt((1000*1000 - 1) / 12.0); math.Abs(s.Std-want) > 1e-9 {
		t.Errorf("std = %v, want %v", s.Std, want)
	}
	if len(s.Histogram.Counts) != DefaultBins {
		t.Fatalf("%d bins, want %d", len(s.Histogram.Counts), DefaultBins)
	}
	for i, c := range s.Histogram.Counts {
		if c < 99 || c > 101 {
			t.Errorf("bin %d holds %d of 1000, want about 100 (quantile edges)", i, c)
		}
	}
	if err := s.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	if len(s.Quantiles) != len(DefaultQuantiles) || s.Quantiles[3].P != 0.5 || math.Abs(s.Quantiles[3].Value-499.5) > 1e-9 {
		t.Errorf("quantiles = %v", s.Quantiles)
	}
	if !slices.Equal(vals[:3], []float64{0, 37, 74}) {
		t.Errorf("Summarize modified its input")
	}
}

func TestSummarizeEdgeCases(t *testing.T) {
	tests := []struct {
		name    string
		vals    []float64
		opts    Options
		wantErr string
		bins    int
	}{
		{"empty", nil, Options{}, "no values", 0},
		{"nan", []float64{1, math.NaN()}, Options{}, "value 1 is NaN", 0},
		{"inf", []float64{math.Inf(1)}, Options{}, "value 0 is +Inf", 0},
		{"bad p", []float64{1, 2}, Options{Quantiles: []float64{1.5}}, "not in [0,1]", 0},
		{"bad bins", []float64{1, 2}, Options{Bins: -1}, "bins -1", 0},
		{"constant", []float64{3, 3, 3}, Options{}, "", 1},
		{"two values", []float64{0, 0, 0, 0, 1}, Options{}, "", 2},
		{"skewed", []float64{0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, Options{Bins: 4}, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Summarize(tt.vals, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Summarize() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(s.Histogram.Counts); got != tt.bins {
				t.Errorf("%d bins (edges %v), want %d", got, s.Histogram.Edges, tt.bins)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
	if _, err := Summarize(nil, Options{}); !errors.Is(err, ErrEmpty) {
		t.Errorf("Summarize(nil) = %v, want ErrEmpty", err)
	}
}

func TestBin(t *testing.T) {
	h := Histogram{Edges: []float64{0, 1, 2, 3}, Counts: make([]int64, 3)}
	tests := []struct {
		v    float64
		want int
	}{{-5, 0}, {0, 0}, {0.5, 0}, {1, 1}, {1.99, 1}, {2, 2}, {3, 2}, {100, 2}}
	for _, tt := range tests {
		if got := h.Bin(tt.v); got != tt.want {
			t.Errorf("Bin(%v) = %d, want %d", tt.v, got, tt.want)
		}
	}
}

func TestHistogramValidate(t *testing.T) {
	tests := []struct {
		name string
		h    Histogram
		want string
	}{
		{"ok", Histogram{Edges: []float64{0, 1}, Counts: []int64{3}}, ""},
		{"one edge", Histogram{Edges: []float64{0}, Counts: nil}, "at least 2"},
		{"counts", Histogram{Edges: []float64{0, 1, 2}, Counts: []int64{1}}, "1 counts for 3 edges"},
		{"order", Histogram{Edges: []float64{0, 0, 2}, Counts: []int64{1, 1}}, "not increasing"},
		{"nan", Histogram{Edges: []float64{0, math.NaN()}, Counts: []int64{1}}, "NaN"},
		{"negative", Histogram{Edges: []float64{0, 1}, Counts: []int64{-1}}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.h.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestPSI(t *testing.T) {
	same, err := PSI([]float64{0.25, 0.25, 0.5}, []float64{0.25, 0.25, 0.5}, 0)
	if err != nil || same != 0 {
		t.Errorf("PSI(same) = %v, %v; want 0", same, err)
	}
	shifted, _ := PSI([]float64{0.5, 0.5, 0}, []float64{0, 0.5, 0.5}, 0)
	if shifted < 0.25 {
		t.Errorf("PSI(shifted) = %v, want > 0.25", shifted)
	}
	if _, err := PSI([]float64{1}, []float64{0.5, 0.5}, 0); err == nil {
		t.Error("PSI with mismatched bins: no error")
	}
}
