package wire

import (
	"fmt"
	"math"
	"time"
)

// Drift monitoring (docs/monitoring.md): the agent keeps streaming statistics per model input
// channel and per output value over a window of inferences or time and, when the window
// ends, scores them against the baseline in the model package and publishes one
// DriftSummary on d/{device}/drift (LeafDrift, QoS 1). A score over its threshold is also
// an Event of kind EventDrift on d/{device}/events naming the features responsible. The
// summary is compact: moments, a few quantiles, the live histogram on the baseline's bins
// and the scores; never raw samples.

// Limits a receiver enforces on a DriftSummary.
const (
	MaxDriftFeatures = 64  // features in one summary
	MaxDriftBins     = 256 // histogram bins of one feature
	MaxDriftName     = 128 // bytes of a feature name
)

// Feature roles in DriftFeature.Role.
const (
	DriftInput  = "input"  // a model input channel (raw sensor values)
	DriftOutput = "output" // a model output value (dequantized score)
)

// Score names in DriftFeature.Drifted and in EventDrift reasons.
const (
	ScorePSI   = "psi"
	ScoreKS    = "ks"
	ScoreJS    = "js"
	ScoreCUSUM = "cusum"
)

// DriftSummary is one closed monitoring window of one device and model.
type DriftSummary struct {
	V      int       `json:"v"` // SchemaVersion
	Device string    `json:"device"`
	Model  ModelRef  `json:"model"`
	Window uint64    `json:"window"` // windows closed since the monitor started, from 1
	Start  time.Time `json:"start"`  // first inference of the window
	End    time.Time `json:"end"`    // last inference of the window
	// Inferences is the number of model runs the window saw.
	Inferences int64          `json:"inferences"`
	Features   []DriftFeature `json:"features"`
	// ID, when non-zero, is the summary's number in the agent's durable drift queue: the
	// controller acks it (DriftAck) once stored and the agent resends it until then. Added
	// within version 1; agents without a queue send none and get no ack.
	ID uint64 `json:"id,omitempty"`
	// Event, when set, is the EventDrift the window raised. It travels inside the summary so
	// that it is as durable as the summary (stored, resent and acked with it); the agent also
	// publishes it on LeafEvents for other subscribers, at least once. Added within version 1.
	Event *Event `json:"event,omitempty"`
	// Thresholds are the ones the window was judged by (the manifest's, overridden by the
	// controller's desired state), so a reader can draw the scores against them. Added within
	// version 1; absent from older agents.
	Thresholds *DriftThresholds `json:"thresholds,omitempty"`
}

// DriftThresholds are the limits a drift score is compared with: a feature drifts on a score
// over its threshold (CUSUMH for the CUSUM).
type DriftThresholds struct {
	PSI    float64 `json:"psi"`
	KS     float64 `json:"ks"`
	JS     float64 `json:"js"`
	CUSUMH float64 `json:"cusum_h"`
	// MinSamples is the values a feature needs in a window before its histogram scores count.
	MinSamples int64 `json:"min_samples"`
}

// MaxDriftEventReason bounds DriftSummary.Event's Reason: one culprit line per feature.
const MaxDriftEventReason = MaxDriftFeatures * (MaxDriftName + 160)

// MaxDriftAckIDs bounds DriftAck.IDs.
const MaxDriftAckIDs = 256

// DriftAck tells a device that the controller stored the drift summaries with these IDs; the
// device deletes them from its queue. Acks are idempotent.
type DriftAck struct {
	V   int      `json:"v"`
	IDs []uint64 `json:"ids"`
}

