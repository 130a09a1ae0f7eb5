package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/fleet/registry/registrytest"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

func TestCaptures(t *testing.T) {
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	var batches []fleet.CaptureBatch
	for i := range 5 {
		model := "vib@1.0.0"
		if i == 4 {
			model = "other@1"
		}
		at := now.Add(time.Duration(i-5) * time.Hour)
		batches = append(batches, fleet.CaptureBatch{Device: "d1", Epoch: 3, Received: at, Items: []wire.CaptureItem{{
			Seq: uint64(i + 1), Time: at, Reason: wire.CaptureDrift, Channels: []string{"x"}, Shape: []int{2, 1}, Values: []float32{1, 2},
			Result: wire.Result{Seq: 9, Time: at, Model: model, Score: 0.7, Label: "anomaly", Event: true},
		}}})
	}
	if _, err := st.AppendCaptures(context.Background(), batches); err != nil {
		t.Fatal(err)
	}
	// The result of capture 3 (two hours old) was stored and labelled later: seq 9 of a
	// results epoch of its own, at capture 3's result time (the other captures' results
	// share seq 9 in other epochs and are not stored).
	at3 := now.Add(-3 * time.Hour)
	if _, err := st.AppendResults(context.Background(), []fleet.Batch{{Device: "d1", Epoch: 71, Received: at3,
		Results: []wire.Result{{Seq: 9, Time: at3, Model: "vib@1.0.0", Score: 0.7, Label: "anomaly", Event: true}}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutFeedback(context.Background(), []fleet.Feedback{{Device: "d1", Epoch: 71, Seq: 9, Label: "normal", Source: "cli", At: now}}); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: st, Keys: []ed25519.PublicKey{bundle.DemoKey().Public().(ed25519.PublicKey)}, Publisher: &registrytest.Publisher{}})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rollout.New(context.Background(), rollout.Options{Store: st, Fleet: devices{}, Publisher: nopPublisher{}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Options{Registry: reg, Rollouts: eng, Fleet: devices{}, Tags: st, Token: token, Captures: st, Monitoring: st})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(query string) (int, fleet.CapturePage, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/captures?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&raw)
		var p fleet.CapturePage
		_ = json.Unmarshal(raw, &p)
		return resp.StatusCode, p, string(raw)
	}
	for _, tc := range []struct {
		query  string
		status int
		items  int
	}{
		{"", 200, 5},
		{"model=vib", 200, 4},
		{"model=vib&since=150m", 200, 1},
		{"model=vib&since=" + url.QueryEscape(now.Add(-4*time.Hour-time.Minute).Format(time.RFC3339)), 200, 3},
		{"device=d2", 200, 0},
		{"limit=2", 200, 2},
		{"since=yesterday", 422, 0},
		{"limit=0", 422, 0},
		{"device=a/b", 422, 0},
		{"after=xyz", 422, 0},
	} {
		status, p, raw := get(tc.query)
		if status != tc.status || len(p.Items) != tc.items {
			t.Errorf("?%s: %d with %d items, want %d with %d (%s)", tc.query, status, len(p.Items), tc.status, tc.items, raw)
		}
	}
	status, p, _ := get("limit=2")
	if status != 200 || p.Next == "" {
		t.Fatal("no next page")
	}
	_, p2, _ := get("limit=10&after=" + p.Next)
	if len(p2.Items) != 3 || p2.Items[0].Seq != 3 || p2.Items[0].Result.Label != "anomaly" || p2.Items[0].Values[1] != 2 {
		t.Errorf("second page: %+v", p2.Items)
	}
	// Feedback is joined by result seq and time: capture 3 carries the label, no other does.
	_, all, _ := get("")
	for _, it := range all.Items {
		if labelled := it.Feedback != nil; labelled != (it.Seq == 3) || labelled && (it.Feedback.Label != "normal" || it.Feedback.Source != "cli") {
			t.Errorf("capture %d feedback %+v; want only capture 3 labelled normal", it.Seq, it.Feedback)
		}
	}
}

// FuzzParseCaptureQuery: any query string gives a query or a one-line bad-request error.
func FuzzParseCaptureQuery(f *testing.F) {
	f.Add("model=vib&since=24h&device=d1&limit=10&after=00ff")
	f.Add("since=2026-01-02T03:04:05Z")
	f.Add("limit=-1&since=-3h")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := httpapi.ParseCaptureQuery(v, now)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if q.Limit < 0 || q.Limit > fleet.MaxCapturePage || q.Since.After(now) && v.Get("since") != "" && !strings.Contains(v.Get("since"), "T") {
			t.Fatalf("accepted %+v from %q", q, raw)
		}
	})
}
