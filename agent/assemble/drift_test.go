package assemble_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

// vibrationCSV records n samples of the simulated machine as a replay file, so the device can
// read it faster than real time (sim:vibration is paced at its 50 Hz) at the model's rate.
func vibrationCSV(t *testing.T, path string, n int) {
	t.Helper()
	src, err := sensor.Open("sim:vibration?seed=5")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var b strings.Builder
	b.WriteString("timestamp,accel\n")
	v := make([]float32, 1)
	for i := range n {
		if _, err := src.Read(context.Background(), v); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%.2f,%g\n", float64(i)/50, v[0])
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The device builds a drift monitor from its signed package's baseline: with a mean shift
// injected into the sensor it publishes drift summaries and a drift event through the real
// broker, and after an update commits another model the summaries are that model's.
func TestDriftMonitorFollowsModel(t *testing.T) {
	broker := startBroker(t)
	ctl := newController(t, broker) // acks results, so the buffer drains
	var mu sync.Mutex
	var summaries []wire.DriftSummary
	var events []wire.Event
	c := watcher(t, broker)
	collect(t, c, wire.LeafDrift, &mu, &summaries)
	collect(t, c, wire.LeafEvents, &mu, &events)

	dir := t.TempDir()
	csv := filepath.Join(dir, "vibration.csv")
	vibrationCSV(t, csv, 3000)
	// 50 times real time: about 78 inferences a second, a 100-inference window in 1.3 s.
	// The shift of 2 (about 5 baseline σ) starts at once.
	replay := "replay?" + url.Values{"file": {csv}, "speed": {"50"}, "loop": {"true"}, "rate": {"50"}}.Encode()
	spec := "drift?" + url.Values{"source": {replay}, "drift": {"meanshift:2@0s"}}.Encode()

	cfg, _, desired := updatableConfig(t, broker, "dev-drift", dir, spec)
	// The key as shipped beside the sample packages, as --package-key reads it.
	pem, err := os.ReadFile("../../models/sample/demo-signing.pub")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PackageKey, err = bundle.ParsePublicKey(pem); err != nil {
		t.Fatal(err)
	}
	cfg.DriftWindow = 100
	runDevice(t, cfg)

	// sawDrift reports whether a summary of model and a drift event of model have arrived,
	// checking what each summary says.
	sawDrift := func(model string) bool {
		mu.Lock()
		defer mu.Unlock()
		summary := false
		for _, s := range summaries {
			if s.Device != "dev-drift" || s.Model.String() != model {
				continue
			}
			if s.Inferences != 100 {
				t.Errorf("window %d of %s: %d inferences, want 100", s.Window, model, s.Inferences)
			}
			for _, f := range s.Features {
				if f.Role == wire.DriftInput && f.Name == "accel" && f.Scored && len(f.Drifted) > 0 && f.Mean > 1.5 {
					summary = true
				}
			}
		}
		for _, ev := range events {
			if summary && ev.Kind == wire.EventDrift && ev.Device == "dev-drift" && ev.Model.String() == model && strings.Contains(ev.Reason, "accel") {
				return true
			}
		}
		return false
	}
	eventually(t, "drift summary and event of the packaged model", func() bool { return sawDrift("vibration-anomaly-f32@1.0.0") })

	desired <- wire.Desired{V: 1, Generation: 1, Rollout: "ro-d", ProbationS: 1, MaxErrorRate: 0.05,
		Model: &wire.DesiredModel{Name: "vibration-anomaly-i8", Version: "1.0.0", Target: "vibration-anomaly-i8-1.0.0.opkg"}}
	eventually(t, "update committed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			if ev.Kind == wire.EventUpdate && ev.Phase == wire.PhaseCommitted && ev.Rollout == "ro-d" {
				return true
			}
		}
		return false
	})
	eventually(t, "drift summary and event of the updated model", func() bool { return sawDrift("vibration-anomaly-i8@1.0.0") })
	if r, _ := ctl.get("dev-drift"); len(r) == 0 {
		t.Error("no results reached the controller")
	}
}

// The controller's Desired state overrides the drift window and thresholds: a Desired that
// keeps the model but sets drift settings rebuilds the monitor with them.
func TestDriftOverridesFromDesired(t *testing.T) {
	broker := startBroker(t)
	newController(t, broker)
	var mu sync.Mutex
	var summaries []wire.DriftSummary
	c := watcher(t, broker)
	collect(t, c, wire.LeafDrift, &mu, &summaries)

	dir := t.TempDir()
	csv := filepath.Join(dir, "vibration.csv")
	vibrationCSV(t, csv, 3000)
	replay := "replay?" + url.Values{"file": {csv}, "speed": {"50"}, "loop": {"true"}, "rate": {"50"}}.Encode()
	cfg, _, desired := updatableConfig(t, broker, "dev-thr", dir, replay)
	cfg.DriftWindow = 100
	runDevice(t, cfg)

	// seen reports whether a window of n inferences arrived, and whether one of those had a
	// feature drifted on psi.
	seen := func(n int64) (window, psi bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range summaries {
			if s.Device != "dev-thr" || s.Inferences != n {
				continue
			}
			window = true
			for _, f := range s.Features {
				if slices.Contains(f.Drifted, wire.ScorePSI) {
					psi = true
				}
			}
		}
		return window, psi
	}
	eventually(t, "a window of 100 inferences", func() bool { w, _ := seen(100); return w })
	// A PSI limit far below any sampled window's PSI flags every scored window.
	desired <- wire.Desired{V: 1, Generation: 1, Drift: &wire.DriftOverrides{Window: 60, PSI: 1e-9, MinSamples: 1000}}
	eventually(t, "a window of 60 inferences drifted on psi", func() bool { _, psi := seen(60); return psi })
	// Limits at their maxima flag nothing.
	desired <- wire.Desired{V: 1, Generation: 2, Drift: &wire.DriftOverrides{Window: 70, PSI: 100, KS: 1, JS: 1, CUSUMH: 1000}}
	eventually(t, "two windows of 70 inferences", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range summaries {
			if s.Inferences != 70 {
				continue
			}
			n++
			for _, f := range s.Features {
				if len(f.Drifted) > 0 {
					t.Fatalf("window %d drifted on %v with every limit at its maximum", s.Window, f.Drifted)
				}
			}
		}
		return n >= 2
	})
}
