package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/trust"
	"github.com/outpost-ml/outpost/fleet/tufrepo"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// repoFetcher serves a device straight from the repository directory, standing in for the
// MQTT transfer (agent/fetch and fleet/blobserve test that path).
type repoFetcher struct{ repo *tufrepo.Repo }

func (f repoFetcher) FetchMeta(_ context.Context, name string, maxLen int64) ([]byte, error) {
	return f.repo.Meta(name)
}

func TestKeysTrustLifecycle(t *testing.T) {
	dir := t.TempDir()
	data, offline := filepath.Join(dir, "data"), filepath.Join(dir, "offline")

	if _, err := cli(t, "keys", "show", "--data-dir", data); err == nil || !strings.Contains(err.Error(), "outpost keys init") {
		t.Errorf("show before init = %v, want a hint to run init", err)
	}
	if _, err := cli(t, "keys", "init", "--data-dir", data, "--out-dir", filepath.Join(data, "k")); err == nil || !strings.Contains(err.Error(), "inside --data-dir") {
		t.Errorf("init with offline keys inside the data dir = %v", err)
	}
	out := mustCLI(t, "keys", "init", "--data-dir", data, "--out-dir", offline)
	pinned := filepath.Join(data, "tuf", "meta", "1.root.json")
	for _, want := range []string{"root.key", "targets.key", pinned, "timestamp"} {
		if !strings.Contains(out, want) {
			t.Errorf("init output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"root.key", "targets.key"} {
		if fi, err := os.Stat(filepath.Join(offline, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := cli(t, "keys", "init", "--data-dir", data, "--out-dir", filepath.Join(dir, "again")); err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Errorf("second init = %v", err)
	}
	root := filepath.Join(offline, "root.key")
	targets := filepath.Join(offline, "targets.key")
	mustCLI(t, "keys", "gen", "--out", filepath.Join(offline, "root2"))
	mustCLI(t, "keys", "gen", "--out", filepath.Join(offline, "targets2"))

	if _, err := cli(t, "keys", "rotate-root", "--data-dir", data, "--key", targets, "--new-root-key", filepath.Join(offline, "root2.key")); err == nil {
		t.Error("rotate-root signed with the targets key instead of the root key succeeded")
	}
	out = mustCLI(t, "keys", "rotate-root", "--data-dir", data, "--key", root, "--new-root-key", filepath.Join(offline, "root2.key"))
	if !regexp.MustCompile(`(?m)^root\s+2\s`).MatchString(out) {
		t.Errorf("rotate-root output:\n%s", out)
	}
	root = filepath.Join(offline, "root2.key")
	mustCLI(t, "keys", "targets-key", "--data-dir", data, "--key", root, "--new", filepath.Join(offline, "targets2.key"))
	if out := mustCLI(t, "keys", "show", "--data-dir", data); !strings.Contains(out, ",") {
		t.Errorf("after adding a targets key, show lists one key:\n%s", out)
	}
	mustCLI(t, "keys", "targets-key", "--data-dir", data, "--key", root, "--new", filepath.Join(offline, "targets2.key"), "--revoke-others")
	if _, err := cli(t, "keys", "resign-targets", "--data-dir", data, "--targets-key", targets); err == nil {
		t.Error("resign-targets with the revoked targets key succeeded")
	}
	mustCLI(t, "keys", "resign-targets", "--data-dir", data, "--targets-key", filepath.Join(offline, "targets2.key"))
	mustCLI(t, "keys", "rotate-online", "--data-dir", data, "--key", root)
	mustCLI(t, "keys", "resign-root", "--data-dir", data, "--key", root)

	// A device pinned at root v1 follows every step.
	repo, err := tufrepo.Open(filepath.Join(data, "tuf"), tufrepo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := repo.Status()
	if st.Roles[0].Version != 6 {
		t.Errorf("root version %d after five root changes, want 6", st.Roles[0].Version)
	}
	pin, err := os.ReadFile(pinned)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := trust.New(filepath.Join(dir, "device"), pin, repoFetcher{repo}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Refresh(context.Background()); err != nil {
		t.Fatalf("device refresh after the CLI rotations: %v", err)
	}
}

// TestServeWithTrust: serve opens the repository `keys init` made, publishes with the
// targets key it is given, keeps the online roles signed while it runs and stops cleanly.
func TestServeWithTrust(t *testing.T) {
	dir := t.TempDir()
	data, offline := filepath.Join(dir, "data"), filepath.Join(dir, "offline")
	if _, err := newFleetServer(serveConfig{Listen: "127.0.0.1:0", DataDir: data, TargetsKeyFiles: []string{"x.key"}}); err == nil || !strings.Contains(err.Error(), "keys init") {
		t.Errorf("serve --targets-key without trust = %v", err)
	}
	mustCLI(t, "keys", "init", "--data-dir", data, "--out-dir", offline)
	if _, err := newFleetServer(serveConfig{Listen: "127.0.0.1:0", DataDir: data, TargetsKeyFiles: []string{filepath.Join(offline, "root.pub")}}); err == nil {
		t.Error("serve with a public key as --targets-key succeeded")
	}
	srv, err := newFleetServer(serveConfig{Listen: "127.0.0.1:0", DataDir: data, TargetsKeyFiles: []string{filepath.Join(offline, "targets.key")}})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Trust == nil {
		t.Fatal("serve did not open the fleet's trust")
	}
	if err := srv.Trust.AddTarget("vib-1.0.0.opkg", []byte("pkg"), wire.TargetCustom{Name: "vib", Version: "1.0.0", Release: 1}); err != nil {
		t.Errorf("publishing with the served targets key: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of cancel")
	}
}

func TestKeysShowWarnsBeforeExpiry(t *testing.T) {
	var out strings.Builder
	soon := time.Now().Add(10 * 24 * time.Hour)
	later := time.Now().Add(300 * 24 * time.Hour)
	err := printStatus(&out, tufrepo.Status{Roles: []tufrepo.RoleStatus{
		{Name: "root", Version: 1, Expires: later, Threshold: 1},
		{Name: "targets", Version: 3, Expires: soon, Threshold: 1},
		{Name: "snapshot", Version: 3, Expires: soon, Threshold: 1},
		{Name: "timestamp", Version: 9, Expires: soon, Threshold: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "WARNING"); got != 1 || !strings.Contains(out.String(), "resign-targets") {
		t.Errorf("show with targets expiring in 10 days printed %d warnings:\n%s", got, out.String())
	}
}
