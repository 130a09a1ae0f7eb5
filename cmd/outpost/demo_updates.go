package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/tufrepo"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/sample"
)

// demoUpdate is the version the demo rolls out to its devices, canary first.
const demoUpdate = "1.1.0"

// demoUpdates is the demo's update path, kept in its data directory: a fleet TUF repository
// in the controller's data (its offline keys in DATA/demo-keys, which a real fleet would keep
// off the controller), and the sample model as packages signed with the published DEMO key
// (which proves nothing; see docs/models.md), version 1.0.0 that the devices start with and
// demoUpdate that the demo rolls out.
type demoUpdates struct {
	model      string
	root       string // the fleet's root.json, pinned on every device
	targetsKey string // file
	pubFile    string // the DEMO package key's public half, as a file for `serve --package-key`
	pub        ed25519.PublicKey
	pkgs       map[string]string // version → package file
}

// setupDemoUpdates prepares (or, on a later run, reuses) the demo's trust and packages.
func setupDemoUpdates(dataDir, controllerDir, model string) (*demoUpdates, error) {
	keys := filepath.Join(dataDir, "demo-keys")
	u := &demoUpdates{model: model, root: filepath.Join(tufDir(controllerDir), "meta", "1.root.json"),
		targetsKey: filepath.Join(keys, "targets.key"), pkgs: map[string]string{}}
	if _, err := os.Stat(u.root); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(keys, 0o700); err != nil {
			return nil, err
		}
		var rk, tk ed25519.PrivateKey
		if rk, err = genKeyFiles(filepath.Join(keys, "root")); err != nil {
			return nil, err
		}
		if tk, err = genKeyFiles(filepath.Join(keys, "targets")); err != nil {
			return nil, err
		}
		if _, err := tufrepo.Init(tufDir(controllerDir), []ed25519.PrivateKey{rk}, []ed25519.PrivateKey{tk}, tufrepo.Options{}); err != nil {
			return nil, fmt.Errorf("demo trust: %w", err)
		}
	} else if err != nil {
		return nil, err
	}
	key := bundle.DemoKey()
	u.pub = key.Public().(ed25519.PublicKey)
	dir := filepath.Join(dataDir, "models")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pubPEM, err := bundle.MarshalPublicKey(u.pub)
	if err != nil {
		return nil, err
	}
	u.pubFile = filepath.Join(dir, "demo-signing.pub")
	if err := os.WriteFile(u.pubFile, pubPEM, 0o644); err != nil {
		return nil, err
	}
	tfl, err := fs.ReadFile(sample.FS, model+".tflite")
	if err != nil {
		return nil, fmt.Errorf("sample model %q: %w", model, err)
	}
	man, err := fs.ReadFile(sample.FS, model+".json")
	if err != nil {
		return nil, fmt.Errorf("sample model %q: %w", model, err)
	}
	for _, v := range []string{"1.0.0", demoUpdate} {
		var m map[string]any
		if err := json.Unmarshal(man, &m); err != nil {
			return nil, fmt.Errorf("sample manifest %s: %w", model, err)
		}
		m["version"] = v
		mj, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		pkg, err := bundle.Build(mj, tfl, key)
		if err != nil {
			return nil, fmt.Errorf("demo package %s %s: %w", model, v, err)
		}
		u.pkgs[v] = filepath.Join(dir, model+"-"+v+bundle.Extension)
		if err := os.WriteFile(u.pkgs[v], pkg, 0o644); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// start pushes demoUpdate to the registry (publishing it in the TUF repository) and rolls it
// out to every device, one canary first. It returns the rollout's id, or a one-line note why
// there is nothing to roll out (a later run whose devices already run it).
func (u *demoUpdates) start(ctx context.Context, srv *fleetServer, devices int, probation time.Duration) (string, string) {
	pkg, err := os.ReadFile(u.pkgs[demoUpdate])
	if err != nil {
		return "", err.Error()
	}
	if _, err := srv.Registry.Push(ctx, pkg); err != nil {
		return "", err.Error()
	}
	ref := u.model + "@" + demoUpdate
	// One device in the canary (a canary is less than the whole selection).
	canary := min(0.5, 1/float64(devices))
	r, err := srv.Engine.Create(ctx, fleet.RolloutSpec{Model: ref, Canary: canary, Waves: []float64{1}, Probation: probation})
	if errors.Is(err, rollout.ErrNoDevices) {
		return "", "every device already runs " + ref
	}
	if err != nil {
		return "", err.Error()
	}
	return r.ID, ""
}

// printRollout writes one line per wave of rollout id under the fleet table.
func printRollout(out io.Writer, e *rollout.Engine, id string) {
	r, err := e.Get(id)
	if err != nil {
		return
	}
	st := rollout.Summarize(r)
	fmt.Fprintf(out, "\nrollout %s: %s@%s %s\n", r.ID, r.Model.Name, r.Model.Version, strings.ToUpper(r.State))
	for _, w := range st.WaveStatus {
		fmt.Fprintf(out, "  %-7s %-9s %d/%d done, %d in progress, %d failed\n", w.Name, w.State, w.Succeeded, w.Total, w.InProgress, w.Failed)
	}
}
