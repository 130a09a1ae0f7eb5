package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
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

// recordingPublisher keeps the last desired state published per device.
type recordingPublisher struct{ last map[string]wire.Desired }

func (p *recordingPublisher) PublishDesired(_ context.Context, device string, d wire.Desired) error {
	p.last[device] = d
	return nil
}

func TestMonitorSettingsRoutes(t *testing.T) {
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg, err := registry.New(registry.Options{Store: st, Keys: []ed25519.PublicKey{bundle.DemoKey().Public().(ed25519.PublicKey)}, Publisher: &registrytest.Publisher{}})
	if err != nil {
		t.Fatal(err)
	}
	pub := &recordingPublisher{last: map[string]wire.Desired{}}
	eng, err := rollout.New(context.Background(), rollout.Options{Store: st, Fleet: devices{}, Publisher: pub, Policies: st})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Options{Registry: reg, Rollouts: eng, Fleet: devices{}, Tags: st, Token: token, Policies: eng})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var got rollout.PolicyStatus
	body := `{"drift":{"psi":0.4,"window":300},"capture":{"random":0.25,"max_per_hour":10}}`
	if code := call(t, srv, "PUT", "/v1/devices/d1/monitor", token, []byte(body), &got); code != http.StatusOK {
		t.Fatalf("PUT = %d", code)
	}
	want := fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.4, Window: 300}, Capture: &wire.CapturePolicy{Random: 0.25, MaxPerHour: 10}}
	if got.Device != "d1" || got.Settings == nil || !fleet.SameMonitoring(got.Settings.MonitorSettings, want) ||
		!fleet.SameMonitoring(got.Effective, want) || got.Generation != 1 || got.Pending != "" {
		t.Fatalf("PUT answered %+v", got)
	}
	// Published by the engine's next round.
	for i := 0; ; i++ {
		if call(t, srv, "GET", "/v1/devices/d1/monitor", token, nil, &got); got.Published {
			break
		}
		if i == 1000 {
			t.Fatal("settings never published")
		}
		time.Sleep(5 * time.Millisecond) // the engine's round, which the PUT woke
	}
	var list []rollout.PolicyStatus
	if code := call(t, srv, "GET", "/v1/monitor-settings", token, nil, &list); code != 200 || len(list) != 1 || list[0].Device != "d1" {
		t.Fatalf("list = %d %+v", code, list)
	}
	for _, bad := range []struct{ path, body string }{
		{"/v1/devices/d1/monitor", `{"drift":{"ks":3}}`},
		{"/v1/devices/d1/monitor", `{"capture":{"random":0.1,"rnd":1}}`},
		{"/v1/devices/d1/monitor", `{"drift":{}} {}`},
		{"/v1/devices/bad%2Fid/monitor", `{"drift":{"ks":0.3}}`},
	} {
		var e httpapi.Error
		if code := call(t, srv, "PUT", bad.path, token, []byte(bad.body), &e); code != http.StatusUnprocessableEntity || e.Error == "" || strings.Contains(e.Error, "\n") {
			t.Errorf("PUT %s %s = %d %q, want 422 with one line", bad.path, bad.body, code, e.Error)
		}
	}
	if code := call(t, srv, "PUT", "/v1/devices/d1/monitor", token, []byte(strings.Repeat(" ", httpapi.MaxPolicyBody+1)), nil); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized PUT = %d", code)
	}
	got = rollout.PolicyStatus{}
	if code := call(t, srv, "DELETE", "/v1/devices/d1/monitor", token, nil, &got); code != 200 || got.Settings != nil || !got.Effective.Empty() || got.Generation != 2 {
		t.Fatalf("DELETE = %d %+v", code, got)
	}
	if code := call(t, srv, "GET", "/v1/monitor-settings", token, nil, &list); code != 200 || len(list) != 0 {
		t.Fatalf("list after delete = %d %+v", code, list)
	}
	if code := call(t, srv, "GET", "/v1/devices/d1/monitor", "wrong-token", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("wrong token = %d", code)
	}
}

func FuzzDecodeMonitorSettings(f *testing.F) {
	f.Add([]byte(`{"drift":{"psi":0.4,"ks":0.2,"window":500,"min_samples":100},"capture":{"random":0.05,"low_confidence":0.5,"band":0.1,"max_per_hour":60}}`))
	f.Add([]byte(`{"capture":{"drift":1,"drift_hold_s":600}}`))
	f.Add([]byte(`{"drift":{"psi":-1}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := httpapi.DecodeMonitorSettings(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		// Whatever is accepted is in range, and merging it into anything stays in range.
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted settings that do not validate: %v", err)
		}
		base := fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.6, Window: 1000}, Capture: &wire.CapturePolicy{Random: 0.01}}
		if err := base.Merge(s).Validate(); err != nil {
			t.Fatalf("merged settings do not validate: %v", err)
		}
	})
}
