package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileSetsFlags(t *testing.T) {
	p := writeConfig(t, `# written by outpost firmware build
id: dev-7
broker: ssl://fleet.example.com:8883
model: /etc/outpost/model.opkg
sensor: [bme280, "sim:vibration?seed=3"]
data-dir: /var/lib/outpost-agent
health-interval: 30s
max-buffered: 5000
`)
	c, err := parse([]string{"--config", p}, io.Discard)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if c.DeviceID != "dev-7" || c.Broker != "ssl://fleet.example.com:8883" || c.ModelPath != "/etc/outpost/model.opkg" ||
		c.DataDir != "/var/lib/outpost-agent" || c.HealthInterval != 30*time.Second || c.MaxBuffered != 5000 {
		t.Errorf("config not applied: %+v", c.Config)
	}
	if want := []string{"bme280", "sim:vibration?seed=3"}; !slices.Equal(c.Sensors, want) {
		t.Errorf("sensors %q, want %q", c.Sensors, want)
	}
}

func TestFlagsOverrideConfigFile(t *testing.T) {
	p := writeConfig(t, "id: dev-7\nmodel: m.opkg\ndata-dir: d\nsensor: [bme280]\nhealth-interval: 30s\n")
	c, err := parse([]string{"--id", "dev-8", "--config", p, "--sensor", "sim:vibration", "--health-interval", "5s"}, io.Discard)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if c.DeviceID != "dev-8" || c.HealthInterval != 5*time.Second || !slices.Equal(c.Sensors, []string{"sim:vibration"}) {
		t.Errorf("flags did not override the file: id %s, interval %v, sensors %q", c.DeviceID, c.HealthInterval, c.Sensors)
	}
	if c.ModelPath != "m.opkg" {
		t.Errorf("model %q from the file lost", c.ModelPath)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"brokr: tcp://x:1\n", `line 1: unknown key "brokr"`},
		{"id: a\nid: b\n", `line 2: "id" given twice`},
		{"health-interval: soon\n", "line 1: health-interval: "},
		{"id: [a, b]\n", "line 1: id takes one value, not a list"},
		{"- id\n", "want a mapping"},
		{"config: other.yaml\n", `"config" can only be given on the command line`},
		{"sensor: [{kind: x}]\n", "sensor: want a plain value"},
		{"id: dev\n  broken: indentation\n", "yaml:"},
		{"id:\n", "id: want a plain value"},
	} {
		_, err := parse([]string{"--config", writeConfig(t, tc.text)}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("config %q: error %v, want one line containing %q", tc.text, err, tc.want)
		}
	}
	if _, err := parse([]string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, io.Discard); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing config: error %v", err)
	}
}

func TestCheckConfig(t *testing.T) {
	p := writeConfig(t, "id: dev-7\nmodel: m.opkg\ndata-dir: d\n")
	var out strings.Builder
	if code := run(t.Context(), []string{"--config", p, "--check-config"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "ok: id dev-7") {
		t.Errorf("--check-config: exit %d, output %q", code, out.String())
	}
	bad := writeConfig(t, "id: dev-7\nmodle: m.opkg\n")
	var errOut strings.Builder
	if code := run(t.Context(), []string{"--config", bad, "--check-config"}, io.Discard, &errOut); code != 2 || !strings.Contains(errOut.String(), "unknown key") {
		t.Errorf("--check-config on a bad file: exit %d, stderr %q", code, errOut.String())
	}
}
