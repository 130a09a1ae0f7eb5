package bundle

import (
	"fmt"

	"github.com/outpost-ml/outpost/models/stats"
)

// DriftThresholds are the limits above which the agent's drift monitor reports a feature as
// drifted (docs/monitoring.md). A manifest may set any of them; zero fields take
// DefaultDriftThresholds, so a manifest without a "drift" object gets the defaults.
type DriftThresholds struct {
	PSI float64 `json:"psi,omitempty"` // population stability index (Evidently's), > 0
	KS  float64 `json:"ks,omitempty"`  // binned Kolmogorov–Smirnov statistic, in (0,1]
	JS  float64 `json:"js,omitempty"`  // Jensen–Shannon distance, base 2, in (0,1]
	// CUSUMK and CUSUMH are the CUSUM's slack and decision threshold on standardized window
	// means, in baseline standard deviations.
	CUSUMK float64 `json:"cusum_k,omitempty"`
	CUSUMH float64 `json:"cusum_h,omitempty"`
	// MinSamples is the number of values a feature needs in a window before its histogram
	// scores count.
	MinSamples int64 `json:"min_samples,omitempty"`
}

// DefaultDriftThresholds are tuned by `make eval-drift` on the simulated sensors (the table
// in docs/monitoring.md): 1σ mean shifts caught within 5 windows, under one false alarm per
// device-day.
var DefaultDriftThresholds = DriftThresholds{
	PSI:        0.6,
	KS:         0.15,
	JS:         0.3,
	CUSUMK:     0.25,
	CUSUMH:     1,
	MinSamples: stats.MinSamplesHistogram,
}

// WithDefaults returns t with its zero fields set from DefaultDriftThresholds. A nil t
// gives the defaults.
func (t *DriftThresholds) WithDefaults() DriftThresholds {
	return DefaultDriftThresholds.Override(t)
}

// Override returns t with the non-zero fields of o in place of its own, e.g. a controller's
// per-device thresholds over the manifest's. A nil o changes nothing.
func (t DriftThresholds) Override(o *DriftThresholds) DriftThresholds {
	if o == nil {
		return t
	}
	for _, f := range []struct{ dst, src *float64 }{{&t.PSI, &o.PSI}, {&t.KS, &o.KS}, {&t.JS, &o.JS}, {&t.CUSUMK, &o.CUSUMK}, {&t.CUSUMH, &o.CUSUMH}} {
		if *f.src != 0 {
			*f.dst = *f.src
		}
	}
	if o.MinSamples != 0 {
		t.MinSamples = o.MinSamples
	}
	return t
}

// Validate checks the thresholds a manifest or a controller override sets; zero means
// "default" and is always accepted.
func (t *DriftThresholds) Validate() error {
	for _, c := range []struct {
		name   string
		v, max float64
	}{{"psi", t.PSI, 100}, {"ks", t.KS, 1}, {"js", t.JS, 1}, {"cusum_k", t.CUSUMK, 100}, {"cusum_h", t.CUSUMH, 1000}} {
		if !(c.v >= 0 && c.v <= c.max) {
			return fmt.Errorf("%s threshold %v is not in [0,%v]", c.name, c.v, c.max)
		}
	}
	if t.MinSamples < 0 || t.MinSamples > 1<<40 {
		return fmt.Errorf("min_samples %d is out of range", t.MinSamples)
	}
	return nil
}
