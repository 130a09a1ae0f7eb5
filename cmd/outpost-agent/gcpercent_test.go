package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// --gc-percent defaults to defaultGCPercent and is marked as given only when the command line
// or a --config file sets it, so that otherwise a GOGC environment variable still applies.
func TestGCPercentFlag(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte("gc-percent: 50\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--id", "d", "--model", "m.opkg", "--data-dir", dir}
	for _, tt := range []struct {
		args    []string
		want    int
		wantSet bool
	}{
		{nil, defaultGCPercent, false},
		{[]string{"--gc-percent", "100"}, 100, true},
		{[]string{"--gc-percent", "-1"}, -1, true},
		{[]string{"--config", cfg}, 50, true},
		{[]string{"--config", cfg, "--gc-percent", "10"}, 10, true},
	} {
		c, err := parse(append(base[:len(base):len(base)], tt.args...), io.Discard)
		if err != nil {
			t.Fatalf("parse(%v) = %v", tt.args, err)
		}
		if c.gcPercent != tt.want || c.gcPercentSet != tt.wantSet {
			t.Errorf("parse(%v): gc percent %d (given %v), want %d (%v)", tt.args, c.gcPercent, c.gcPercentSet, tt.want, tt.wantSet)
		}
	}
	if _, err := parse(append(base, "--gc-percent", "-2"), io.Discard); err == nil {
		t.Error("parse(--gc-percent -2) accepted")
	}
}
