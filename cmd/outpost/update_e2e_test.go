package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestUpdateEndToEnd runs the whole update path with the real binaries and the embedded
// broker: `outpost keys init`, `outpost models build` of version 1.1.0 of the sample model,
// `outpost serve` (which publishes pushed packages to its TUF repository and serves blocks
// over MQTT), three `outpost-agent` processes pinned to the fleet's root, `outpost models push`
// and `outpost rollout create`, canary first. Every device downloads, verifies, stages,
// activates and commits; the rollout completes and health reports the new version.
func TestUpdateEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs a controller with three agents")
	}
	t.Parallel()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	runUpdateEndToEnd(t, addr, []string{"--listen", addr, "--allow-observers"})
}

// TestUpdateMosquitto is TestUpdateEndToEnd through Debian's Mosquitto: the controller, its
// block server and the rollout engine connect to it with `outpost serve --broker`.
func TestUpdateMosquitto(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and starts Mosquitto")
	}
	t.Parallel()
	addr := startMosquitto(t)
	runUpdateEndToEnd(t, addr, []string{"--broker", "tcp://" + addr})
}

func runUpdateEndToEnd(t *testing.T, addr string, brokerArgs []string) {
	outpostBin, agentBin := binaries(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(outpostBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("outpost %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	tmp := t.TempDir()
	data, offline := filepath.Join(tmp, "controller"), filepath.Join(tmp, "offline-keys")

	// The fleet's trust, and a package-signing key of its own.
	run("keys", "init", "--data-dir", data, "--out-dir", offline)
	root := filepath.Join(data, "tuf", "meta", "1.root.json")
	signing := filepath.Join(tmp, "signing")
	run("keys", "gen", "--out", signing)
	pkgs := map[string]string{}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		man := filepath.Join(tmp, "manifest-"+v+".json")
		writeManifest(t, filepath.Join(sampleDir, "vibration-anomaly-f32.json"), man, func(m map[string]any) { m["version"] = v })
		pkgs[v] = filepath.Join(tmp, "vibration-anomaly-f32-"+v+".opkg")
		run("models", "build", "--tflite", filepath.Join(sampleDir, "vibration-anomaly-f32.tflite"), "--manifest", man, "--key", signing+".key", "--out", pkgs[v])
	}

	httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	// Devices log in with secrets the controller issues below. The embedded broker lets the
	// test's anonymous observer read health with --allow-observers (TestUpdateEndToEnd); the
	// test's Mosquitto allows anonymous clients itself.
	ctrl := exec.Command(outpostBin, append([]string{"serve", "--data-dir", data, "--http", httpAddr,
		"--targets-key", filepath.Join(offline, "targets.key"), "--package-key", signing + ".pub"}, brokerArgs...)...)
	ctrl.Stdout, ctrl.Stderr = testWriter(t, "controller"), testWriter(t, "controller")
	if err := ctrl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(t, ctrl) })
	waitDial(t, addr, 15*time.Second)
	waitDial(t, httpAddr, 15*time.Second)
	obs := newObserver(t, addr)

	api := []string{"--server", "http://" + httpAddr, "--token-file", filepath.Join(data, "api-token")}
	devices := []string{"e2e-1", "e2e-2", "e2e-3"}
	for _, id := range devices {
		secret := filepath.Join(tmp, id+".secret")
		run(append([]string{"devices", "add", id, "--out", secret}, api...)...)
		agent := exec.Command(agentBin, "--broker", "tcp://"+addr, "--id", id, "--password-file", secret, "--model", pkgs["1.0.0"],
			"--package-key", signing+".pub", "--trust-root", root, "--sensor", "sim:vibration",
			"--data-dir", filepath.Join(tmp, id), "--health-interval", "300ms")
		agent.Stdout, agent.Stderr = testWriter(t, id), testWriter(t, id)
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopProcess(t, agent) })
	}
	running := func(version string) func(o *observer) bool {
		return func(o *observer) bool {
			for _, id := range devices {
				if h, ok := o.health[id]; !ok || h.Model.Version != version || h.Unsigned {
					return false
				}
			}
			return true
		}
	}
	obs.waitFor(t, "every device running the signed 1.0.0", 30*time.Second, running("1.0.0"))

	if out := run(append([]string{"models", "push", pkgs["1.1.0"]}, api...)...); !strings.Contains(out, "published") {
		t.Fatalf("models push: %q", out)
	}
	// The controller learns the devices from their health.
	var id string
	deadline := time.Now().Add(20 * time.Second)
	for id == "" {
		out := run(append([]string{"rollout", "create", "vibration-anomaly-f32@1.1.0", "--select", "model=vibration-anomaly-f32",
			"--canary", "30%", "--waves", "100%", "--probation", "2s", "--max-failure", "0%", "--json"}, api...)...)
		var r rollout.Status
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("rollout create --json: %v\n%s", err, out)
		}
		n := 0
		for _, w := range r.Waves {
			n += len(w.Devices)
		}
		if n == len(devices) {
			id = r.ID
			break
		}
		run(append([]string{"rollout", "abort", r.ID}, api...)...)
		if time.Now().After(deadline) {
			t.Fatalf("rollout selected %d devices, want %d", n, len(devices))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var st rollout.Status
	canaryFirst := false
	deadline = time.Now().Add(90 * time.Second)
	for st.State != fleet.RolloutCompleted {
		out := run(append([]string{"rollout", "status", id, "--json"}, api...)...)
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("rollout status --json: %v\n%s", err, out)
		}
		if st.State == fleet.RolloutHalted || st.State == fleet.RolloutAborted {
			t.Fatalf("rollout %s: %s (%s)", id, st.State, st.Reason)
		}
		if len(st.WaveStatus) == 2 && st.WaveStatus[0].InProgress+st.WaveStatus[0].Succeeded > 0 && st.WaveStatus[1].Succeeded == 0 {
			canaryFirst = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout %s still %s after 90s: %s", id, st.State, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !canaryFirst || st.WaveStatus[0].Succeeded != 1 || st.WaveStatus[1].Succeeded != 2 {
		t.Errorf("waves: %+v (canary seen alone first: %v)", st.WaveStatus, canaryFirst)
	}
	obs.waitFor(t, "every device reporting 1.1.0 committed", 20*time.Second, func(o *observer) bool {
		for _, id := range devices {
			h := o.health[id]
			if h.Model.Version != "1.1.0" || h.Update == nil || h.Update.Phase != wire.PhaseCommitted {
				return false
			}
		}
		return true
	})
}

// writeManifest copies the manifest at src to dst, changed by edit.
func writeManifest(t testing.TB, src, dst string, edit func(m map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(fmt.Errorf("write manifest: %w", err))
	}
}
