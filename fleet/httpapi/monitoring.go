package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/monitor"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Monitoring is the store the monitoring routes read and write (fleet.ViewStore satisfies
// it): POST /v1/feedback, GET /v1/accuracy, GET /v1/drift (docs/monitoring.md).
type Monitoring interface {
	PutFeedback(ctx context.Context, labels []fleet.Feedback) error
	FeedbackResults(ctx context.Context, device string, since time.Time, limit int) ([]fleet.StoredResult, error)
	Drift(ctx context.Context, q fleet.DriftQuery) ([]fleet.DriftRecord, error)
}

func (a *api) monitoringRoutes() []route {
	on := a.o.Monitoring != nil
	return []route{
		{"POST /v1/feedback", a.postFeedback, on},
		{"GET /v1/accuracy", a.getAccuracy, on},
		{"GET /v1/drift", a.getDrift, on},
		{"GET /v1/devices/{id}/drift", a.deviceDrift, on},
	}
}

// DriftPoint is one stored drift window in short: its scores and the thresholds they were
// judged by, without the histograms (GET /v1/devices/{id}/drift, the dashboard's drift chart).
type DriftPoint struct {
	Model      wire.ModelRef         `json:"model"`
	Window     uint64                `json:"window"`
	Start      time.Time             `json:"start"`
	End        time.Time             `json:"end"`
	Received   time.Time             `json:"received"`
	Thresholds *wire.DriftThresholds `json:"thresholds,omitempty"`
	Features   []DriftScore          `json:"features"`
}

// DriftScore is one feature's scores in a DriftPoint.
type DriftScore struct {
	Name    string   `json:"name"`
	Role    string   `json:"role"`
	Scored  bool     `json:"scored"`
	PSI     float64  `json:"psi"`
	KS      float64  `json:"ks"`
	JS      float64  `json:"js"`
	CUSUM   float64  `json:"cusum"`
	Drifted []string `json:"drifted,omitempty"`
}

// deviceDrift answers a device's drift windows in short, oldest first.
func (a *api) deviceDrift(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := wire.ValidDeviceID(id); err != nil {
		a.fail(w, r, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	q := r.URL.Query()
	since, err := ParseSince(q.Get("since"), time.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if since.IsZero() {
		since = time.Now().Add(-DefaultWindow)
	}
	recs, err := a.o.Monitoring.Drift(r.Context(), fleet.DriftQuery{Device: id, Model: q.Get("model"), Since: since, Limit: MaxPoints + 1})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(recs) > MaxPoints {
		recs = recs[:MaxPoints] // the newest
		w.Header().Set(TruncatedHeader, "true")
	}
	out := make([]DriftPoint, len(recs))
	for i := range recs {
		s := &recs[len(recs)-1-i].Summary
		p := DriftPoint{Model: s.Model, Window: s.Window, Start: s.Start, End: s.End, Received: recs[len(recs)-1-i].Received,
			Thresholds: s.Thresholds, Features: make([]DriftScore, len(s.Features))}
		for j, f := range s.Features {
			p.Features[j] = DriftScore{Name: f.Name, Role: f.Role, Scored: f.Scored, PSI: f.PSI, KS: f.KS, JS: f.JS, CUSUM: f.CUSUM, Drifted: f.Drifted}
		}
		out[i] = p
	}
	writeJSON(w, http.StatusOK, out)
}

// FeedbackAnswer is POST /v1/feedback's answer.
type FeedbackAnswer struct {
	Stored int `json:"stored"`
}

// DecodeFeedback reads the body of POST /v1/feedback: one label object, an array of them, or
// a wire.FeedbackBatch ({"labels": [...]}, "v" optional). Unknown fields are errors.
func DecodeFeedback(data []byte) ([]wire.FeedbackLabel, error) {
	var b wire.FeedbackBatch
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := decodeStrict(data, &b.Labels, "feedback"); err != nil {
			return nil, err
		}
	case bytes.Contains(data, []byte(`"labels"`)):
		if err := decodeStrict(data, &b, "feedback"); err != nil {
			return nil, err
		}
		if b.V != 0 && b.V != wire.SchemaVersion {
			return nil, fmt.Errorf("%w: feedback: schema version %d (want %d)", errBadRequest, b.V, wire.SchemaVersion)
		}
	default:
		var l wire.FeedbackLabel
		if err := decodeStrict(data, &l, "feedback"); err != nil {
			return nil, err
		}
		b.Labels = []wire.FeedbackLabel{l}
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return b.Labels, nil
}

func (a *api) postFeedback(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxFeedbackBytes))
	if err != nil {
		a.fail(w, r, fmt.Errorf("read feedback: %w", err))
		return
	}
	labels, err := DecodeFeedback(body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	n, err := monitor.StoreFeedback(r.Context(), a.o.Monitoring, labels, "http", time.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, FeedbackAnswer{Stored: n})
}

// ParseSince reads a since= parameter: empty (no bound), an RFC 3339 time, or a duration back
// from now ("90m", "24h", "7d").
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%w: since %q: want an RFC 3339 time or a duration like 24h or 7d", errBadRequest, s)
	}
	return now.Add(-d), nil
}

// modelMatch reports whether model (name@version) is selected by want: "" all, a name, or
// name@version.
func modelMatch(model, want string) bool {
	if want == "" || model == want {
		return true
	}
	name, _, _ := strings.Cut(model, "@")
	return !strings.Contains(want, "@") && name == want
}

func (a *api) getAccuracy(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, err := ParseSince(q.Get("since"), time.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	bucket := monitor.DefaultBucket
	if b := q.Get("bucket"); b != "" {
		if bucket, err = time.ParseDuration(b); err != nil || bucket < time.Minute {
			a.fail(w, r, fmt.Errorf("%w: bucket %q: want a duration of at least 1m", errBadRequest, b))
			return
		}
	}
	device := q.Get("device")
	if device != "" {
		if err := wire.ValidDeviceID(device); err != nil {
			a.fail(w, r, fmt.Errorf("%w: %v", errBadRequest, err))
			return
		}
	}
	rs, err := a.o.Monitoring.FeedbackResults(r.Context(), device, since, fleet.MaxResultLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	model := q.Get("model")
	keep := rs[:0]
	for _, sr := range rs {
		if modelMatch(sr.Result.Model, model) {
			keep = append(keep, sr)
		}
	}
	writeJSON(w, http.StatusOK, monitor.Accuracy(keep, bucket))
}

func (a *api) getDrift(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, err := ParseSince(q.Get("since"), time.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	device := q.Get("device")
	if device != "" {
		if err := wire.ValidDeviceID(device); err != nil {
			a.fail(w, r, fmt.Errorf("%w: %v", errBadRequest, err))
			return
		}
	}
	recs, err := a.o.Monitoring.Drift(r.Context(), fleet.DriftQuery{Device: device, Model: q.Get("model"), Since: since, Limit: fleet.MaxResultLimit})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, monitor.DriftView(recs, 0))
}
