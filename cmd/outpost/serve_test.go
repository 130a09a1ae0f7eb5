package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/monitor"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestFleetServer starts the embedded broker and controller together, as serve and demo do,
// feeds one device's results through and stops cleanly, with the default bbolt store and with
// a PostgreSQL one (--store).
func TestFleetServer(t *testing.T) {
	t.Parallel()
	t.Run("bbolt", func(t *testing.T) { testFleetServer(t, serveConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()}) })
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.Start(t, pgtest.Options{}).NewDB(t)
		testFleetServer(t, serveConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir(), StoreURL: url})
	})
}

func testFleetServer(t *testing.T, cfg serveConfig) {
	srv, err := newFleetServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	}()

	acked := make(chan uint64, 10)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(srv.BrokerURL).SetClientID("dev-s").SetUsername("dev-s"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	c.Subscribe(wire.ControllerTopic("dev-s", wire.LeafAck), 1, func(_ mqtt.Client, m mqtt.Message) {
		var a wire.Ack
		if wire.Decode(m.Payload(), &a) == nil {
			acked <- a.Seq
		}
	}).WaitTimeout(5 * time.Second)
	payload, _ := wire.Encode(&wire.ResultBatch{Device: "dev-s", Results: []wire.Result{
		{Seq: 1, Time: time.Now(), Model: "m@1"}, {Seq: 2, Time: time.Now(), Model: "m@1"}}})
	deadline := time.After(10 * time.Second)
	// The controller may still be subscribing: resend until acked (duplicates are harmless).
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		c.Publish(wire.DeviceTopic("dev-s", wire.LeafResults), 1, false, payload)
		select {
		case seq := <-acked:
			if seq != 2 {
				t.Fatalf("ack = %d, want 2", seq)
			}
			if st := srv.Controller.Devices(); len(st) != 1 || st[0].ResultsReceived != 2 {
				t.Fatalf("Devices() = %+v", st)
			}
			return
		case <-deadline:
			t.Fatal("no ack within 10s")
		case <-tick.C:
		}
	}
}

func TestServeErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"serve", "--nope"}, "unknown flag"},
		{"malformed broker url", []string{"serve", "--broker", "http://x:1", "--data-dir", t.TempDir()}, "scheme"},
		{"broker url without port", []string{"serve", "--broker", "tcp://x", "--data-dir", t.TempDir()}, "host:port"},
		{"listen and broker", []string{"serve", "--listen", "127.0.0.1:0", "--broker", "tcp://x:1"}, "exclude"},
		{"bad listen", []string{"serve", "--listen", "nope", "--data-dir", t.TempDir()}, "listen address"},
		{"unwritable data dir", []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(file, "sub")}, "data dir"},
		{"bad log level", []string{"serve", "--log-level", "loud"}, "log-level"},
		{"store not postgres", []string{"serve", "--store", "mysql://u:secret@x/db", "--data-dir", t.TempDir()}, "want a postgres:// or postgresql:// URL"},
		{"store unreachable", []string{"serve", "--store", "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2", "--data-dir", t.TempDir()}, "127.0.0.1:1/db"},
		{"bad retention", []string{"serve", "--retain-results", "3x"}, "whole days"},
		{"negative retention", []string{"serve", "--retain-health", "-1h"}, "whole days"},
		{"bad capture retention", []string{"serve", "--retain-captures", "90 days"}, "whole days"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			root.SetArgs(tt.args)
			root.SetOut(&strings.Builder{})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := root.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "secret") {
				t.Errorf("outpost %v = %v, want one line containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestParseDays(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"0", 0, true},
		{"12h", 12 * time.Hour, true},
		{"1d12h", 0, false},
		{"d", 0, false},
		{"-1d", 0, false},
		{"99999d", 0, false},
	} {
		got, err := parseDays(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseDays(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if s := (days{new(time.Duration)}).String(); s != "0d" {
		t.Errorf("String of 0 = %q", s)
	}
}

func FuzzParseDays(f *testing.F) {
	for _, s := range []string{"30d", "0", "12h", "-1d", "65536d", "1h30m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDays(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error not one line: %q", err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("parseDays(%q) = %v, negative", s, d)
		}
	})
}

// TestRetainCapturesFlag: --retain-captures takes days like the other --retain-* flags and,
// with --retain-captures-count, reaches the retention loop when the store keeps captures.
func TestRetainCapturesFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args  []string
		age   time.Duration
		count int
	}{
		{nil, fleet.DefaultCaptureRetainAge, fleet.DefaultCaptureRetainCount},
		{[]string{"--retain-captures", "7d", "--retain-captures-count", "500"}, 7 * 24 * time.Hour, 500},
		{[]string{"--retain-captures", "36h", "--retain-captures-count", "-1"}, 36 * time.Hour, 0},
		{[]string{"--retain-captures", "0"}, 0, fleet.DefaultCaptureRetainCount},
	} {
		cmd := &cobra.Command{Use: "serve"}
		var cfg serveConfig
		addRetentionFlags(cmd, &cfg.retentionConfig)
		addCaptureFlags(cmd, &cfg)
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		store, err := boltstore.Open(t.TempDir(), boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r := cfg.retention(store, cfg.CaptureRetainCount)
		if r.Captures == nil || r.CaptureAge != tc.age || r.CaptureCount != tc.count {
			t.Errorf("%v: retention captures %v, age %v, count %d; want the store, %v, %d", tc.args, r.Captures != nil, r.CaptureAge, r.CaptureCount, tc.age, tc.count)
		}
		store.Close()
	}
}

// TestMonitorClientID: scale-out replicas' monitor services get client ids of their own (one
// shared id would have the broker disconnect them in turn); one controller keeps the default.
func TestMonitorClientID(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ controller, want string }{
		{"", ""},
		{fleet.DefaultClientID, ""},
		{fleet.DefaultClientID + "-host-a1", monitor.DefaultClientID + "-host-a1"},
	} {
		if got := monitorClientID(fleet.Options{ClientID: c.controller}); got != c.want {
			t.Errorf("monitorClientID(%q) = %q, want %q", c.controller, got, c.want)
		}
	}
}
