// Package stats summarises samples of one numeric feature for drift monitoring: moments,
// quantiles and a histogram whose bin edges come from the training data. The trainer and
// `outpost models baseline` compute a Summary from training data and store it in the model
// manifest; the agent and the controller later bin live values on the same edges and compare
// the two histograms (PSI here; KS and JS can follow on the same Summary).
//
// Everything is deterministic: sums run in input order with explicit float64 rounding (so no
// fused multiply-add changes a bit between machines), and sorting is by value only. It uses
// only the standard library.
package stats

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// DefaultQuantiles are the probabilities a Summary reports unless told otherwise.
var DefaultQuantiles = []float64{0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99}

// DefaultBins is the histogram size a Summary uses unless told otherwise: deciles.
const DefaultBins = 10

// ErrEmpty is returned when there is nothing to summarise.
var ErrEmpty = errors.New("no values")

// Quantile is one point of the empirical distribution.
type Quantile struct {
	P     float64 `json:"p"`     // probability in [0,1]
	Value float64 `json:"value"` // value at or below which a fraction P of the samples lie
}

// Histogram counts values into the bins [Edges[i], Edges[i+1]). Values below Edges[0] count
// into the first bin and values at or above the last edge into the last one, so live data
// outside the training range still lands somewhere (and shows up as drift in the end bins).
type Histogram struct {
	Edges  []float64 `json:"edges"`  // len(Counts)+1 strictly increasing values
	Counts []int64   `json:"counts"` // one count per bin
}

// Summary describes one feature's distribution.
type Summary struct {
	Count     int64      `json:"count"`
	Mean      float64    `json:"mean"`
	Std       float64    `json:"std"` // population standard deviation
	Min       float64    `json:"min"`
	Max       float64    `json:"max"`
	Quantiles []Quantile `json:"quantiles"`
	Histogram Histogram  `json:"histogram"`
}

// Options controls Summarize. Zero values take the defaults.
type Options struct {
	Quantiles []float64 // probabilities to report, default DefaultQuantiles
	Bins      int       // maximum number of histogram bins, default DefaultBins
}

// Summarize computes the summary of values. It returns ErrEmpty for no values and an error
// for a NaN or infinite value. values is not modified.
func Summarize(values []float64, opts Options) (Summary, error) {
	if len(values) == 0 {
		return Summary{}, ErrEmpty
	}
	ps := opts.Quantiles
	if ps == nil {
		ps = DefaultQuantiles
	}
	bins := opts.Bins
	if bins == 0 {
		bins = DefaultBins
	}
	if bins < 1 {
		return Summary{}, fmt.Errorf("bins %d is not positive", bins)
	}
	for i, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Summary{}, fmt.Errorf("value %d is %v", i, v)
		}
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	mean, std := MeanStd(values)
	s := Summary{Count: int64(len(values)), Mean: mean, Std: std, Min: sorted[0], Max: sorted[len(sorted)-1]}
	for _, p := range ps {
		if !(p >= 0 && p <= 1) {
			return Summary{}, fmt.Errorf("quantile probability %v is not in [0,1]", p)
		}
		s.Quantiles = append(s.Quantiles, Quantile{P: p, Value: QuantileSorted(sorted, p)})
	}
	s.Histogram = Histogram{Edges: QuantileEdges(sorted, bins)}
	s.Histogram.Counts = make([]int64, len(s.Histogram.Edges)-1)
	for _, v := range sorted {
		s.Histogram.Counts[s.Histogram.Bin(v)]++
	}
	return s, nil
}

// MeanStd returns the mean and population standard deviation of values (0, 0 for none).
func MeanStd(values []float64) (mean, std float64) {
	if len(values) == 0 {
		return 0, 0
	}
	var sum float64
	for _, v := range values {
		sum += v
	}
	mean = sum / float64(len(values))
	var ss float64
	for _, v := range values {
		d := v - mean
		ss += float64(d * d)
	}
	return mean, math.Sqrt(ss / float64(len(values)))
}

// QuantileSorted returns the p-quantile of ascending values by linear interpolation between
// closest ranks (the "type 7" definition of R and NumPy's default). It panics on no values.
func QuantileSorted(sorted []float64, p float64) float64 {
	p = min(max(p, 0), 1)
	h := float64(p * float64(len(sorted)-1))
	lo := int(math.Floor(h))
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	frac := h - float64(lo)
	return sorted[lo] + float64(frac*(sorted[lo+1]-sorted[lo]))
}

