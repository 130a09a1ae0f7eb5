package sdnotify

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 256)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotifyPathAndAbstract(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	abstract := "outpost-sdnotify-test-" + strconv.Itoa(os.Getpid())
	for _, tc := range []struct{ env, listen string }{{path, path}, {"@" + abstract, "\x00" + abstract}} {
		c := listen(t, tc.listen)
		t.Setenv("NOTIFY_SOCKET", tc.env)
		n, err := FromEnv()
		if err != nil || !n.Enabled() {
			t.Fatalf("FromEnv(%q) = %v, %v", tc.env, n, err)
		}
		for _, msg := range []string{"READY=1", "WATCHDOG=1"} {
			if err := n.Notify(msg); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			if got := read(t, c); got != msg {
				t.Errorf("%s: got %q, want %q", tc.env, got, msg)
			}
		}
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := FromEnv()
	if err != nil || n.Enabled() || n.Notify("READY=1") != nil {
		t.Errorf("without NOTIFY_SOCKET: %v, enabled %v", err, n.Enabled())
	}
	t.Setenv("NOTIFY_SOCKET", "relative/path")
	if _, err := FromEnv(); err == nil {
		t.Error("relative NOTIFY_SOCKET accepted")
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	n, _ = FromEnv()
	if err := n.Notify("READY=1"); err == nil {
		t.Error("Notify to a socket nobody listens on succeeded")
	}
}

func TestWatchdogInterval(t *testing.T) {
	me := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		ok, err   bool
	}{
		{"", "", 0, false, false},
		{"30000000", "", 30 * time.Second, true, false},
		{"30000000", me, 30 * time.Second, true, false},
		{"30000000", "1", 0, false, false},
		{"0", "", 0, false, true},
		{"soon", "", 0, false, true},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		d, ok, err := WatchdogInterval()
		if d != tc.want || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v, %v", tc.usec, tc.pid, d, ok, err)
		}
	}
}

// TestWatchdogWithheldWhenStalled: once the pipeline's counters stop moving, the keep-alives
// stop, so systemd's WatchdogSec restarts a hung agent.
func TestWatchdogWithheldWhenStalled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listen(t, path)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", "")
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	var inferences atomic.Uint64
	moving := atomic.Bool{}
	moving.Store(true)
	progress := func() uint64 {
		if moving.Load() {
			inferences.Add(1)
		}
		return inferences.Load()
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); Supervise(ctx, slog.New(slog.DiscardHandler), progress) }()
	defer func() { cancel(); <-done }()
	if m := next(msgs, 5*time.Second); m != "READY=1" {
		t.Fatalf("first notification %q", m)
	}
	if m := next(msgs, time.Second); m != "WATCHDOG=1" {
		t.Fatalf("while moving: %q, want WATCHDOG=1", m)
	}
	moving.Store(false)
	time.Sleep(300 * time.Millisecond) // half the timeout passes without progress
	for len(msgs) > 0 {
		<-msgs
	}
	if m := next(msgs, time.Second); m != "" {
		t.Fatalf("stalled pipeline still sent %q", m)
	}
	moving.Store(true)
	if m := next(msgs, time.Second); m != "WATCHDOG=1" {
		t.Fatalf("after recovery: %q, want WATCHDOG=1", m)
	}
}

// next returns the next message within d, or "" when none arrives.
func next(msgs <-chan string, d time.Duration) string {
	select {
	case m := <-msgs:
		return m
	case <-time.After(d):
		return ""
	}
}
