package httpapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// The read-only views: the device list and one device, its results, health history and
// model-output summaries, and fleet-wide output summaries.

// Views is what the view routes read (fleet.Store satisfies it).
type Views interface {
	QueryResults(ctx context.Context, q fleet.ResultQuery) ([]fleet.StoredResult, error)
	OutputSummaries(ctx context.Context, device string, since, until time.Time) ([]fleet.OutputBucket, error)
	HealthHistory(ctx context.Context, device string, since, until time.Time) ([]fleet.HealthPoint, error)
	DeviceTags(ctx context.Context) (map[string]map[string]string, error)
}

// View limits: answers stay a few MB at most.
const (
	DefaultResults = 100    // results per answer without ?limit
	MaxResults     = 10_000 // ?limit above it is an error
	MaxPoints      = 10_000 // health points or output buckets per answer; the newest are kept
	// DefaultWindow is the default ?since of the health and outputs routes: the last hour.
	DefaultWindow = time.Hour
	// TruncatedHeader is set to "true" when an answer was cut at MaxPoints.
	TruncatedHeader = "Outpost-Truncated"
)

// DeviceView is one row of GET /v1/devices and the body of GET /v1/devices/{id}.
type DeviceView struct {
	ID        string            `json:"id"`
	Online    bool              `json:"online"`
	FirstSeen time.Time         `json:"first_seen,omitzero"` // when it registered: first authenticated contact
	LastSeen  time.Time         `json:"last_seen,omitzero"`
	StateAt   time.Time         `json:"state_at,omitzero"`
	Tags      map[string]string `json:"tags"`
	Model     wire.ModelRef     `json:"model"`
	// AgentVersion and Update come from the latest health snapshot.
	AgentVersion string             `json:"agent_version,omitempty"`
	Update       *wire.UpdateStatus `json:"update,omitempty"`
	Health       *wire.Health       `json:"health,omitempty"`
	Results      ResultCounters     `json:"results"`
	// Latest is the newest stored result (by result time), nil before the first.
	Latest *LatestOutcome `json:"latest,omitempty"`
	// LastHour sums the device's output summaries over the last hour, all models.
	LastHour OutputTotals `json:"last_hour"`
}

// ResultCounters are the controller's result counters of a device's current epoch.
type ResultCounters struct {
	Stored     uint64 `json:"stored"`
	Duplicates uint64 `json:"duplicates"`
	Dropped    uint64 `json:"dropped"`
	Rejected   uint64 `json:"rejected"`
	Acked      uint64 `json:"acked"`
	Malformed  uint64 `json:"malformed"`
}

