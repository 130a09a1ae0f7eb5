package main

import (
	"io"
	"testing"

	"github.com/outpost-ml/outpost/agent/capture"
	"github.com/outpost-ml/outpost/agent/drift"
)

// --drift-window reaches assemble.Config.DriftWindow: the package default unless given, and
// 0 (no monitoring) as assemble's negative "monitor nothing", since assemble's 0 is the default.
func TestDriftWindowFlag(t *testing.T) {
	base := []string{"--id", "d", "--model", "m.opkg", "--data-dir", t.TempDir()}
	for _, tt := range []struct {
		args []string
		want int64
	}{
		{nil, drift.DefaultWindow},
		{[]string{"--drift-window", "200"}, 200},
		{[]string{"--drift-window", "0"}, -1},
	} {
		c, err := parse(append(base[:len(base):len(base)], tt.args...), io.Discard)
		if err != nil {
			t.Fatalf("parse(%v) = %v", tt.args, err)
		}
		if c.DriftWindow != tt.want {
			t.Errorf("parse(%v): DriftWindow = %d, want %d", tt.args, c.DriftWindow, tt.want)
		}
	}
}

// --no-capture and --capture-quota reach assemble.Config.Capture.
func TestCaptureFlags(t *testing.T) {
	base := []string{"--id", "d", "--model", "m.opkg", "--data-dir", t.TempDir()}
	c, err := parse(base, io.Discard)
	if err != nil || c.Capture.Disabled || c.Capture.MaxBytes != capture.DefaultMaxBytes {
		t.Fatalf("defaults: %+v, %v", c.Capture, err)
	}
	c, err = parse(append(base, "--no-capture", "--capture-quota", "1000"), io.Discard)
	if err != nil || !c.Capture.Disabled || c.Capture.MaxBytes != 1000 {
		t.Fatalf("set: %+v, %v", c.Capture, err)
	}
	if _, err := parse(append(base, "--capture-quota", "0"), io.Discard); err == nil {
		t.Error("--capture-quota 0 accepted")
	}
}
