package main_test

import (
	"net"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// notifySocket listens where NOTIFY_SOCKET points for this test and returns the messages.
func notifySocket(t *testing.T, watchdog time.Duration) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", "")
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close() })
	return msgs
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

// TestWatchdogRealAgent runs the agent binary as systemd would with Type=notify and
// WatchdogSec=2: it says READY=1, keeps pinging while it infers, and says STOPPING=1 on
// SIGTERM.
func TestWatchdogRealAgent(t *testing.T) {
	msgs := notifySocket(t, 2*time.Second)
	_, wait := startAgent(t, "--broker", "tcp://127.0.0.1:1", "--id", "dev-wd", "--model", sampleModel, "--allow-unsigned", "--data-dir", t.TempDir())
	if m := next(msgs, 20*time.Second); m != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", m)
	}
	for i := range 3 {
		if m := next(msgs, 2*time.Second); m != "WATCHDOG=1" {
			t.Fatalf("keep-alive %d: %q, want WATCHDOG=1 within the 2 s timeout", i, m)
		}
	}
	if code := wait(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for m := next(msgs, 5*time.Second); m != "STOPPING=1"; m = next(msgs, 5*time.Second) {
		if m != "WATCHDOG=1" {
			t.Fatalf("after SIGTERM got %q, want STOPPING=1", m)
		}
	}
}
