package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/fleet/registry/registrytest"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

type devices []fleet.DeviceStatus

func (d devices) Devices() []fleet.DeviceStatus { return d }

type nopPublisher struct{}

func (nopPublisher) PublishDesired(context.Context, string, wire.Desired) error { return nil }

const token = "0123456789abcdef0123456789abcdef"

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := registry.New(registry.Options{Store: st, Keys: []ed25519.PublicKey{bundle.DemoKey().Public().(ed25519.PublicKey)}, Publisher: &registrytest.Publisher{}})
	if err != nil {
		t.Fatal(err)
	}
	old := wire.ModelRef{Name: "vibration-anomaly-f32", Version: "1.0.0"}
	fl := devices{{ID: "d1", Model: old}, {ID: "d2", Model: old}, {ID: "d3", Model: old}}
	eng, err := rollout.New(context.Background(), rollout.Options{Store: st, Fleet: fl, Publisher: nopPublisher{}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Options{Registry: reg, Rollouts: eng, Fleet: fl, Tags: st, Token: token, MaxPackage: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, srv *httptest.Server, method, path, tok string, body []byte, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var e httpapi.Error
		if err := json.Unmarshal(data, &e); err != nil || e.Error == "" || strings.Contains(e.Error, "\n") {
			t.Errorf("%s %s: %d with body %q; want a one-line JSON error", method, path, resp.StatusCode, data)
		}
		if out, ok := out.(*httpapi.Error); ok {
			*out = e
		}
	} else if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

func TestAPI(t *testing.T) {
	srv := newServer(t)
	pkg, err := registrytest.Package("vibration-anomaly-f32", "1.1.0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"", "wrong-token-wrong-token"} {
		if code := call(t, srv, "GET", "/v1/models", tok, nil, nil); code != http.StatusUnauthorized {
			t.Errorf("token %q: status %d, want 401", tok, code)
		}
	}
	var m fleet.Model
	if code := call(t, srv, "POST", "/v1/models", token, pkg, &m); code != http.StatusCreated || m.Release != 1 || !m.Published {
		t.Fatalf("push: %d %+v", code, m)
	}
	other, _ := registrytest.Package("vibration-anomaly-f32", "1.1.0", nil, func(m *bundle.Manifest) { m.Description = "other" })
	var e httpapi.Error
	for _, tc := range []struct {
		body []byte
		want int
		msg  string
	}{
		{[]byte("junk"), http.StatusUnprocessableEntity, "not a valid package"},
		{other, http.StatusConflict, "already registered"},
		{bytes.Repeat([]byte{0}, 2<<20), http.StatusRequestEntityTooLarge, "too large"},
	} {
		if code := call(t, srv, "POST", "/v1/models", token, tc.body, &e); code != tc.want || !strings.Contains(e.Error, tc.msg) {
			t.Errorf("push: %d %q; want %d with %q", code, e.Error, tc.want, tc.msg)
		}
	}
	var list []fleet.Model
	if code := call(t, srv, "GET", "/v1/models", token, nil, &list); code != 200 || len(list) != 1 || list[0].Manifest != nil {
		t.Errorf("list: %d %+v", code, list)
	}
	var det registry.Detail
	if code := call(t, srv, "GET", "/v1/models/vibration-anomaly-f32@1.1.0", token, nil, &det); code != 200 || len(det.Baseline) == 0 || det.Sensor != "vibration" {
		t.Errorf("show: %d %+v", code, det)
	}
	if code := call(t, srv, "GET", "/v1/models/nope@1.0.0", token, nil, &e); code != 404 {
		t.Errorf("show unknown: %d", code)
	}

	var tags map[string]string
	if code := call(t, srv, "PUT", "/v1/devices/d3/tags", token, []byte(`{"site":"south"}`), &tags); code != 200 || tags["site"] != "south" {
		t.Errorf("set tags: %d %v", code, tags)
	}
	for _, b := range []string{`{"site":"a b"}`, `{"id":"x"}`, `["x"]`, `{"k":1}`} {
		if code := call(t, srv, "PUT", "/v1/devices/d3/tags", token, []byte(b), &e); code != http.StatusUnprocessableEntity {
			t.Errorf("set tags %s: %d, want 422", b, code)
		}
	}
	if code := call(t, srv, "PUT", "/v1/devices/bad%20id/tags", token, []byte(`{}`), &e); code != http.StatusUnprocessableEntity {
		t.Errorf("set tags of an invalid id: %d %q", code, e.Error)
	}
	var all map[string]map[string]string
	if code := call(t, srv, "GET", "/v1/tags", token, nil, &all); code != 200 || all["d3"]["site"] != "south" {
		t.Errorf("list tags: %d %v", code, all)
	}
	var sel rollout.Status
	if code := call(t, srv, "POST", "/v1/rollouts", token, []byte(`{"model":"vibration-anomaly-f32@1.1.0","select":["site=south"],"waves":[1]}`), &sel); code != 201 || len(sel.Waves) != 1 || sel.Waves[0].Devices[0].ID != "d3" {
		t.Fatalf("create by tag: %d %+v", code, sel.Waves)
	}
	if code := call(t, srv, "POST", "/v1/rollouts/r1/abort", token, nil, &sel); code != 200 {
		t.Fatalf("abort r1: %d", code)
	}

	bad := []string{`{"model":"vibration-anomaly-f32@1.1.0","bogus":1}`, `{"model":"x"}`, `{"model":"vibration-anomaly-f32@1.1.0","canary":2}`, `{`}
	for _, b := range bad {
		if code := call(t, srv, "POST", "/v1/rollouts", token, []byte(b), &e); code != http.StatusUnprocessableEntity {
			t.Errorf("create %s: %d %q, want 422", b, code, e.Error)
		}
	}
	var st rollout.Status
	spec := `{"model":"vibration-anomaly-f32@1.1.0","canary":0.34,"waves":[1],"gates":{"max_failure":0.02}}`
	if code := call(t, srv, "POST", "/v1/rollouts", token, []byte(spec), &st); code != http.StatusCreated || st.ID != "r2" || len(st.WaveStatus) != 2 || st.WaveStatus[0].InProgress != 2 {
		t.Fatalf("create: %d %+v", code, st)
	}
	if code := call(t, srv, "POST", "/v1/rollouts", token, []byte(spec), &e); code != http.StatusUnprocessableEntity || !strings.Contains(e.Error, "no devices") {
		t.Errorf("second create over busy devices: %d %q", code, e.Error)
	}
	for _, step := range []struct {
		path string
		want int
	}{
		{"/v1/rollouts/r2/pause", 200}, {"/v1/rollouts/r2/pause", 409}, {"/v1/rollouts/r2/resume", 200},
		{"/v1/rollouts/r2/explode", 404}, {"/v1/rollouts/r9/abort", 404}, {"/v1/rollouts/r2/abort", 200},
	} {
		if code := call(t, srv, "POST", step.path, token, nil, &st); code != step.want {
			t.Errorf("POST %s: %d, want %d", step.path, code, step.want)
		}
	}
	var rs []rollout.Status
	if code := call(t, srv, "GET", "/v1/rollouts", token, nil, &rs); code != 200 || len(rs) != 2 || rs[1].State != fleet.RolloutAborted {
		t.Errorf("list rollouts: %d %+v", code, rs)
	}
	if code := call(t, srv, "GET", "/v1/rollouts/r2", token, nil, &st); code != 200 || st.WaveStatus[0].RolledBack != 2 {
		t.Errorf("get rollout: %d %+v", code, st.WaveStatus)
	}
}

func TestToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), httpapi.TokenFile)
	a, err := httpapi.LoadOrCreateToken(path)
	if err != nil || len(a) != 64 {
		t.Fatalf("create token = %q, %v", a, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if b, err := httpapi.LoadOrCreateToken(path); err != nil || b != a {
		t.Errorf("reload token = %q, %v; want %q", b, err, a)
	}
	os.WriteFile(path, []byte("short\n"), 0o600)
	if _, err := httpapi.LoadOrCreateToken(path); err == nil {
		t.Error("a short token was accepted")
	}
}

func FuzzDecodeSpec(f *testing.F) {
	f.Add([]byte(`{"model":"m@1.0.0","select":["site=a"],"canary":0.05,"waves":[0.25,0.5,1],"probation":600000000000,"gates":{"max_failure":0.02}}`))
	f.Add([]byte(`{"model":"m@1.0.0","waves":[0.5,0.4]}`))
	f.Add([]byte(`{"model":"m@1.0.0","canary":1e309}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := httpapi.DecodeSpec(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if spec.Waves[len(spec.Waves)-1] != 1 || spec.Canary <= 0 || spec.Canary >= 1 {
			t.Fatalf("accepted spec %+v", spec)
		}
	})
}

func FuzzDecodeTags(f *testing.F) {
	f.Add([]byte(`{"site":"north","line":"3"}`))
	f.Add([]byte(`{"a=b":"c"}`))
	f.Add([]byte(`{"":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tags, err := httpapi.DecodeTags(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if len(tags) > httpapi.MaxTags {
			t.Fatalf("accepted %d tags", len(tags))
		}
		for k, v := range tags {
			if k == "" || v == "" || strings.ContainsAny(k, "= ") || strings.Contains(v, " ") {
				t.Fatalf("accepted tag %q=%q", k, v)
			}
		}
	})
}

func FuzzDecodeFeedback(f *testing.F) {
	f.Add([]byte(`{"device":"pump-1","seq":7,"label":"anomaly"}`))
	f.Add([]byte(`[{"device":"pump-1","seq":7,"label":"anomaly"},{"device":"pump-2","epoch":4,"seq":1,"label":"normal"}]`))
	f.Add([]byte(`{"v":1,"labels":[{"device":"pump-1","seq":7,"label":"a","source":"s"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		labels, err := httpapi.DecodeFeedback(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if len(labels) == 0 || len(labels) > wire.MaxFeedbackLabels {
			t.Fatalf("accepted %d labels", len(labels))
		}
		for _, l := range labels {
			if err := l.Validate(); err != nil {
				t.Fatalf("accepted invalid label %+v: %v", l, err)
			}
		}
	})
}
