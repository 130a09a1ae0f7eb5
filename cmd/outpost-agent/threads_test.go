package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// --threads reaches assemble.Config.Threads, from the command line or from a --config file's
// "threads" key (flagfile applies keys through the flags), the command line winning.
func TestThreadsFlag(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte("threads: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--id", "d", "--model", "m.opkg", "--data-dir", dir}
	for _, tt := range []struct {
		args []string
		want int
	}{
		{nil, 1},
		{[]string{"--threads", "2"}, 2},
		{[]string{"--config", cfg}, 3},
		{[]string{"--config", cfg, "--threads", "4"}, 4},
	} {
		c, err := parse(append(base[:len(base):len(base)], tt.args...), io.Discard)
		if err != nil {
			t.Fatalf("parse(%v) = %v", tt.args, err)
		}
		if c.Threads != tt.want {
			t.Errorf("parse(%v): Threads = %d, want %d", tt.args, c.Threads, tt.want)
		}
	}
}
