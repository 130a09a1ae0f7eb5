package boltbuf_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/agent/buffertest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func open(t *testing.T, dir string, max int) *boltbuf.Buffer {
	t.Helper()
	b, err := boltbuf.Open(filepath.Join(dir, "buffer.db"), boltbuf.Options{MaxResults: max})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func closer(t *testing.T, b *boltbuf.Buffer) func() {
	return func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func TestBufferContract(t *testing.T) {
	buffertest.Run(t, func(t *testing.T, dir string, max int) (agent.Buffer, func()) {
		b := open(t, dir, max)
		return b, closer(t, b)
	})
}

func TestStateStoreContract(t *testing.T) {
	buffertest.RunStateStore(t, func(t *testing.T, dir string) (agent.StateStore, func()) {
		b := open(t, dir, 0)
		return b.State(), closer(t, b)
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bolt file", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	held := open(t, dir, 0)
	defer held.Close()

	tests := []struct {
		name, path, want string
	}{
		{"parent is a file", filepath.Join(notDir, "buffer.db"), "not a directory"},
		{"missing dir", filepath.Join(dir, "nope", "buffer.db"), "no such file"},
		{"not bolt", garbage, "invalid"},
		{"locked", filepath.Join(dir, "buffer.db"), "locked by another process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := boltbuf.Open(tt.path, boltbuf.Options{LockTimeout: 50e6})
			if err == nil {
				b.Close()
				t.Fatalf("Open(%s) succeeded, want error containing %q", tt.path, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, tt.path) || strings.Contains(msg, "\n") {
				t.Fatalf("Open(%s) = %q, want one line naming the path and containing %q", tt.path, msg, tt.want)
			}
		})
	}
}

// BenchmarkAppend measures one group commit of n results (each an fsynced transaction).
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{1, 32, 256} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			buf, err := boltbuf.Open(filepath.Join(b.TempDir(), "buffer.db"), boltbuf.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			rs := make([]wire.Result, n)
			for i := range rs {
				rs[i] = wire.Result{Time: time.Now(), Model: "m@1.0.0", Score: 0.25, Label: "normal", Outputs: []float32{0.25}, LatencyUs: 40}
			}
			for b.Loop() {
				if err := buf.Append(rs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/result")
		})
	}
}
