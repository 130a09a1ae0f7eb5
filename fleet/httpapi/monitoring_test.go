package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/monitor"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// newMonitoringServer serves the API over a real bbolt store holding results of pump-1
// (anomaly model, seqs 1–6) and pump-2 (seq 1), and drift records.
func newMonitoringServer(t *testing.T) *httptest.Server {
	t.Helper()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var rs []wire.Result
	for i, ev := range []bool{true, true, false, false, false, true} {
		rs = append(rs, wire.Result{Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Minute), Model: "vib@1.0.0", Score: 0.5, Event: ev})
	}
	if _, err := st.AppendResults(ctx, []fleet.Batch{{Device: "pump-1", Epoch: 7, Results: rs},
		{Device: "pump-2", Results: []wire.Result{{Seq: 1, Time: t0, Model: "cls@2.0.0", Label: "cat"}}}}); err != nil {
		t.Fatal(err)
	}
	var recs []fleet.DriftRecord
	for w, drifted := range []bool{false, true, true} {
		f := wire.DriftFeature{Name: "accel", Role: wire.DriftInput, Scored: true, PSI: 0.1}
		if drifted {
			f.PSI, f.Drifted = 0.8, []string{wire.ScorePSI}
		}
		end := t0.Add(time.Duration(w+1) * 10 * time.Minute)
		recs = append(recs, fleet.DriftRecord{Received: end, Summary: wire.DriftSummary{V: 1, Device: "pump-1",
			Model: wire.ModelRef{Name: "vib", Version: "1.0.0"}, Window: uint64(w + 1), Start: end.Add(-10 * time.Minute), End: end,
			Inferences: 100, Features: []wire.DriftFeature{f}}})
	}
	if err := st.PutDrift(ctx, recs); err != nil {
		t.Fatal(err)
	}
	fl := devices{}
	eng, err := rollout.New(ctx, rollout.Options{Store: st, Fleet: fl, Publisher: nopPublisher{}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Options{Registry: noRegistry{}, Rollouts: eng, Fleet: fl, Tags: st, Token: token, Monitoring: st})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// noRegistry is a registry with no models: these tests do not reach it.
type noRegistry struct{}

func (noRegistry) Push(context.Context, []byte) (fleet.Model, error) {
	return fleet.Model{}, fleet.ErrNotFound
}
func (noRegistry) List(context.Context) ([]fleet.Model, error) { return nil, nil }
func (noRegistry) Get(context.Context, string) (fleet.Model, error) {
	return fleet.Model{}, fleet.ErrNotFound
}

func TestFeedbackAndAccuracy(t *testing.T) {
	srv := newMonitoringServer(t)
	var ans httpapi.FeedbackAnswer
	// One label, an array, and a batch; epoch 0 is the device's current epoch (7).
	for _, body := range []string{
		`{"device":"pump-1","seq":1,"label":"anomaly"}`,
		`[{"device":"pump-1","seq":2,"label":"normal"},{"device":"pump-1","epoch":7,"seq":3,"label":"anomaly"}]`,
		`{"v":1,"labels":[{"device":"pump-1","seq":4,"label":"normal"},{"device":"pump-1","seq":5,"label":"normal","source":"tech"},{"device":"pump-2","seq":1,"label":"dog"}]}`,
	} {
		if code := call(t, srv, "POST", "/v1/feedback", token, []byte(body), &ans); code != http.StatusOK || ans.Stored == 0 {
			t.Fatalf("POST %s: %d %+v", body, code, ans)
		}
	}
	var e httpapi.Error
	for _, c := range []struct {
		body string
		code int
		msg  string
	}{
		{`{"device":"pump-1","seq":99,"label":"normal"}`, http.StatusNotFound, "99"},
		{`{"device":"pump-1","seq":6,"label":"x","extra":1}`, http.StatusUnprocessableEntity, "unknown field"},
		{`{"device":"pump-1","seq":0,"label":"x"}`, http.StatusUnprocessableEntity, "seq 0"},
		{`[]`, http.StatusUnprocessableEntity, "no labels"},
	} {
		if code := call(t, srv, "POST", "/v1/feedback", token, []byte(c.body), &e); code != c.code || !strings.Contains(e.Error, c.msg) {
			t.Errorf("POST %s: %d %q, want %d with %q", c.body, code, e.Error, c.code, c.msg)
		}
	}
	// pump-1: seq 1 TP, 2 FP, 3 FN, 4 TN, 5 TN; seq 6 unlabelled (the failed batch stored nothing).
	var rep monitor.AccuracyReport
	if code := call(t, srv, "GET", "/v1/accuracy?device=pump-1&since=24h", token, nil, &rep); code != http.StatusOK || len(rep.Totals) != 1 {
		t.Fatalf("accuracy: %d %+v", code, rep)
	}
	tot := rep.Totals[0]
	if a := tot.Anomaly; a == nil || tot.Labelled != 5 || tot.Correct != 3 || a.TP != 1 || a.FP != 1 || a.FN != 1 || a.TN != 2 || *a.Precision != 0.5 || *a.Recall != 0.5 {
		t.Fatalf("pump-1 accuracy %+v anomaly %+v", tot, tot.Anomaly)
	}
	if code := call(t, srv, "GET", "/v1/accuracy?model=cls", token, nil, &rep); code != http.StatusOK || len(rep.Totals) != 1 || rep.Totals[0].Device != "pump-2" || rep.Totals[0].Accuracy != 0 {
		t.Fatalf("model filter: %d %+v", code, rep.Totals)
	}
	if code := call(t, srv, "GET", "/v1/accuracy?since=yesterday", token, nil, &e); code != http.StatusUnprocessableEntity {
		t.Errorf("bad since: %d", code)
	}
	if code := call(t, srv, "GET", "/v1/accuracy?since="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339), token, nil, &rep); code != http.StatusOK || len(rep.Totals) != 0 {
		t.Errorf("since in the future: %d %+v", code, rep.Totals)
	}
}

