package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the whole demo in-process for a few seconds — embedded broker, controller and
// three agents with the real model — and checks the fleet tables: every device online,
// running the int8 sample model, with results received by the controller; then the rollout
// of 1.1.0 reaching the canary first and every device in the end.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for several seconds")
	}
	t.Parallel()
	dir := t.TempDir()
	var out bytes.Buffer
	cfg := demoConfig{
		Devices: 3, Duration: 16 * time.Second, Listen: "127.0.0.1:0", DataDir: dir,
		Model: defaultDemoModel, HealthInterval: 500 * time.Millisecond,
		FaultAfter: 2 * time.Second, Refresh: time.Second,
		RolloutAfter: 3 * time.Second, Probation: 2 * time.Second,
	}
	if err := runDemo(context.Background(), &out, cfg); err != nil {
		t.Fatalf("runDemo: %v\n%s", err, out.String())
	}
	text := out.String()
	if !strings.Contains(text, "stopped cleanly") || !strings.Contains(text, "bearing fault has been injected") {
		t.Fatalf("demo did not stop cleanly:\n%s", text)
	}
	// Live tables follow "[Ns]" headings. The one drawn as the run ends may already show
	// devices going offline, and the summary after the stop shows them offline, as it should;
	// so the check is that some live table shows all three online, running the int8 sample
	// model, with results received by the controller.
	row := regexp.MustCompile(`(?m)^\s*(dev-\d)\s+(yes|no)\s+(\S+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+(\d+)\s+(\d+)`)
	summary := strings.Index(text, "final state:")
	if summary < 0 {
		t.Fatalf("no final summary:\n%s", text)
	}
	healthy, canaryFirst := false, false
	for _, block := range strings.Split(text[:summary], "\n[")[1:] {
		rows := row.FindAllStringSubmatch(block, -1)
		ok := len(rows) == 3
		updated := 0
		for _, r := range rows {
			received, _ := strconv.Atoi(r[6])
			ok = ok && r[2] == "yes" && r[3] == "vibration-anomaly-i8@1.0.0" && received > 0
			if r[3] == "vibration-anomaly-i8@1.1.0" {
				updated++
			}
		}
		healthy = healthy || ok
		canaryFirst = canaryFirst || updated == 1 && strings.Contains(block, "canary  running")
	}
	if !healthy {
		t.Errorf("no live table shows 3 online devices running vibration-anomaly-i8@1.0.0 with results received:\n%s", text)
	}
	// The injected bearing fault shows as it happens: some live table after the fault was
	// injected gives the last device events and an anomalous latest outcome, read from what
	// the controller stored.
	faultRow := regexp.MustCompile(`(?m)^\s*dev-3\s+yes\s+\S+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+\s+\d+\s+(\d+)\s+(anomaly|normal) ([\d.]+)`)
	faultSeen := false
	for _, block := range strings.Split(text[:summary], "\n[")[1:] {
		if m := faultRow.FindStringSubmatch(block); m != nil && strings.Contains(block, "bearing fault") {
			events, _ := strconv.Atoi(m[1])
			faultSeen = faultSeen || events > 0 && m[2] == "anomaly"
		}
	}
	if !faultSeen {
		t.Errorf("no live table shows the faulty dev-3 with events and an anomalous latest outcome:\n%s", text)
	}
	if !canaryFirst {
		t.Errorf("no live table shows the canary alone on 1.1.0:\n%s", text)
	}
	final := row.FindAllStringSubmatch(text[summary:], -1)
	if len(final) != 3 {
		t.Fatalf("final summary has %d device rows, want 3:\n%s", len(final), text[summary:])
	}
	for _, r := range final {
		if received, _ := strconv.Atoi(r[6]); received == 0 {
			t.Errorf("final row %q: no results received", r[0])
		}
		if r[3] != "vibration-anomaly-i8@1.1.0" {
			t.Errorf("final row %q: not updated to 1.1.0", r[0])
		}
	}
	for _, f := range []string{"controller/controller.db", "dev-1/buffer.db", "models/vibration-anomaly-i8.tflite", "demo.log"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("data dir lacks %s: %v", f, err)
		}
	}

	// A second run on the same data continues: sequence numbers resume, nothing is lost.
	out.Reset()
	cfg.Duration, cfg.RolloutAfter = 3*time.Second, time.Second
	if err := runDemo(context.Background(), &out, cfg); err != nil {
		t.Fatalf("second runDemo: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "every device already runs vibration-anomaly-i8@1.1.0") {
		t.Errorf("second run did not keep 1.1.0:\n%s", out.String())
	}
}

func TestDemoBadFlags(t *testing.T) {
	for _, cfg := range []demoConfig{
		{Devices: 0, Refresh: time.Second, HealthInterval: time.Second},
		{Devices: 1, Duration: -time.Second, Refresh: time.Second, HealthInterval: time.Second},
		{Devices: 1, Refresh: time.Second, HealthInterval: time.Second, DataDir: t.TempDir(), Model: "no-such-model", Listen: "127.0.0.1:0"},
	} {
		err := runDemo(context.Background(), &bytes.Buffer{}, cfg)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("runDemo(%+v) = %v, want a one-line error", cfg, err)
		}
	}
}