// DriftFeature is one feature's statistics and scores for a window.
type DriftFeature struct {
	Name  string  `json:"name"`
	Role  string  `json:"role"`  // DriftInput or DriftOutput
	Count int64   `json:"count"` // values observed (an input channel sees every sample of every window)
	Mean  float64 `json:"mean"`
	Std   float64 `json:"std"` // population standard deviation
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	// Quantiles are streaming estimates at the probabilities in QuantileP.
	QuantileP []float64 `json:"quantile_p"`
	Quantiles []float64 `json:"quantiles"`
	// Counts is the live histogram on the baseline's bin edges (values outside the baseline
	// range count into the end bins).
	Counts []int64 `json:"counts"`
	// Scored is false when Count was below the minimum sample size: the histogram scores are
	// then zero and count for nothing.
	Scored bool    `json:"scored"`
	PSI    float64 `json:"psi"`
	KS     float64 `json:"ks"`
	JS     float64 `json:"js"`
	// CUSUM is the larger CUSUM sum after this window, in baseline standard deviations.
	CUSUM float64 `json:"cusum"`
	// Drifted names the scores over their thresholds (ScorePSI…), empty when none.
	Drifted []string `json:"drifted,omitempty"`
}

// DecodeDriftSummary decodes and validates a summary.
func DecodeDriftSummary(data []byte) (*DriftSummary, error) {
	var s DriftSummary
	if err := Decode(data, &s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate reports the first problem with s in one line.
func (s *DriftSummary) Validate() error {
	switch {
	case s.Inferences < 0:
		return fmt.Errorf("drift summary: inferences %d is negative", s.Inferences)
	case s.End.Before(s.Start):
		return fmt.Errorf("drift summary: end %v is before start %v", s.End, s.Start)
	case len(s.Features) > MaxDriftFeatures:
		return fmt.Errorf("drift summary: %d features (at most %d)", len(s.Features), MaxDriftFeatures)
	case s.Event != nil && s.Event.Kind != EventDrift:
		return fmt.Errorf("drift summary: event kind %q (want %q)", s.Event.Kind, EventDrift)
	case s.Event != nil && len(s.Event.Reason) > MaxDriftEventReason:
		return fmt.Errorf("drift summary: event reason of %d bytes (at most %d)", len(s.Event.Reason), MaxDriftEventReason)
	}
	if th := s.Thresholds; th != nil {
		for _, v := range []float64{th.PSI, th.KS, th.JS, th.CUSUMH} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return fmt.Errorf("drift summary: threshold %v is not a finite non-negative number", v)
			}
		}
		if th.MinSamples < 0 {
			return fmt.Errorf("drift summary: min_samples %d is negative", th.MinSamples)
		}
	}
	for i := range s.Features {
		if err := s.Features[i].validate(); err != nil {
			return fmt.Errorf("drift summary: feature %d: %w", i, err)
		}
	}
	return nil
}

func (f *DriftFeature) validate() error {
	switch {
	case f.Name == "" || len(f.Name) > MaxDriftName:
		return fmt.Errorf("name length %d (want 1 to %d)", len(f.Name), MaxDriftName)
	case f.Role != DriftInput && f.Role != DriftOutput:
		return fmt.Errorf("%s: role %q (want %q or %q)", f.Name, f.Role, DriftInput, DriftOutput)
	case f.Count < 0:
		return fmt.Errorf("%s: count %d is negative", f.Name, f.Count)
	case len(f.Counts) > MaxDriftBins:
		return fmt.Errorf("%s: %d bins (at most %d)", f.Name, len(f.Counts), MaxDriftBins)
	case len(f.Quantiles) != len(f.QuantileP) || len(f.Quantiles) > MaxDriftBins:
		return fmt.Errorf("%s: %d quantiles for %d probabilities", f.Name, len(f.Quantiles), len(f.QuantileP))
	case len(f.Drifted) > 4:
		return fmt.Errorf("%s: %d drifted scores (at most 4)", f.Name, len(f.Drifted))
	}
	for _, v := range []float64{f.Mean, f.Std, f.Min, f.Max, f.PSI, f.KS, f.JS, f.CUSUM} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s: non-finite statistic %v", f.Name, v)
		}
	}
	for _, c := range f.Counts {
		if c < 0 {
			return fmt.Errorf("%s: negative bin count %d", f.Name, c)
		}
	}
	for _, d := range f.Drifted {
		if d != ScorePSI && d != ScoreKS && d != ScoreJS && d != ScoreCUSUM {
			return fmt.Errorf("%s: unknown score %q", f.Name, d)
		}
	}
	return nil
}
