package httpapi

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Captures reads captured windows (fleet.CaptureStore; the bbolt store satisfies it).
type Captures interface {
	Captures(ctx context.Context, q fleet.CaptureQuery) (fleet.CapturePage, error)
}

// ParseCaptureQuery reads GET /v1/captures' parameters: model (NAME or NAME@VERSION),
// device, since (RFC 3339 time, or a duration back from now such as 24h or 7d), after (the
// previous page's next) and limit.
func ParseCaptureQuery(v map[string][]string, now time.Time) (fleet.CaptureQuery, error) {
	get := func(k string) string {
		if len(v[k]) == 0 {
			return ""
		}
		return v[k][0]
	}
	q := fleet.CaptureQuery{Model: get("model"), Device: get("device"), After: get("after")}
	if len(q.Model) > 300 || len(q.After) > 1024 {
		return q, fmt.Errorf("%w: model or after parameter too long", errBadRequest)
	}
	if _, err := hex.DecodeString(q.After); err != nil {
		return q, fmt.Errorf("%w: after %q is not a page cursor", errBadRequest, q.After)
	}
	if q.Device != "" {
		if err := wire.ValidDeviceID(q.Device); err != nil {
			return q, fmt.Errorf("%w: device: %v", errBadRequest, err)
		}
	}
	if s := get("since"); s != "" {
		t, err := ParseTime(s, now)
		if err != nil {
			return q, err
		}
		q.Since = t
	}
	if s := get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > fleet.MaxCapturePage {
			return q, fmt.Errorf("%w: limit %q: want 1 to %d", errBadRequest, s, fleet.MaxCapturePage)
		}
		q.Limit = n
	}
	return q, nil
}

func (a *api) listCaptures(w http.ResponseWriter, r *http.Request) {
	q, err := ParseCaptureQuery(r.URL.Query(), time.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	page, err := a.o.Captures.Captures(r.Context(), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if page.Items == nil {
		page.Items = []fleet.CapturedItem{}
	}
	if a.o.Monitoring != nil {
		if err := joinFeedback(r.Context(), a.o.Monitoring, page.Items); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, page)
}

// joinFeedback attaches to each item the feedback label of its result. A capture item names
// its result by device and result seq but not by the results' epoch (the capture buffer has
// its own), so the result time, which the agent copies into both, tells epochs apart. One
// FeedbackResults call per device of the page, from the page's oldest result time on.
func joinFeedback(ctx context.Context, st Monitoring, items []fleet.CapturedItem) error {
	oldest := map[string]time.Time{}
	for i := range items {
		it := &items[i]
		if it.Result.Seq == 0 {
			continue // its result was never numbered, so never stored or labelled
		}
		if t, ok := oldest[it.Device]; !ok || it.Result.Time.Before(t) {
			oldest[it.Device] = it.Result.Time
		}
	}
	for dev, since := range oldest {
		labelled, err := st.FeedbackResults(ctx, dev, since, fleet.MaxResultLimit)
		if err != nil {
			return fmt.Errorf("feedback of %s: %w", dev, err)
		}
		bySeq := make(map[uint64][]fleet.StoredResult, len(labelled))
		for _, r := range labelled {
			if r.Feedback != nil {
				bySeq[r.Result.Seq] = append(bySeq[r.Result.Seq], r)
			}
		}
		for i := range items {
			it := &items[i]
			if it.Device != dev || it.Result.Seq == 0 {
				continue
			}
			for _, r := range bySeq[it.Result.Seq] {
				// Within a millisecond: a store may keep times at a coarser resolution
				// (PostgreSQL: microseconds) than the capture's JSON.
				if d := r.Result.Time.Sub(it.Result.Time); d > -time.Millisecond && d < time.Millisecond {
					it.Feedback = r.Feedback
					break
				}
			}
		}
	}
	return nil
}
