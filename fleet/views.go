package fleet

import (
	"context"
	"math"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// This file declares what the controller keeps beside results so users can ask it questions:
// results by time, a summary of each device's model outputs over time, health history at
// reduced resolution, drift summaries and late labels. ViewStore is the seam; every Store
// implementation (fleet/boltstore, fleet/pgstore) provides it and passes the ViewStore part of
// fleet/storetest.

// ResultQuery selects one device's stored results (every epoch).
type ResultQuery struct {
	Device string
	// Since and Until bound the result's own time (wire.Result.Time, device clock), Since
	// inclusive, Until exclusive; zero leaves that side open.
	Since, Until time.Time
	EventsOnly   bool // only results with Event set
	// Limit caps the rows returned (0: DefaultResultLimit; never more than MaxResultLimit).
	Limit int
}

// Query limits.
const (
	DefaultResultLimit = 1000
	MaxResultLimit     = 100_000
)

// StoredResult is a result as the views show it: the device's result with the sequence space
// that identifies it and when the controller stored it.
type StoredResult struct {
	Device string `json:"device"`
	Epoch  uint64 `json:"epoch,omitempty"`
	// Received is when the controller stored it (controller clock); retention counts from it.
	// Zero for results stored before received times were kept: a store counts their
	// retention from their result time instead (see the implementation's layout notes).
	Received time.Time   `json:"received"`
	Result   wire.Result `json:"result"`
	// Feedback is the late label attached to the result, if any (see Feedback).
	Feedback *Feedback `json:"feedback,omitempty"`
}

// SummaryStep is the width of one OutputBucket: model outputs are summarised per device,
// model and minute of result time.
const SummaryStep = time.Minute

// ScoreBins are the fixed upper edges of OutputBucket.ScoreHist: a score s falls in the first
// bin whose edge is > s, the last bin holding everything from the last edge up (and NaN).
// Log-spaced because anomaly scores (reconstruction errors) span decades while class
// probabilities live in [0, 1].
var ScoreBins = []float64{0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2, 5, 10, 100}

// OutputBucket summarises one device's results of one model over SummaryStep of result time:
// "is my model firing?" without reading every result.
type OutputBucket struct {
	Device   string            `json:"device"`
	Model    string            `json:"model"` // name@version, as wire.Result.Model
	Start    time.Time         `json:"start"` // result time truncated to SummaryStep, UTC
	Count    uint64            `json:"count"`
	Events   uint64            `json:"events"`
	ScoreSum float64           `json:"score_sum"`
	ScoreMin float64           `json:"score_min"`
	ScoreMax float64           `json:"score_max"`
	Labels   map[string]uint64 `json:"labels,omitempty"` // class or outcome label → results
	// ScoreHist has len(ScoreBins)+1 counts (see ScoreBins).
	ScoreHist []uint64 `json:"score_hist"`
}

// BucketKey is the identity of an OutputBucket.
type BucketKey struct {
	Device, Model string
	Start         time.Time
}

// Key returns b's identity.
func (b *OutputBucket) Key() BucketKey { return BucketKey{b.Device, b.Model, b.Start} }

// SummaryStart is the OutputBucket.Start a result at t falls in.
func SummaryStart(t time.Time) time.Time { return t.UTC().Truncate(SummaryStep) }

// Add counts one stored result into b, whose Device, Model and Start must already be the
// result's. Stores call it exactly once per newly stored result, inside the transaction that
// stores it, so a duplicate never counts twice.
func (b *OutputBucket) Add(r *wire.Result) {
	if len(b.ScoreHist) != len(ScoreBins)+1 {
		b.ScoreHist = make([]uint64, len(ScoreBins)+1)
	}
	s := r.Score
	if b.Count == 0 || s < b.ScoreMin {
		b.ScoreMin = s
	}
	if b.Count == 0 || s > b.ScoreMax {
		b.ScoreMax = s
	}
	if !math.IsNaN(s) && !math.IsInf(s, 0) {
		b.ScoreSum += s
	}
	b.Count++
	if r.Event {
		b.Events++
	}
	if r.Label != "" {
		if b.Labels == nil {
			b.Labels = map[string]uint64{}
		}
		if _, ok := b.Labels[r.Label]; ok || len(b.Labels) < MaxSummaryLabels {
			b.Labels[r.Label]++
		} else {
			b.Labels[OtherLabel]++
		}
	}
	i := len(ScoreBins)
	for j, edge := range ScoreBins {
		if s < edge {
			i = j
			break
		}
	}
	b.ScoreHist[i]++
}

// MaxSummaryLabels bounds the distinct labels one OutputBucket keeps; the rest count under
// OtherLabel, so a device inventing labels cannot grow the store without bound.
const (
	MaxSummaryLabels = 64
	OtherLabel       = "(other)"
)

// HealthStep is the resolution of health history: the store keeps at most one HealthPoint per
// device per step (the latest health received in it).
const HealthStep = time.Minute

// HealthPoint is one device's health at reduced resolution, for charts.
type HealthPoint struct {
	Device string      `json:"device"`
	Start  time.Time   `json:"start"` // controller receive time truncated to HealthStep, UTC
	Health wire.Health `json:"health"`
}

// Feedback is a late label for one stored result, from another system (a technician's
// verdict, a downstream check). (Device, Epoch, Seq) name the result.
type Feedback struct {
	Device string    `json:"device"`
	Epoch  uint64    `json:"epoch,omitempty"` // 0: the device's current epoch when given
	Seq    uint64    `json:"seq"`
	Label  string    `json:"label"` // the true outcome: a class label, or "anomaly"/"normal"
	Source string    `json:"source,omitempty"`
	At     time.Time `json:"at"` // when the controller received it
}

// DriftRecord is one drift summary as the controller keeps it.
type DriftRecord struct {
	Received time.Time         `json:"received"`
	Summary  wire.DriftSummary `json:"summary"`
}

// DriftQuery selects drift records: Device "" is every device, Model "" every model (name or
// name@version), Since zero from the start; newest first, Limit as ResultQuery.Limit.
type DriftQuery struct {
	Device string
	Model  string
	Since  time.Time
	Limit  int
}

// ViewStore is the part of Store the views read and ingest writes beside results. Retention
// (the Prune methods) is the caller's schedule: serve prunes periodically.
type ViewStore interface {
	// QueryResults returns q.Device's stored results matching q, newest result time first,
	// with their Feedback when any.
	QueryResults(ctx context.Context, q ResultQuery) ([]StoredResult, error)
	// PruneResults deletes stored results received before cutoff (watermarks stay, so a
	// pruned result resent by its device is still a duplicate) and returns how many.
	PruneResults(ctx context.Context, before time.Time) (int, error)

	// OutputSummaries returns the output buckets of device ("" every device) with Start in
	// [since, until) (zero: open), ordered by device, model, start. AppendResults maintains
	// them: every newly stored result is added (OutputBucket.Add) exactly once.
	OutputSummaries(ctx context.Context, device string, since, until time.Time) ([]OutputBucket, error)
	// PruneSummaries deletes buckets with Start before cutoff.
	PruneSummaries(ctx context.Context, before time.Time) (int, error)

	// PutHealth stores health points; a point with the (Device, Start) of a stored one
	// replaces it.
	PutHealth(ctx context.Context, points []HealthPoint) error
	// HealthHistory returns device's points with Start in [since, until), oldest first.
	HealthHistory(ctx context.Context, device string, since, until time.Time) ([]HealthPoint, error)
	// PruneHealth deletes points with Start before cutoff.
	PruneHealth(ctx context.Context, before time.Time) (int, error)

	// PutDrift stores drift records. A record's identity is (Summary.Device, Summary.Model
	// name@version, Summary.Window, Summary.Start): a record with the identity of a stored one
	// replaces it, so redelivery stores nothing twice (Window alone restarts at 1 with the agent).
	PutDrift(ctx context.Context, records []DriftRecord) error
	// Drift returns drift records matching q: Since bounds Summary.End (inclusive), newest
	// Summary.End first, then by device and model.
	Drift(ctx context.Context, q DriftQuery) ([]DriftRecord, error)
	// PruneDrift deletes records received before cutoff.
	PruneDrift(ctx context.Context, before time.Time) (int, error)

	// PutFeedback attaches labels to stored results. A label for a result that is not stored
	// (unknown, pruned, rejected) is an error wrapping ErrNotFound naming it, and nothing is
	// stored; a second label for the same result replaces the first.
	PutFeedback(ctx context.Context, labels []Feedback) error
	// FeedbackResults returns the labelled results of device ("" every device) whose result
	// time is at or after since, newest first, up to limit (0: DefaultResultLimit).
	FeedbackResults(ctx context.Context, device string, since time.Time, limit int) ([]StoredResult, error)
}
