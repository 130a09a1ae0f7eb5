package httpapi_test

import (
	"context"
	"crypto/ed25519"
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

// newViewServer serves the API over a real store holding: d1 (tags site=a) with 30 results
// over the last 30 minutes, every third an event, and health points; d2 (site=b) with none.
func newViewServer(t *testing.T) (*httptest.Server, time.Time) {
	t.Helper()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	var rs []wire.Result
	for i := range 30 {
		rs = append(rs, wire.Result{Seq: uint64(i + 1), Time: now.Add(time.Duration(i-30) * time.Minute), Model: "vib@1.0.0",
			Score: float64(i) / 10, Label: map[bool]string{true: "anomaly", false: "normal"}[i%3 == 0], Event: i%3 == 0, LatencyUs: 100})
	}
	if _, err := st.AppendResults(ctx, []fleet.Batch{{Device: "d1", Results: rs, Received: now}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		at := now.Add(time.Duration(-i) * time.Minute).Truncate(time.Minute)
		if err := st.PutHealth(ctx, []fleet.HealthPoint{{Device: "d1", Start: at, Health: wire.Health{V: 1, Device: "d1", Time: at, Inferences: uint64(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	// loc values differ only after a comma, so ?select= must keep an escaped comma in the value.
	for id, tags := range map[string]map[string]string{"d1": {"site": "a", "loc": "Oslo"}, "d2": {"site": "b", "loc": "Oslo,NO"}} {
		if err := st.SetDeviceTags(ctx, id, tags); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := registry.New(registry.Options{Store: st, Keys: []ed25519.PublicKey{bundle.DemoKey().Public().(ed25519.PublicKey)}, Publisher: &registrytest.Publisher{}})
	if err != nil {
		t.Fatal(err)
	}
	m := wire.ModelRef{Name: "vib", Version: "1.0.0"}
	fl := devices{
		{ID: "d1", Online: true, Model: m, ResultsReceived: 30, Acked: 30, FirstSeen: now.Add(-time.Hour), LastSeen: now,
			Health: &wire.Health{V: 1, Device: "d1", AgentVersion: "0.9.0", Update: &wire.UpdateStatus{Phase: wire.PhaseIdle}}},
		{ID: "d2", Model: wire.ModelRef{Name: "cls", Version: "2.0.0"}},
	}
	eng, err := rollout.New(ctx, rollout.Options{Store: st, Fleet: fl, Publisher: nopPublisher{}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Options{Registry: reg, Rollouts: eng, Fleet: fl, Tags: st, Views: st, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, now
}

func TestViews(t *testing.T) {
	srv, now := newViewServer(t)
	ids := func(vs []httpapi.DeviceView) string {
		var out []string
		for _, v := range vs {
			out = append(out, v.ID)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		query, want string
		status      int
	}{
		{"", "d1,d2", 200},
		{"?select=site=a", "d1", 200},
		{"?select=site=a,model=vib", "d1", 200},
		{"?select=model=cls@2.0.0", "d2", 200},
		{"?select=id=d2&select=site=b", "d2", 200},
		{"?select=site=c", "", 200},
		{"?select=site", "", 422},
		{"?select=" + url.QueryEscape(`loc=Oslo\,NO`), "d2", 200},
		{"?select=" + url.QueryEscape(`site=b,loc=Oslo\,NO`), "d2", 200},
		{"?select=" + url.QueryEscape(`loc=Oslo\,NO`) + "&select=site=a", "", 200},
		{"?select=loc=Oslo", "d1", 200},
		{"?select=" + url.QueryEscape("loc=Oslo,NO"), "", 422}, // "NO" is not KEY=VALUE
		{"?select=" + url.QueryEscape(`loc=Oslo\x`), "", 422},
	} {
		var vs []httpapi.DeviceView
		if got := call(t, srv, "GET", "/v1/devices"+tc.query, token, nil, &vs); got != tc.status || (got == 200 && ids(vs) != tc.want) {
			t.Errorf("GET /v1/devices%s = %d %q, want %d %q", tc.query, got, ids(vs), tc.status, tc.want)
		}
	}

	var d httpapi.DeviceView
	if got := call(t, srv, "GET", "/v1/devices/d1", token, nil, &d); got != 200 {
		t.Fatalf("GET /v1/devices/d1 = %d", got)
	}
	if d.Tags["site"] != "a" || !d.Online || d.FirstSeen.IsZero() || d.AgentVersion != "0.9.0" || d.Update == nil || d.Results.Stored != 30 || d.Latest == nil || d.Latest.Seq != 30 {
		t.Errorf("device d1 = %+v", d)
	}
	// 30 results in the last 30 minutes: the hour has all of them, 10 events.
	if d.LastHour.Results != 30 || d.LastHour.Events != 10 || d.LastHour.Labels["anomaly"] != 10 {
		t.Errorf("d1 last hour = %+v, want 30 results, 10 events", d.LastHour)
	}
	var d2 httpapi.DeviceView
	if call(t, srv, "GET", "/v1/devices/d2", token, nil, &d2); d2.Latest != nil || d2.LastHour.Results != 0 || d2.Tags["site"] != "b" {
		t.Errorf("device d2 = %+v", d2)
	}

	rfc := now.Add(-10 * time.Minute).Format(time.RFC3339)
	for _, tc := range []struct {
		query  string
		status int
		n      int
		first  uint64
	}{
		{"", 200, 30, 30},
		{"?limit=5", 200, 5, 30},
		{"?since=10m", 200, 9, 30}, // now has moved on: the result 10 minutes old is out
		{"?since=" + rfc, 200, 10, 30},
		{"?since=1h&until=" + rfc, 200, 20, 20},
		{"?events=true", 200, 10, 28},
		{"?events=true&limit=2&since=1d", 200, 2, 28},
		{"?limit=0", 422, 0, 0},
		{"?limit=10001", 422, 0, 0},
		{"?limit=x", 422, 0, 0},
		{"?since=yesterday", 422, 0, 0},
		{"?since=-1h", 422, 0, 0},
		{"?since=1m&until=1h", 422, 0, 0},
		{"?events=maybe", 422, 0, 0},
	} {
		var rs []fleet.StoredResult
		got := call(t, srv, "GET", "/v1/devices/d1/results"+tc.query, token, nil, &rs)
		if got != tc.status || len(rs) != tc.n || (tc.n > 0 && rs[0].Result.Seq != tc.first) {
			var first uint64
			if len(rs) > 0 {
				first = rs[0].Result.Seq
			}
			t.Errorf("results%s = %d, %d results from seq %d; want %d, %d from %d", tc.query, got, len(rs), first, tc.status, tc.n, tc.first)
		}
	}
	var rs []fleet.StoredResult
	call(t, srv, "GET", "/v1/devices/d1/results?limit=1", token, nil, &rs)
	if len(rs) != 1 || rs[0].Device != "d1" || !rs[0].Received.Equal(now) {
		t.Errorf("stored result = %+v, want device d1 received %v", rs, now)
	}

	var hs []fleet.HealthPoint
	if got := call(t, srv, "GET", "/v1/devices/d1/health", token, nil, &hs); got != 200 || len(hs) != 3 || hs[0].Health.Inferences != 2 {
		t.Errorf("health = %d %+v, want 3 points oldest first", got, hs)
	}
	var bs []fleet.OutputBucket
	if got := call(t, srv, "GET", "/v1/devices/d1/outputs?since=10m", token, nil, &bs); got != 200 || len(bs) < 9 || len(bs) > 10 {
		t.Errorf("outputs since 10m = %d, %d buckets; want 9 or 10 (one per minute)", got, len(bs))
	}
	var fleetOut []fleet.OutputBucket
	if got := call(t, srv, "GET", "/v1/outputs?since=1h", token, nil, &fleetOut); got != 200 || len(fleetOut) != 1 ||
		fleetOut[0].Count != 30 || fleetOut[0].Events != 10 || fleetOut[0].ScoreMax != 2.9 || fleetOut[0].ScoreMin != 0 {
		t.Errorf("fleet outputs = %d %+v; want one bucket of d1 with 30 results, 10 events, scores 0 to 2.9", got, fleetOut)
	}

	for _, p := range []string{"/v1/devices/nope", "/v1/devices/nope/results", "/v1/devices/nope/health", "/v1/devices/nope/outputs"} {
		if got := call(t, srv, "GET", p, token, nil, nil); got != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, got)
		}
	}
	if got := call(t, srv, "GET", "/v1/devices", "wrong-token-wrong-token", nil, nil); got != http.StatusUnauthorized {
		t.Errorf("GET /v1/devices with a wrong token = %d, want 401", got)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"1h", now.Add(-time.Hour), true},
		{"90s", now.Add(-90 * time.Second), true},
		{"7d", now.Add(-7 * 24 * time.Hour), true},
		{"0s", now, true},
		{"2026-04-30T10:00:00Z", time.Date(2026, 4, 30, 10, 0, 0, 0, time.UTC), true},
		{"2026-04-30T10:00:00.5+02:00", time.Date(2026, 4, 30, 8, 0, 0, 5e8, time.UTC), true},
		{"", time.Time{}, false},
		{"-1h", time.Time{}, false},
		{"1w", time.Time{}, false},
		{"99999999d", time.Time{}, false},
		{"2026-04-30", time.Time{}, false},
	} {
		got, err := httpapi.ParseTime(tc.in, now)
		if (err == nil) != tc.ok || (tc.ok && !got.Equal(tc.want)) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseTime(%q) error is not one line: %q", tc.in, err)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"1h", "7d", "2026-04-30T10:00:00Z", "-1h", "1e9h", "65535d"} {
		f.Add(s)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := httpapi.ParseTime(s, now)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error not one line: %q", err)
			}
			return
		}
		// A relative time never lies ahead of now.
		if _, perr := time.Parse(time.RFC3339Nano, s); perr != nil && got.After(now) {
			t.Fatalf("ParseTime(%q) = %v, after now", s, got)
		}
	})
}
