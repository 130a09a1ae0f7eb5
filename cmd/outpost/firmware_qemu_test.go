package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
)

// qemuUser finds a qemu-user emulator (Debian's qemu-user-static, or qemu-user), e.g.
// "aarch64". In CI its absence fails the test: scripts/ensure-deps installs it.
func qemuUser(t *testing.T, arch string) string {
	t.Helper()
	for _, name := range []string{"qemu-" + arch + "-static", "qemu-" + arch} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("qemu-%s-static not found: scripts/ensure-deps installs qemu-user-static", arch)
	}
	t.Skipf("qemu-%s-static not found (apt-get install qemu-user-static, or scripts/ensure-deps); skipping outside CI", arch)
	return ""
}

// TestFirmwareBundlesUnderQemu builds a Raspberry Pi 4 bundle for 64-bit (rpi4, arm64) with the
// device's secret and one for 32-bit (rpi4-32, arm v7) with an enrollment token, through
// `outpost firmware build` against a running controller (in process: embedded broker on
// loopback, device identity on, fleet trust from `outpost keys init`). Each bundle's
// .tar.gz is unpacked and its agent run under qemu-user exactly as the unit runs it
// (ExecStart: outpost-agent --config /etc/outpost/agent.yaml) with the bundle's own config,
// identity, model, package key and trust root, unchanged: qemu's -L points the absolute
// /etc/outpost paths into the unpacked root. The one override is --data-dir (a flag, which
// wins over the config), because /var/lib/outpost-agent is the host's. Each must log in (the
// armv7 one after enrolling), run the model and report health the controller sees, within
// 60 s; both run at once.
func TestFirmwareBundlesUnderQemu(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds two agents and runs them under qemu")
	}
	t.Parallel()
	qemu := map[string]string{"arm64": qemuUser(t, "aarch64"), "armv7": qemuUser(t, "arm")}
	dir := t.TempDir()
	data, offline := filepath.Join(dir, "controller"), filepath.Join(dir, "offline")
	mustCLI(t, "keys", "init", "--data-dir", data, "--out-dir", offline)

	// The release directory, as make cross lays it out, built in parallel.
	release := filepath.Join(dir, "release")
	const version = "v0.0.0-qemu-test"
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, a := range []struct{ arch, goarch, goarm string }{{"arm64", "arm64", ""}, {"armv7", "arm", "7"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", filepath.Join(release, "outpost-agent-linux-"+a.arch), "../outpost-agent")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+a.goarch, "GOARM="+a.goarm)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = &crossBuildErr{a.arch, err, string(out)}
			}
		}()
	}
	wg.Wait()
	t.Log("agents cross-built")
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	srv, err := newFleetServer(serveConfig{Listen: "127.0.0.1:0", DataDir: data, Strict: true,
		TargetsKeyFiles:  []string{filepath.Join(offline, "targets.key")},
		updateConfig:     updateConfig{HTTPAddr: "127.0.0.1:0", PackageKeys: []string{filepath.Join(sampleDir, "demo-signing.pub")}},
		credentialConfig: credentialConfig{DeviceAuth: true}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runStoppable("controller", srv.Run)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	api := []string{"--server", "http://" + srv.APIAddr, "--token-file", filepath.Join(data, "api-token")}
	waitUntil(t, "the enrollment server to subscribe", 10*time.Second, srv.Enroll.Subscribed)

	fleetDir := filepath.Join(dir, "fleet")
	for src, dst := range map[string]string{
		filepath.Join(sampleDir, "vibration-anomaly-i8-1.0.0.opkg"): "model.opkg",
		filepath.Join(sampleDir, "demo-signing.pub"):                "models.pub",
		filepath.Join(data, "tuf", "meta", "1.root.json"):           "root.json",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(fleetDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fleetDir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fleetFile := filepath.Join(fleetDir, "fleet.yaml")
	text := "fleet: qemu\nbroker: " + srv.BrokerURL + "\nmodel: model.opkg\npackage_key: models.pub\ntrust_root: root.json\n" +
		"sensors: [sim:vibration]\nagent:\n  health-interval: 1s\n"
	if err := os.WriteFile(fleetFile, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	build := func(args ...string) {
		firmwareBuild(t, append(append([]string{"--fleet", fleetFile, "--release-dir", release, "--out", out, "--version", version}, args...), api...)...)
	}
	build("--target", "rpi4", "--device-id", "pi-64")
	build("--target", "rpi4-32", "--enroll", "--enroll-prefix", "pi-32-")

	t.Log("bundles built")
	bundles, _ := filepath.Glob(filepath.Join(out, "*.tar.gz"))
	if len(bundles) != 2 {
		t.Fatalf("bundles %v, want 2", bundles)
	}
	type run struct {
		name, arch string
		match      func(id string) bool
	}
	runs := []run{
		{"qemu-pi-64-rpi4", "arm64", func(id string) bool { return id == "pi-64" }},
		{"", "armv7", func(id string) bool { return strings.HasPrefix(id, "pi-32-") }},
	}
	for _, b := range bundles {
		if !strings.HasPrefix(filepath.Base(b), "qemu-pi-64-") {
			runs[1].name = strings.TrimSuffix(filepath.Base(b), ".tar.gz")
		}
	}
	t.Run("agents", func(t *testing.T) {
		// Both at once, from goroutines rather than as parallel subtests: a parallel subtest
		// waits for one of the package's -parallel slots, which its other end-to-end tests
		// hold for minutes, while these take seconds.
		var wg sync.WaitGroup
		defer wg.Wait()
		for _, r := range runs {
			wg.Go(func() {
				t.Run(r.arch, func(t *testing.T) {
					unpacked := filepath.Join(dir, "device-"+r.arch)
					if err := os.MkdirAll(unpacked, 0o755); err != nil {
						t.Fatal(err)
					}
					if msg, err := exec.Command("tar", "-xzf", filepath.Join(out, r.name+".tar.gz"), "-C", unpacked).CombinedOutput(); err != nil {
						t.Fatalf("unpack: %v %s", err, msg)
					}
					root := filepath.Join(unpacked, r.name, "root")
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					cmd := exec.CommandContext(ctx, qemu[r.arch], "-L", root, filepath.Join(root, "usr/bin/outpost-agent"),
						"--config", "/etc/outpost/agent.yaml", "--data-dir", filepath.Join(unpacked, "state"))
					logs := &syncBuf{}
					cmd.Stdout, cmd.Stderr = logs, logs
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					defer stopProcess(t, cmd)
					var seen fleet.DeviceStatus
					deadline := time.Now().Add(55 * time.Second)
					for {
						for _, d := range srv.Controller.Devices() {
							if r.match(d.ID) {
								seen = d
							}
						}
						if h := seen.Health; h != nil && h.Inferences > 0 && h.AgentVersion == version && seen.ResultsReceived > 0 {
							break
						}
						if time.Now().After(deadline) || cmd.ProcessState != nil {
							t.Fatalf("%s: no health with inferences from the bundle's agent within 55s (device %+v)\n%s", r.arch, seen, logs)
						}
						time.Sleep(200 * time.Millisecond)
					}
					if seen.Model.Name == "" || seen.Health.Model != seen.Model {
						t.Errorf("%s: health reports model %+v, device %+v", r.arch, seen.Health.Model, seen.Model)
					}
					t.Logf("%s: device %s, %d inferences, %.1f/s, p50 %.2f ms, model %s, %d results stored",
						r.arch, seen.ID, seen.Health.Inferences, seen.Health.InferencesPerS, seen.Health.LatencyP50Ms, seen.Model, seen.ResultsReceived)
					if r.arch == "armv7" {
						// An enrollment bundle carries the token, no secret and no fixed id.
						cfg, _ := os.ReadFile(filepath.Join(root, "etc/outpost/agent.yaml"))
						if !strings.Contains(string(cfg), "enroll-token: /etc/outpost/enroll-token") || strings.Contains(string(cfg), "\nid:") {
							t.Errorf("enrollment bundle config:\n%s", cfg)
						}
						if _, err := os.Stat(filepath.Join(root, "etc/outpost/secret")); err == nil {
							t.Error("an enrollment bundle carries a secret")
						}
						if _, err := os.Stat(filepath.Join(unpacked, "state", "identity.json")); err != nil || !strings.Contains(logs.String(), "enrolled") {
							t.Errorf("armv7: enrolled identity: %v\n%s", err, logs)
						}
					}
					if strings.Contains(logs.String(), "model updates disabled") {
						t.Errorf("%s: the bundle's trust root was not used:\n%s", r.arch, logs)
					}
				})
			})
		}
	})
}

type crossBuildErr struct {
	arch string
	err  error
	out  string
}

func (e *crossBuildErr) Error() string {
	return "build " + e.arch + " agent: " + e.err.Error() + "\n" + e.out
}