func TestDriftRoute(t *testing.T) {
	srv := newMonitoringServer(t)
	var v []monitor.ModelDrift
	if code := call(t, srv, "GET", "/v1/drift?model=vib", token, nil, &v); code != http.StatusOK || len(v) != 1 || len(v[0].Rows) != 1 {
		t.Fatalf("drift: %d %+v", code, v)
	}
	d := v[0].Rows[0]
	if !d.Drifting || d.Device != "pump-1" || d.Drifted != 2 || d.Windows != 3 || d.LastWindow != 3 || len(d.Features) != 1 || d.Features[0].Name != "accel" {
		t.Fatalf("pump-1 drift %+v", d)
	}
	if code := call(t, srv, "GET", "/v1/drift?model=other", token, nil, &v); code != http.StatusOK || len(v) != 0 {
		t.Errorf("other model: %d %+v", code, v)
	}
	var e httpapi.Error
	if code := call(t, srv, "GET", "/v1/drift?device=bad/id", token, nil, &e); code != http.StatusUnprocessableEntity {
		t.Errorf("bad device: %d", code)
	}
	if code := call(t, srv, "GET", "/v1/drift", "", nil, &e); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}

	// One device's windows in short, oldest first, for the dashboard's drift charts.
	var pts []httpapi.DriftPoint
	if code := call(t, srv, "GET", "/v1/devices/pump-1/drift", token, nil, &pts); code != http.StatusOK || len(pts) != 3 {
		t.Fatalf("device drift: %d %+v", code, pts)
	}
	for i, p := range pts {
		if p.Window != uint64(i+1) || len(p.Features) != 1 || p.Features[0].Name != "accel" || p.Model.String() != "vib@1.0.0" {
			t.Errorf("point %d = %+v", i, p)
		}
	}
	if f := pts[2].Features[0]; f.PSI != 0.8 || len(f.Drifted) != 1 || f.Drifted[0] != wire.ScorePSI || !f.Scored {
		t.Errorf("window 3 scores %+v", f)
	}
	if code := call(t, srv, "GET", "/v1/devices/pump-1/drift?since=45m", token, nil, &pts); code != http.StatusOK || len(pts) != 2 || pts[0].Window != 2 {
		t.Errorf("since 45m: %d %+v, want windows 2 and 3", code, pts)
	}
	if code := call(t, srv, "GET", "/v1/devices/pump-9/drift", token, nil, &pts); code != http.StatusOK || len(pts) != 0 {
		t.Errorf("device without drift: %d %+v", code, pts)
	}
	if code := call(t, srv, "GET", "/v1/devices/bad%20id/drift", token, nil, &e); code != http.StatusUnprocessableEntity {
		t.Errorf("bad device id: %d", code)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"24h", now.Add(-24 * time.Hour), true},
		{"7d", now.Add(-7 * 24 * time.Hour), true},
		{"2026-03-01T00:00:00Z", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), true},
		{"-1h", time.Time{}, false},
		{"soon", time.Time{}, false},
	} {
		got, err := httpapi.ParseSince(c.in, now)
		if (err == nil) != c.ok || !got.Equal(c.want) {
			t.Errorf("ParseSince(%q) = %v, %v", c.in, got, err)
		}
	}
}
