package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// startBroker runs an embedded broker (no controller: health must not need one).
func startHealthBroker(t *testing.T, strict bool) *broker.Broker {
	t.Helper()
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", ExactAddr: true, Strict: strict})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

// statusDevice connects as device id (the broker checks no secrets here) and publishes its
// retained state and health like an agent does.
func statusDevice(t *testing.T, url, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(id).SetConnectTimeout(5 * time.Second))
	if err := waitToken(c.Connect(), 5*time.Second); err != nil {
		t.Fatalf("device %s connect: %v", id, err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publishStatus(t *testing.T, c paho.Client, id, state string, infer float64, lastErr string) {
	t.Helper()
	temp := 47.5
	for leaf, msg := range map[string]any{
		wire.LeafState:  &wire.State{Device: id, State: state, Time: time.Now()},
		wire.LeafHealth: &wire.Health{Device: id, Time: time.Now(), AgentVersion: "v9", Model: wire.ModelRef{Name: "m", Version: "1.0.0"}, InferencesPerS: infer, LatencyP99Ms: 1.25, Buffered: 7, RSSBytes: 3 << 20, SoCTempC: &temp, LastError: lastErr},
	} {
		data, err := wire.Encode(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := waitToken(c.Publish(wire.DeviceTopic(id, leaf), 1, true, data), 5*time.Second); err != nil {
			t.Fatalf("publish %s: %v", leaf, err)
		}
	}
}

func TestHealthOnce(t *testing.T) {
	t.Parallel()
	b := startHealthBroker(t, false)
	publishStatus(t, statusDevice(t, b.URL(), "pump-1"), "pump-1", "online", 25, "")
	publishStatus(t, statusDevice(t, b.URL(), "pump-2"), "pump-2", "offline", 0, "sensor read: i2c timeout")

	var out bytes.Buffer
	cfg := healthConfig{mqttFlags: mqttFlags{Broker: b.URL()}, Wait: 5 * time.Second, Refresh: time.Second}
	if err := runHealth(context.Background(), &out, cfg); err != nil {
		t.Fatalf("runHealth: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, re := range []string{
		`(?m)^\s*DEVICE\s+STATE\s+MODEL`,
		`(?m)^\s*pump-1\s+online\s+m@1\.0\.0\s+v9\s+25\.0\s+1\.250\s+7\s+0\.0\s+0\.0\s+3\.0\s+47\.5\s+(now|\d+s ago)\s+-\s*$`,
		`(?m)^\s*pump-2\s+offline\s+m@1\.0\.0 .* sensor read: i2c timeout\s*$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("output does not match %s:\n%s", re, text)
		}
	}
	if strings.Contains(text, "\033[") {
		t.Errorf("escape sequences in output that is not a terminal:\n%q", text)
	}

	// One device only.
	out.Reset()
	cfg.Device = "pump-2"
	if err := runHealth(context.Background(), &out, cfg); err != nil {
		t.Fatalf("runHealth pump-2: %v", err)
	}
	if strings.Contains(out.String(), "pump-1") || !strings.Contains(out.String(), "pump-2") {
		t.Errorf("health pump-2 shows:\n%s", out.String())
	}
	// A device the broker has nothing about: a one-line error, quickly.
	cfg.Device = "pump-9"
	start := time.Now()
	err := runHealth(context.Background(), &bytes.Buffer{}, cfg)
	if err == nil || !strings.Contains(err.Error(), "pump-9") || strings.Contains(err.Error(), "\n") {
		t.Errorf("health pump-9 = %v, want a one-line error naming it", err)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("health pump-9 took %s: the wait should end once the subscription is quiet", time.Since(start))
	}
}

// With observers refused (serve's default), an anonymous login fails with a hint, and the
// controller's credentials work.
func TestHealthLogin(t *testing.T) {
	t.Parallel()
	b := startHealthBroker(t, true)
	publishStatus(t, statusDevice(t, b.URL(), "pump-1"), "pump-1", "online", 25, "")

	err := runHealth(context.Background(), &bytes.Buffer{}, healthConfig{mqttFlags: mqttFlags{Broker: b.URL()}, Wait: 2 * time.Second, Refresh: time.Second})
	if err == nil || !strings.Contains(err.Error(), "--allow-observers") {
		t.Errorf("anonymous health on a strict broker = %v, want a refusal with a hint", err)
	}

	user, pass := b.ControllerCredentials()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cfg := healthConfig{mqttFlags: mqttFlags{Broker: b.URL(), User: user, PasswordFile: pw}, Wait: 5 * time.Second, Refresh: time.Second}
	if err := runHealth(context.Background(), &out, cfg); err != nil {
		t.Fatalf("health with controller credentials: %v", err)
	}
	if !strings.Contains(out.String(), "pump-1") {
		t.Errorf("health with controller credentials shows:\n%s", out.String())
	}
}

// --watch follows changes live and prints plain frames when not a terminal.
func TestHealthWatch(t *testing.T) {
	t.Parallel()
	b := startHealthBroker(t, false)
	dev := statusDevice(t, b.URL(), "pump-1")
	publishStatus(t, dev, "pump-1", "online", 25, "")

	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runHealth(ctx, out, healthConfig{mqttFlags: mqttFlags{Broker: b.URL()}, Watch: true, Wait: time.Second, Refresh: 100 * time.Millisecond})
	}()
	waitUntil(t, "pump-1 online", 10*time.Second, func() bool { return regexp.MustCompile(`pump-1\s+online .* 25\.0`).MatchString(out.String()) })
	publishStatus(t, dev, "pump-1", "offline", 3, "")
	waitUntil(t, "pump-1 offline", 10*time.Second, func() bool { return regexp.MustCompile(`pump-1\s+offline .* 3\.0`).MatchString(out.String()) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	if n := strings.Count(out.String(), "DEVICE"); n < 2 {
		t.Errorf("watch printed %d frames, want several", n)
	}
}

func TestLiveScreenTerminal(t *testing.T) {
	var out bytes.Buffer
	s := &liveScreen{out: &out, tty: true}
	s.draw("[1s]", "a\nbb\n")
	s.draw("[2s]", "c\n")
	want := "a\033[K\nbb\033[K\n\033[J" + "\033[2A\rc\033[K\n\033[J"
	if out.String() != want {
		t.Errorf("terminal frames = %q, want %q", out.String(), want)
	}
	out.Reset()
	s = &liveScreen{out: &out}
	s.draw("[1s]", "a\n")
	if out.String() != "\n[1s]\na\n" {
		t.Errorf("plain frame = %q", out.String())
	}
}