// QuantileEdges returns at most bins+1 strictly increasing edges at equally spaced quantiles
// of ascending values, so each bin holds about the same share of the training data: the
// binning under which PSI is most sensitive. Edges are sample values (the smallest value with
// at least a fraction i/bins of the samples below it), so a feature with few distinct values
// gets one bin per value rather than bins nobody falls into; repeated quantiles merge. The
// last edge is the float64 just above the maximum, so the largest sample is inside [first,
// last) and a constant feature gets one narrow bin.
func QuantileEdges(sorted []float64, bins int) []float64 {
	n := len(sorted)
	edges := []float64{sorted[0]}
	for i := 1; i < bins; i++ {
		e := sorted[min(i*n/bins, n-1)]
		if e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	return append(edges, math.Nextafter(sorted[n-1], math.Inf(1)))
}

// Bin returns the index of the bin v falls into; out-of-range values go to the end bins.
// The histogram must have at least one bin.
func (h *Histogram) Bin(v float64) int {
	n := len(h.Edges) - 1
	// The first edge greater than v closes v's bin.
	i, _ := slices.BinarySearchFunc(h.Edges[1:], v, func(e, v float64) int {
		if e <= v {
			return -1
		}
		return 1
	})
	return min(i, n-1)
}

// Validate checks the histogram's shape: at least one bin, strictly increasing finite edges,
// one non-negative count per bin.
func (h *Histogram) Validate() error {
	if len(h.Edges) < 2 {
		return fmt.Errorf("histogram has %d edges, want at least 2", len(h.Edges))
	}
	if len(h.Counts) != len(h.Edges)-1 {
		return fmt.Errorf("histogram has %d counts for %d edges, want %d", len(h.Counts), len(h.Edges), len(h.Edges)-1)
	}
	for i, e := range h.Edges {
		if math.IsNaN(e) || math.IsInf(e, 0) {
			return fmt.Errorf("histogram edge %d is %v", i, e)
		}
		if i > 0 && !(e > h.Edges[i-1]) {
			return fmt.Errorf("histogram edges %d and %d (%v, %v) are not increasing", i-1, i, h.Edges[i-1], e)
		}
	}
	for i, c := range h.Counts {
		if c < 0 {
			return fmt.Errorf("histogram count %d is negative", i)
		}
	}
	return nil
}

// Frequencies returns the counts as fractions of their total (all zero for an empty histogram).
func (h *Histogram) Frequencies() []float64 {
	var total int64
	for _, c := range h.Counts {
		total += c
	}
	f := make([]float64, len(h.Counts))
	if total == 0 {
		return f
	}
	for i, c := range h.Counts {
		f[i] = float64(c) / float64(total)
	}
	return f
}

// Validate checks a summary read from a manifest: finite moments, min <= max, a
// non-negative std, quantile probabilities in [0,1] and a valid histogram whose counts add
// up to Count.
func (s *Summary) Validate() error {
	for _, v := range []float64{s.Mean, s.Std, s.Min, s.Max} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("non-finite moment %v", v)
		}
	}
	switch {
	case s.Count < 1:
		return fmt.Errorf("count %d is not positive", s.Count)
	case s.Std < 0:
		return fmt.Errorf("std %v is negative", s.Std)
	case s.Min > s.Max:
		return fmt.Errorf("min %v is above max %v", s.Min, s.Max)
	}
	for i, q := range s.Quantiles {
		if !(q.P >= 0 && q.P <= 1) || math.IsNaN(q.Value) || math.IsInf(q.Value, 0) {
			return fmt.Errorf("quantile %d (p %v, value %v) is out of range", i, q.P, q.Value)
		}
	}
	if err := s.Histogram.Validate(); err != nil {
		return err
	}
	var total int64
	for _, c := range s.Histogram.Counts {
		total += c
	}
	if total != s.Count {
		return fmt.Errorf("histogram counts add up to %d, count is %d", total, s.Count)
	}
	return nil
}

// PSI is the population stability index of actual against expected bin frequencies:
// sum (a - e) * ln(a / e), with each frequency floored at eps (default 1e-4 when eps <= 0) so
// that empty bins stay finite. Common reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 drift.
func PSI(expected, actual []float64, eps float64) (float64, error) {
	if len(expected) != len(actual) || len(expected) == 0 {
		return 0, fmt.Errorf("psi: %d expected and %d actual bins", len(expected), len(actual))
	}
	if eps <= 0 {
		eps = 1e-4
	}
	var psi float64
	for i := range expected {
		e, a := max(expected[i], eps), max(actual[i], eps)
		psi += float64((a - e) * math.Log(a/e))
	}
	return psi, nil
}
