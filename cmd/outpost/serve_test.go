package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestFleetServer starts the embedded broker and controller together, as serve and demo do,
// feeds one device's results through and stops cleanly.
func TestFleetServer(t *testing.T) {
	srv, err := newFleetServer(serveConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
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
		{"bad retention", []string{"serve", "--retain-results", "3x"}, "whole days"},
		{"negative retention", []string{"serve", "--retain-health", "-1h"}, "whole days"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			root.SetArgs(tt.args)
			root.SetOut(&strings.Builder{})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := root.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
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
