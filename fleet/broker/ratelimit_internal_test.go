package broker

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fakeClock is a settable clock for the limiter.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func testLimiter(cfg LoginLimits) (*loginLimiter, *fakeClock, *bytes.Buffer) {
	var logs bytes.Buffer
	l := newLoginLimiter(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	c := &fakeClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	l.now = c.now
	return l, c, &logs
}

func TestLimiterIdentityBackoff(t *testing.T) {
	l, clock, _ := testLimiter(LoginLimits{IdentityFree: 3, IPFree: 1000, Backoff: time.Second, MaxBackoff: 4 * time.Second})
	const attacker = "10.0.0.1:5000"
	// steps: attempt (allowed?) then, when allowed, a failure; sleeps in between.
	for i, step := range []struct {
		wait    time.Duration
		allowed bool
	}{
		{0, true}, {0, true}, {0, true}, // the free failures
		{0, true}, // the 4th fails and blocks for 1 s
		{500 * time.Millisecond, false},
		{500 * time.Millisecond, true}, // 1 s later: checked, fails, blocks 2 s
		{1900 * time.Millisecond, false},
		{100 * time.Millisecond, true}, // fails, blocks 4 s
		{3 * time.Second, false},
		{time.Second, true}, // fails, blocks 8 s capped at 4 s
		{3900 * time.Millisecond, false},
		{100 * time.Millisecond, true},
	} {
		clock.add(step.wait)
		ok, why := l.allow("dev-a", attacker)
		if ok != step.allowed {
			t.Fatalf("step %d: allow = %v (%s), want %v", i, ok, why, step.allowed)
		}
		if ok {
			l.failed("dev-a", attacker)
		}
	}
	// Another identity from the same address is unaffected (the address is under its limit).
	if ok, _ := l.allow("dev-b", attacker); !ok {
		t.Error("dev-b refused because of dev-a's failures")
	}
	// The real dev-a from an address that never failed is still checked.
	if ok, _ := l.allow("dev-a", "10.0.0.2:6000"); !ok {
		t.Error("dev-a from a clean address refused: an attacker could keep the device off")
	}
	// A success forgives the identity.
	l.succeeded("dev-a")
	if ok, _ := l.allow("dev-a", attacker); !ok {
		t.Error("dev-a refused after a successful login")
	}
}

func TestLimiterAddress(t *testing.T) {
	l, clock, _ := testLimiter(LoginLimits{IdentityFree: 100, IPFree: 5, Backoff: time.Second, Forget: time.Minute})
	const attacker = "[2001:db8::1]:1234"
	// Guessing many identities from one address: the address is blocked after IPFree.
	for i := range 6 {
		id := fmt.Sprintf("dev-%d", i)
		if ok, _ := l.allow(id, attacker); !ok {
			t.Fatalf("attempt %d refused before the address's allowance ran out", i)
		}
		l.failed(id, attacker)
	}
	if ok, why := l.allow("dev-new", "[2001:db8::1]:9999"); ok || !strings.Contains(why, "address") {
		t.Errorf("blocked address, other port: allow = %v %q, want refused for the address", ok, why)
	}
	// A success from the address does not reset it.
	l.succeeded("dev-0")
	if ok, _ := l.allow("dev-0", attacker); ok {
		t.Error("a success lifted the address's block")
	}
	// Other addresses are unaffected.
	if ok, _ := l.allow("dev-0", "192.0.2.7:1"); !ok {
		t.Error("another address refused")
	}
	// Failures long ago are forgotten: after Forget, one failure does not block again.
	clock.add(2 * time.Minute)
	if ok, _ := l.allow("dev-x", attacker); !ok {
		t.Fatal("address still blocked long after")
	}
	l.failed("dev-x", attacker)
	if ok, _ := l.allow("dev-y", attacker); !ok {
		t.Error("one failure after Forget blocked the address again")
	}
}

// Memory stays bounded however many identities and addresses fail, and refusals are logged
// once per window with their count.
func TestLimiterBoundedAndQuiet(t *testing.T) {
	l, clock, logs := testLimiter(LoginLimits{IdentityFree: 1, IPFree: 1, MaxKeys: 100, LogEvery: time.Minute, Backoff: time.Hour, MaxBackoff: time.Hour})
	for i := range 10_000 {
		l.failed(fmt.Sprintf("dev-%d", i), fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255))
	}
	if ids, ips := l.size(); ids > 100 || ips > 100 {
		t.Errorf("tracking %d identities and %d addresses, cap 100", ids, ips)
	}
	// Block one address, then hammer it: one log line per minute.
	l.failed("x", "192.0.2.1:1")
	l.failed("x", "192.0.2.1:1")
	for range 1000 {
		if ok, _ := l.allow("x", "192.0.2.1:1"); ok {
			t.Fatal("blocked address allowed")
		}
		clock.add(100 * time.Millisecond) // 100 s in all
	}
	if n := strings.Count(logs.String(), "rate limited"); n != 2 {
		t.Errorf("%d refusal log lines over 100 s, want 2 (one per minute):\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "refused=600") {
		t.Errorf("the second line should count the 600 refusals of its minute:\n%s", logs.String())
	}
}

func TestLimiterOff(t *testing.T) {
	var l *loginLimiter = newLoginLimiter(LoginLimits{Off: true}, slog.New(slog.DiscardHandler))
	for range 100 {
		l.failed("a", "1.2.3.4:5")
	}
	if ok, _ := l.allow("a", "1.2.3.4:5"); !ok {
		t.Error("a disabled limiter refused")
	}
}
