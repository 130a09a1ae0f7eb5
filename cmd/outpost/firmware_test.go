package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestFirmwareBuildDevicesCSV builds three bundles from a devices.csv through the CLI, with
// the agent taken from a release directory as make cross lays it out.
func TestFirmwareBuildDevicesCSV(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	releaseAgent := filepath.Join(release, "outpost-agent-linux-amd64")
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		// The host's agent stands in for make cross's amd64 one, as in
		// TestFirmwareIdentityRotation: another build of the same agent would cost the
		// package a second compile of its whole dependency tree.
		_, agentBin := binaries(t)
		bin, err := os.ReadFile(agentBin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(release, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(releaseAgent, bin, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		build := exec.Command("go", "build", "-trimpath", "-o", releaseAgent, "../outpost-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build agent: %v\n%s", err, out)
		}
	}
	model, err := os.ReadFile(filepath.Join(sampleDir, "vibration-anomaly-i8-1.0.0.opkg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "m.opkg"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	fleet := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(fleet, []byte("fleet: lab\nbroker: tcp://127.0.0.1:1883\nmodel: m.opkg\nsensors: [sim:vibration]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	csvPath := filepath.Join(dir, "devices.csv")
	if err := os.WriteFile(csvPath, []byte("device_id,target\ndev-1,amd64\ndev-2,\ndev-3,amd64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	got := firmwareBuild(t, "--fleet", fleet, "--devices", csvPath, "--target", "amd64", "--release-dir", release, "--out", out, "--version", "v2.0.0", "--no-identity")
	if !strings.Contains(got, "3 bundles in "+out) {
		t.Errorf("output %q", got)
	}
	for _, id := range []string{"dev-1", "dev-2", "dev-3"} {
		if _, err := os.Stat(filepath.Join(out, "lab-"+id+"-amd64.deb")); err != nil {
			t.Error(err)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(out, "lab-dev-2-amd64", "root", "etc/outpost/agent.yaml"))
	if err != nil || !strings.Contains(string(cfg), "id: dev-2") {
		t.Errorf("dev-2 config: %v\n%s", err, cfg)
	}

	for _, tc := range []struct{ csv, want string }{
		{"name,target\nx,amd64\n", "no device_id column"},
		{"device_id\ndev-1\ndev-1\n", "line 3: device dev-1 already on line 2"},
		{"device_id\nbad id\n", `line 2: device id "bad id"`},
		{"device_id\n", "no devices"},
		{"device_id,target\ndev-1,esp32\n", `unknown target "esp32"`},
	} {
		if err := os.WriteFile(csvPath, []byte(tc.csv), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := cli(t, "firmware", "build", "--fleet", fleet, "--devices", csvPath, "--target", "amd64", "--release-dir", release, "--out", out); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("devices.csv %q: %v, want %q", tc.csv, err, tc.want)
		}
	}
	if _, err := cli(t, "firmware", "build", "--fleet", fleet, "--target", "amd64"); err == nil || !strings.Contains(err.Error(), "exactly one of --device-id and --devices") {
		t.Errorf("no device: %v", err)
	}
	if got := mustCLI(t, "firmware", "targets"); !strings.Contains(got, "rpi-zero") || !strings.Contains(got, "riscv64") {
		t.Errorf("firmware targets: %s", got)
	}
}

// firmwareBuild runs `outpost firmware build` as the built binary, the way people run it, and
// returns its output. Packing a bundle is gzip over the whole agent, twice (.tar.gz and
// .deb), and takes several times longer in this race-instrumented test binary; it runs on one
// goroutine, so the race detector has nothing to find there. Refusals are tested in-process.
func firmwareBuild(t *testing.T, args ...string) string {
	t.Helper()
	outpostBin, _ := binaries(t)
	cmd := exec.Command(outpostBin, append([]string{"firmware", "build"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("outpost firmware build %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
