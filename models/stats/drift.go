package stats

import (
	"fmt"
	"math"
)

// Drift scores compare a live histogram with the baseline's, bin for bin on the baseline's
// edges. Each follows a published definition so its numbers mean what users of other tools
// expect; the test vectors in drift_test.go are worked by hand.

// EvidentlyEmptyBin is the frequency Evidently substitutes for an empty bin before taking
// PSI's logarithm (its get_binned_data replaces exact zeros with 0.0001 in both the reference
// and the current percentages; non-zero frequencies are left alone).
const EvidentlyEmptyBin = 0.0001

// Minimum sample sizes before a score counts. Below them the sampling noise of a histogram
// alone pushes the scores over their usual thresholds: with 10 equal bins and n samples the
// expected PSI of two samples of one distribution is about (bins-1)/n, 0.009 at n = 1000, and
// the KS statistic's 95% band is about 1.36/sqrt(n), 0.043 at n = 1000.
const (
	MinSamplesHistogram = 1000 // PSI, KS and JS: live values in the window
	MinSamplesMean      = 100  // the CUSUM's window mean
)

// PSIEvidently is the population stability index as Evidently computes it:
//
//	PSI = Σ (e_i − a_i) · ln(e_i / a_i)
//
// over the bins, where e and a are the expected (baseline) and actual (live) bin frequencies
// and an empty bin's frequency is replaced by EvidentlyEmptyBin. The sign convention makes
// every term non-negative. Unlike PSI (which floors every frequency at eps), a small but
// non-empty bin keeps its value.
func PSIEvidently(expected, actual []float64) (float64, error) {
	if err := sameBins("psi", expected, actual); err != nil {
		return 0, err
	}
	var psi float64
	for i := range expected {
		e, a := expected[i], actual[i]
		if e == 0 {
			e = EvidentlyEmptyBin
		}
		if a == 0 {
			a = EvidentlyEmptyBin
		}
		psi += float64((e - a) * math.Log(e/a))
	}
	return psi, nil
}

// KSBinned is the two-sample Kolmogorov–Smirnov statistic computed from binned data: the
// largest absolute difference between the two cumulative distributions, evaluated at the bin
// edges, D = max_k |Σ_{i≤k} e_i − Σ_{i≤k} a_i|. Binning can only hide differences inside a
// bin, so it is a lower bound on the statistic of the raw samples. Frequencies are
// normalised by their own totals first; it is in [0, 1].
//
// Only the statistic is used, never a p-value: with the thousands of samples of a monitoring
// window the KS test rejects for differences far too small to matter (its critical value
// shrinks as 1.36/sqrt(n)), so drift is judged by D against a fixed threshold, an effect
// size that does not grow stricter with n.
func KSBinned(expected, actual []float64) (float64, error) {
	te, ta, err := totals("ks", expected, actual)
	if err != nil {
		return 0, err
	}
	var ce, ca, d float64
	for i := range expected {
		ce += expected[i] / te
		ca += actual[i] / ta
		d = max(d, math.Abs(ce-ca))
	}
	return d, nil
}

// JSDistance is the Jensen–Shannon distance with logarithms base 2, as SciPy's
// scipy.spatial.distance.jensenshannon(p, q, base=2) computes it: with m = (p+q)/2,
//
//	JS = sqrt( ½ Σ p_i log2(p_i/m_i) + ½ Σ q_i log2(q_i/m_i) )
//
// where terms with p_i = 0 (or q_i = 0) are zero. Frequencies are normalised by their own
// totals first. It is a metric in [0, 1]: 0 for equal distributions, 1 for disjoint ones,
// and needs no epsilon for empty bins.
func JSDistance(expected, actual []float64) (float64, error) {
	te, ta, err := totals("js", expected, actual)
	if err != nil {
		return 0, err
	}
	var div float64
	for i := range expected {
		p, q := expected[i]/te, actual[i]/ta
		m := (p + q) / 2
		if p > 0 {
			div += float64(p * math.Log2(p/m))
		}
		if q > 0 {
			div += float64(q * math.Log2(q/m))
		}
	}
	// Rounding can leave a tiny negative divergence for equal inputs.
	return math.Sqrt(max(div/2, 0)), nil
}

func sameBins(what string, expected, actual []float64) error {
	if len(expected) != len(actual) || len(expected) == 0 {
		return fmt.Errorf("%s: %d expected and %d actual bins", what, len(expected), len(actual))
	}
	for i := range expected {
		if !(expected[i] >= 0) || !(actual[i] >= 0) || math.IsInf(expected[i], 0) || math.IsInf(actual[i], 0) {
			return fmt.Errorf("%s: bin %d frequencies %v, %v are not finite and non-negative", what, i, expected[i], actual[i])
		}
	}
	return nil
}

// totals checks the bins and returns each side's total, which must be positive.
func totals(what string, expected, actual []float64) (te, ta float64, err error) {
	if err := sameBins(what, expected, actual); err != nil {
		return 0, 0, err
	}
	te, ta = sum(expected), sum(actual)
	if te <= 0 || ta <= 0 {
		return 0, 0, fmt.Errorf("%s: empty distribution", what)
	}
	return te, ta, nil
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

// CUSUM is a two-sided tabular CUSUM (Page 1954; Montgomery, Introduction to Statistical
// Quality Control, §9.1) on standardized window means z = (window mean − baseline mean) /
// baseline std. Each window updates
//
//	S⁺ = max(0, S⁺ + z − K)    S⁻ = max(0, S⁻ − z − K)
//
// and the detector alarms when either exceeds H. z is in units of the baseline's standard
// deviation, not of the window mean's standard error: samples of a sensor are strongly
// autocorrelated, so σ/sqrt(n) would overstate the evidence of every window, and a shift is
// worth an alarm for its size, not for how many samples show it. With K = 0.25 and H = 1 a
// sustained 1σ shift alarms in the second window and a 0.5σ one in the fifth. The zero
// value is a detector at rest with K and H unset; set them before use.
type CUSUM struct {
	K float64 // slack per window, in baseline standard deviations
	H float64 // decision threshold, in baseline standard deviations
	// Hi and Lo are S⁺ and S⁻.
	Hi, Lo float64
}

// Update feeds one standardized window mean and reports whether the detector alarms. The
// sums keep accumulating after an alarm (the shift persists until Reset).
func (c *CUSUM) Update(z float64) bool {
	if math.IsNaN(z) {
		return false
	}
	c.Hi = max(0, c.Hi+z-c.K)
	c.Lo = max(0, c.Lo-z-c.K)
	return c.Score() > c.H
}

// Score is the larger of the two sums: how far the detector is from alarming, against H.
func (c *CUSUM) Score() float64 { return max(c.Hi, c.Lo) }

// Reset returns the sums to zero, e.g. after the operator acknowledged a shift or the model
// changed.
func (c *CUSUM) Reset() { c.Hi, c.Lo = 0, 0 }
