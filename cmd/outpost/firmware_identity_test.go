package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFirmwareIdentityRotation: `outpost firmware build --device-id` puts a secret the
// controller just issued into the bundle (0640, named by the config's password-file), and
// building the device's bundle again is the rotation: the new secret logs the device in, the
// old one is refused from then on. (The --enroll bundle is TestFirmwareBundlesUnderQemu's.)
func TestFirmwareIdentityRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent binary")
	}
	t.Parallel()
	_, agentBin := binaries(t)
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	if err := os.MkdirAll(release, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	// The host's agent stands in for make cross's amd64 one (the test runs it directly).
	if err := os.WriteFile(filepath.Join(release, "outpost-agent-linux-amd64"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, api := startCredentialServer(t, credentialConfig{})
	model, err := os.ReadFile(filepath.Join(sampleDir, "vibration-anomaly-i8-1.0.0.opkg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "m.opkg"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	fleetFile := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(fleetFile, []byte("fleet: rot\nbroker: "+srv.BrokerURL+"\nmodel: m.opkg\nsensors: [sim:vibration]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(out string, args ...string) string {
		firmwareBuild(t, append(append([]string{"--fleet", fleetFile, "--target", "amd64", "--release-dir", release, "--out", out}, args...), api...)...)
		return out
	}
	secretOf := func(out string) string {
		root := filepath.Join(out, "rot-rot-1-amd64", "root")
		cfg, err := os.ReadFile(filepath.Join(root, "etc/outpost/agent.yaml"))
		if err != nil || !strings.Contains(string(cfg), "password-file: /etc/outpost/secret") {
			t.Fatalf("bundle config: %v\n%s", err, cfg)
		}
		p := filepath.Join(root, "etc/outpost/secret")
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o640 {
			t.Fatalf("bundle secret: %v, mode %v", err, st.Mode())
		}
		return p
	}
	first := secretOf(build(filepath.Join(dir, "out1"), "--device-id", "rot-1"))
	second := secretOf(build(filepath.Join(dir, "out2"), "--device-id", "rot-1"))
	s1, _ := os.ReadFile(first)
	s2, _ := os.ReadFile(second)
	if string(s1) == string(s2) {
		t.Fatal("rebuilding issued the same secret")
	}

	runAgent := func(secretFile string) (*exec.Cmd, *syncBuf) {
		cmd := exec.Command(agentBin, "--broker", srv.BrokerURL, "--id", "rot-1", "--password-file", secretFile,
			"--model", filepath.Join(dir, "m.opkg"), "--package-key", filepath.Join(sampleDir, "demo-signing.pub"),
			"--data-dir", filepath.Join(dir, "state"), "--health-interval", "300ms")
		out := &syncBuf{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopProcess(t, cmd) })
		return cmd, out
	}
	old, oldLog := runAgent(first)
	waitUntil(t, "the old secret to be refused", 20*time.Second, func() bool {
		return strings.Contains(oldLog.String(), "mqtt authentication refused")
	})
	stopProcess(t, old)
	runAgent(second)
	waitUntil(t, "health and results with the new secret", 30*time.Second, func() bool {
		for _, d := range srv.Controller.Devices() {
			if d.ID == "rot-1" && d.Health != nil && d.ResultsReceived > 0 {
				return true
			}
		}
		return false
	})
}
