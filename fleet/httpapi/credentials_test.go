package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/credentials"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/fleet/registry/registrytest"
	"github.com/outpost-ml/outpost/fleet/rollout"
)

func TestCredentialRoutes(t *testing.T) {
	dir := t.TempDir()
	st, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	creds, err := credentials.Open(dir, credentials.Options{Iterations: 100, Reserved: []string{"outpost-controller"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { creds.Close() })
	reg, err := registry.New(registry.Options{Store: st, Publisher: &registrytest.Publisher{}})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rollout.New(context.Background(), rollout.Options{Store: st, Fleet: devices{}, Publisher: nopPublisher{}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Options{Registry: reg, Rollouts: eng, Fleet: devices{}, Tags: st, Token: token, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	var issued httpapi.IssuedCredentials
	if code := call(t, srv, "POST", "/v1/devices/dev-1/credentials", "", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("issue without token: %d, want 401", code)
	}
	if code := call(t, srv, "POST", "/v1/devices/dev-1/credentials", token, nil, &issued); code != http.StatusCreated {
		t.Fatalf("issue: %d", code)
	}
	if issued.ID != "dev-1" || creds.Check("dev-1", []byte(issued.Secret)) != nil {
		t.Fatalf("issued %+v does not check against the store", issued)
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/v1/devices/bad%20id/credentials", http.StatusUnprocessableEntity},
		{"POST", "/v1/devices/outpost-controller/credentials", http.StatusUnprocessableEntity},
		{"POST", "/v1/devices/" + strings.Repeat("x", 65) + "/revoke", http.StatusUnprocessableEntity},
	} {
		if code := call(t, srv, tc.method, tc.path, token, nil, nil); code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, code, tc.want)
		}
	}
	var files httpapi.MosquittoFiles
	if code := call(t, srv, "GET", "/v1/credentials/mosquitto", token, nil, &files); code != http.StatusOK || !strings.HasPrefix(files.Passwd, "dev-1:$7$100$") {
		t.Fatalf("mosquitto passwd: %d %q", code, files.Passwd)
	}
	var rev httpapi.Revocation
	if code := call(t, srv, "POST", "/v1/devices/dev-1/revoke", token, nil, &rev); code != http.StatusOK || !rev.Revoked {
		t.Fatalf("revoke: %d %+v", code, rev)
	}
	if err := creds.Check("dev-1", []byte(issued.Secret)); err == nil {
		t.Fatal("revoked secret still checks")
	}
	if code := call(t, srv, "GET", "/v1/credentials/mosquitto", token, nil, &files); code != http.StatusOK || files.Passwd != "" {
		t.Fatalf("mosquitto passwd after revoke: %d %q", code, files.Passwd)
	}
}