// LatestOutcome is the newest result in short.
type LatestOutcome struct {
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"ts"`
	Model string    `json:"model"`
	Score float64   `json:"score"`
	Label string    `json:"label,omitempty"`
	Event bool      `json:"event"`
}

// OutputTotals is a sum of output buckets.
type OutputTotals struct {
	Results uint64            `json:"results"`
	Events  uint64            `json:"events"`
	Labels  map[string]uint64 `json:"labels,omitempty"`
}

// ParseTime reads a query time: a duration back from now ("90s", "1h", "7d") or RFC 3339.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := parseAgo(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time %q: want a duration back from now (1h, 30m, 7d) or RFC 3339 (2026-01-02T15:04:05Z)", errBadRequest, s)
	}
	return now.Add(-d), nil
}

func parseAgo(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return 0, err
		}
		return time.Duration(v) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d < 0 {
		err = errors.New("negative")
	}
	return d, err
}

// window reads ?since and ?until; since defaults to def back from now (0: open).
func window(r *http.Request, def time.Duration) (since, until time.Time, err error) {
	now := time.Now()
	q := r.URL.Query()
	if s := q.Get("since"); s != "" {
		if since, err = ParseTime(s, now); err != nil {
			return
		}
	} else if def > 0 {
		since = now.Add(-def)
	}
	if s := q.Get("until"); s != "" {
		if until, err = ParseTime(s, now); err != nil {
			return
		}
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		err = fmt.Errorf("%w: until %s is not after since %s", errBadRequest, until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	return
}

// parseSelect reads ?select=KEY=VALUE,KEY=VALUE (repeatable; `\,` is a comma inside a value,
// see rollout.SplitSelectors).
func parseSelect(r *http.Request) ([]string, error) {
	var out []string
	for _, v := range r.URL.Query()["select"] {
		sel, err := rollout.SplitSelectors(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadRequest, err)
		}
		out = append(out, sel...)
	}
	return out, nil
}

// selected reports whether d fits every selector: tags, or id and model (the model's name,
// or name@version).
func selected(d fleet.DeviceStatus, tags map[string]string, sel []string) bool {
	for _, s := range sel {
		k, v, _ := rollout.ParseSelector(s)
		var ok bool
		switch k {
		case "id":
			ok = d.ID == v
		case "model":
			ok = d.Model.Name == v || d.Model.Name+"@"+d.Model.Version == v
		default:
			ok = tags[k] == v
		}
		if !ok {
			return false
		}
	}
	return true
}

func (a *api) view(ctx context.Context, d fleet.DeviceStatus, tags map[string]string, hour []fleet.OutputBucket) (DeviceView, error) {
	v := DeviceView{ID: d.ID, Online: d.Online, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen, StateAt: d.StateAt, Tags: tags, Model: d.Model, Health: d.Health,
		Results: ResultCounters{d.ResultsReceived, d.Duplicates, d.Dropped, d.Rejected, d.Acked, d.Malformed}}
	if v.Tags == nil {
		v.Tags = map[string]string{}
	}
	if h := d.Health; h != nil {
		v.AgentVersion, v.Update = h.AgentVersion, h.Update
	}
	latest, err := a.o.Views.QueryResults(ctx, fleet.ResultQuery{Device: d.ID, Limit: 1})
	if err != nil {
		return v, err
	}
	if len(latest) == 1 {
		r := latest[0].Result
		v.Latest = &LatestOutcome{Seq: r.Seq, Time: r.Time, Model: r.Model, Score: r.Score, Label: r.Label, Event: r.Event}
	}
	for _, b := range hour {
		if b.Device != d.ID {
			continue
		}
		v.LastHour.Results += b.Count
		v.LastHour.Events += b.Events
		for l, n := range b.Labels {
			if v.LastHour.Labels == nil {
				v.LastHour.Labels = map[string]uint64{}
			}
			v.LastHour.Labels[l] += n
		}
	}
	return v, nil
}

func (a *api) listDevices(w http.ResponseWriter, r *http.Request) {
	sel, err := parseSelect(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	tags, err := a.o.Views.DeviceTags(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	hour, err := a.o.Views.OutputSummaries(r.Context(), "", time.Now().Add(-time.Hour), time.Time{})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := []DeviceView{}
	for _, d := range a.o.Fleet.Devices() {
		if !selected(d, tags[d.ID], sel) {
			continue
		}
		v, err := a.view(r.Context(), d, tags[d.ID], hour)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

// device finds the path's device in the live table, or answers 404.
func (a *api) device(w http.ResponseWriter, r *http.Request) (fleet.DeviceStatus, bool) {
	id := r.PathValue("id")
	for _, d := range a.o.Fleet.Devices() {
		if d.ID == id {
			return d, true
		}
	}
	a.fail(w, r, fmt.Errorf("device %q: %w", id, fleet.ErrNotFound))
	return fleet.DeviceStatus{}, false
}

func (a *api) getDevice(w http.ResponseWriter, r *http.Request) {
	d, ok := a.device(w, r)
	if !ok {
		return
	}
	tags, err := a.o.Views.DeviceTags(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	hour, err := a.o.Views.OutputSummaries(r.Context(), d.ID, time.Now().Add(-time.Hour), time.Time{})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.view(r.Context(), d, tags[d.ID], hour)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) deviceResults(w http.ResponseWriter, r *http.Request) {
	d, ok := a.device(w, r)
	if !ok {
		return
	}
	since, until, err := window(r, 0)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	limit := DefaultResults
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > MaxResults {
			a.fail(w, r, fmt.Errorf("%w: limit %q: want 1 to %d", errBadRequest, s, MaxResults))
			return
		}
	}
	events := false
	if s := q.Get("events"); s != "" {
		if events, err = strconv.ParseBool(s); err != nil {
			a.fail(w, r, fmt.Errorf("%w: events %q: want true or false", errBadRequest, s))
			return
		}
	}
	rs, err := a.o.Views.QueryResults(r.Context(), fleet.ResultQuery{Device: d.ID, Since: since, Until: until, EventsOnly: events, Limit: limit})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rs)
}

func (a *api) deviceHealth(w http.ResponseWriter, r *http.Request) {
	d, ok := a.device(w, r)
	if !ok {
		return
	}
	since, until, err := window(r, DefaultWindow)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ps, err := a.o.Views.HealthHistory(r.Context(), d.ID, since, until)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(ps) > MaxPoints {
		ps = ps[len(ps)-MaxPoints:]
		w.Header().Set(TruncatedHeader, "true")
	}
	writeJSON(w, http.StatusOK, ps)
}

func (a *api) deviceOutputs(w http.ResponseWriter, r *http.Request) {
	d, ok := a.device(w, r)
	if !ok {
		return
	}
	since, until, err := window(r, DefaultWindow)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	bs, err := a.o.Views.OutputSummaries(r.Context(), d.ID, since, until)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(bs) > MaxPoints {
		// Keep the newest: sort by start, then cut.
		slices.SortStableFunc(bs, func(x, y fleet.OutputBucket) int { return x.Start.Compare(y.Start) })
		bs = bs[len(bs)-MaxPoints:]
		w.Header().Set(TruncatedHeader, "true")
	}
	writeJSON(w, http.StatusOK, bs)
}

// fleetOutputs answers GET /v1/outputs: per device and model, the window's buckets added up
// into one (Start is the window's start), so the answer grows with the fleet, not the window.
func (a *api) fleetOutputs(w http.ResponseWriter, r *http.Request) {
	since, until, err := window(r, DefaultWindow)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	bs, err := a.o.Views.OutputSummaries(r.Context(), "", since, until)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	type key struct{ device, model string }
	sums := map[key]*fleet.OutputBucket{}
	for i := range bs {
		b := &bs[i]
		k := key{b.Device, b.Model}
		s := sums[k]
		if s == nil {
			sums[k] = &fleet.OutputBucket{Device: b.Device, Model: b.Model, Start: since.UTC(), ScoreHist: make([]uint64, len(fleet.ScoreBins)+1)}
			s = sums[k]
		}
		MergeBucket(s, b)
	}
	keys := slices.SortedFunc(maps.Keys(sums), func(x, y key) int {
		if c := strings.Compare(x.device, y.device); c != 0 {
			return c
		}
		return strings.Compare(x.model, y.model)
	})
	out := make([]fleet.OutputBucket, 0, len(keys))
	for _, k := range keys {
		out = append(out, *sums[k])
	}
	writeJSON(w, http.StatusOK, out)
}

// MergeBucket adds src's counts into dst (same device and model).
func MergeBucket(dst, src *fleet.OutputBucket) {
	if dst.Count == 0 || src.ScoreMin < dst.ScoreMin {
		dst.ScoreMin = src.ScoreMin
	}
	if dst.Count == 0 || src.ScoreMax > dst.ScoreMax {
		dst.ScoreMax = src.ScoreMax
	}
	dst.Count += src.Count
	dst.Events += src.Events
	dst.ScoreSum += src.ScoreSum
	for l, n := range src.Labels {
		if dst.Labels == nil {
			dst.Labels = map[string]uint64{}
		}
		dst.Labels[l] += n
	}
	if len(dst.ScoreHist) < len(src.ScoreHist) {
		dst.ScoreHist = append(dst.ScoreHist, make([]uint64, len(src.ScoreHist)-len(dst.ScoreHist))...)
	}
	for i, n := range src.ScoreHist {
		dst.ScoreHist[i] += n
	}
}
