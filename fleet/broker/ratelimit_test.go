package broker_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/broker"
)

// countingAuth counts the password checks the broker makes against the real store.
type countingAuth struct {
	broker.DeviceAuth
	checks atomic.Int64
}

func (c *countingAuth) Check(id string, password []byte) error {
	c.checks.Add(1)
	return c.DeviceAuth.Check(id, password)
}

// login tries one MQTT login from the local address from (e.g. 127.0.0.2) and reports the
// CONNECT outcome.
func login(b *broker.Broker, from, id, password string) error {
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetUsername(id).SetPassword(password).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetDialer(&net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}})
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(50)
	return nil
}

// TestLoginRateLimit: a brute-force loop of wrong passwords for one device is refused after a
// few checks, while another device on the same address, and the attacked device from an
// address that never failed, still log in.
func TestLoginRateLimit(t *testing.T) {
	creds := openCreds(t)
	auth := &countingAuth{DeviceAuth: creds}
	b := startBroker(t, broker.Options{Strict: true, Devices: auth,
		LoginLimits: broker.LoginLimits{IdentityFree: 3, IPFree: 50, Backoff: 2 * time.Second, MaxBackoff: 10 * time.Second}})
	secretA, err := creds.Issue(context.Background(), "dev-a")
	if err != nil {
		t.Fatal(err)
	}
	secretB, err := creds.Issue(context.Background(), "dev-b")
	if err != nil {
		t.Fatal(err)
	}

	const attempts = 30
	for i := range attempts {
		if err := login(b, "127.0.0.1", "dev-a", fmt.Sprintf("guess-%d", i)); err == nil {
			t.Fatalf("guess %d accepted", i)
		}
	}
	// 3 free failures, a 4th that starts the backoff; the loop is faster than the 2 s block,
	// so nothing else reaches the password check.
	if n := auth.checks.Load(); n > 5 {
		t.Errorf("%d of %d guesses had their password checked, want at most 5", n, attempts)
	}
	checked := auth.checks.Load()
	if err := login(b, "127.0.0.1", "dev-a", secretA); err == nil {
		t.Error("dev-a logged in from the attacking address while blocked")
	}
	if err := login(b, "127.0.0.1", "dev-b", secretB); err != nil {
		t.Errorf("dev-b, same address, right secret: %v", err)
	}
	if err := login(b, "127.0.0.2", "dev-a", secretA); err != nil {
		t.Errorf("dev-a from an address that never failed: %v", err)
	}
	if auth.checks.Load()-checked != 2 {
		t.Errorf("the blocked attempt was checked (%d checks for 3 logins, want 2)", auth.checks.Load()-checked)
	}
}

// TestLoginRateLimitAddress: guessing across many device ids from one address blocks the
// address; other addresses log in.
func TestLoginRateLimitAddress(t *testing.T) {
	creds := openCreds(t)
	auth := &countingAuth{DeviceAuth: creds}
	b := startBroker(t, broker.Options{Strict: true, Devices: auth,
		LoginLimits: broker.LoginLimits{IdentityFree: 3, IPFree: 10, Backoff: 5 * time.Second}})
	secret, err := creds.Issue(context.Background(), "dev-ok")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := login(b, "127.0.0.3", fmt.Sprintf("dev-%d", i), "guess"); err == nil {
			t.Fatalf("guess %d accepted", i)
		}
	}
	if n := auth.checks.Load(); n > 11 {
		t.Errorf("%d of 40 guesses across ids were checked, want at most 11", n)
	}
	if err := login(b, "127.0.0.3", "dev-ok", secret); err == nil {
		t.Error("a blocked address logged in")
	}
	if err := login(b, "127.0.0.4", "dev-ok", secret); err != nil {
		t.Errorf("another address: %v", err)
	}
	// The controller is never locked out by failures under its name.
	user, pass := b.ControllerCredentials()
	for range 20 {
		login(b, "127.0.0.3", user, "wrong")
	}
	if err := login(b, "127.0.0.3", user, pass); err != nil {
		t.Errorf("controller with its password, from the blocked address: %v", err)
	}
}
