// Package brokertest is the device-isolation contract every broker setup Outpost supports must
// pass (the embedded broker with a credential store, Mosquitto with the files `outpost broker
// config` writes): a device can neither publish as another device nor read another device's
// commands, and a revoked device is cut off at once and refused afterwards.
package brokertest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Env is the broker under test.
type Env struct {
	URL string      // tcp://… or ssl://…
	TLS *tls.Config // for ssl:// URLs; nil otherwise
	// ControllerUser and ControllerPassword log in with full access.
	ControllerUser, ControllerPassword string
	// Issue provisions a device and returns its secret (like `outpost devices add`).
	Issue func(t *testing.T, id string) string
	// Revoke cuts a device off (like `outpost devices revoke` plus what the setup needs for
	// it to take effect, such as reloading Mosquitto).
	Revoke func(t *testing.T, id string)
}

// wait bounds every MQTT round trip and every "this must have arrived by now" wait.
const wait = 5 * time.Second

// RunIsolation runs the contract.
func RunIsolation(t *testing.T, env Env) {
	const a, b = "dev-a", "dev-b"
	secretA, secretB := env.Issue(t, a), env.Issue(t, b)

	// Its own client id: the real controller may be connected under the controller's.
	ctl, err := dial(env, "outpost-test-controller", env.ControllerUser, env.ControllerPassword)
	if err != nil {
		t.Fatalf("controller connect: %v", err)
	}
	defer ctl.close()
	ctl.subscribe(t, "outpost/v1/d/#")

	t.Run("Login", func(t *testing.T) {
		for _, tc := range []struct{ name, clientID, user, password string }{
			{"no password", a, a, ""},
			{"other device's secret", a, a, secretB},
			{"own secret as other device", b, b, secretA},
			{"unknown device", "dev-z", "dev-z", secretA},
			{"anonymous with a device's client id", a, "", ""},
		} {
			if c, err := dial(env, tc.clientID, tc.user, tc.password); err == nil {
				c.close()
				t.Errorf("%s: connected, want refused", tc.name)
			}
		}
	})

	devB, err := dial(env, b, b, secretB)
	if err != nil {
		t.Fatalf("device B connect: %v", err)
	}
	defer devB.close()
	devB.subscribe(t, wire.ControllerTopic(b, "#"))

	t.Run("NoReadingOthersCommands", func(t *testing.T) {
		devA, err := dial(env, a, a, secretA)
		if err != nil {
			t.Fatalf("device A connect: %v", err)
		}
		defer devA.close()
		// Whether the broker refuses these in the SUBACK (mochi, Mosquitto 2) or grants and
		// filters, A must not receive a byte of B's commands.
		for _, f := range []string{wire.ControllerTopic(b, "#"), "outpost/v1/c/+/ack", "outpost/#", "#"} {
			devA.trySubscribe(f)
		}
		ack := wire.ControllerTopic(b, wire.LeafAck)
		if err := ctl.publish(ack, "for-b", 1); err != nil {
			t.Fatalf("controller publish: %v", err)
		}
		devB.waitFor(t, ack, 1)
		// A's own command proves A's deliveries are flowing, so B's would have arrived.
		own := wire.ControllerTopic(a, wire.LeafAck)
		devA.subscribe(t, own)
		if err := ctl.publish(own, "for-a", 1); err != nil {
			t.Fatal(err)
		}
		devA.waitFor(t, own, 1)
		if got := devA.topics(); len(got) != 1 {
			t.Errorf("device A received %v, want only its own %s", got, own)
		}
	})

	t.Run("NoPublishingAsOther", func(t *testing.T) {
		devA, err := dial(env, a, a, secretA)
		if err != nil {
			t.Fatalf("device A connect: %v", err)
		}
		defer devA.close()
		forged := wire.DeviceTopic(b, wire.LeafResults)
		_ = devA.publish(forged, "forged0", 0)
		_ = devA.publish(forged, "forged1", 1) // mochi disconnects A; Mosquitto drops it silently
		// B's own publish after A's proves A's would have reached the controller by now.
		marker := wire.DeviceTopic(b, wire.LeafHealth)
		if err := devB.publish(marker, "b-health", 1); err != nil {
			t.Fatalf("device B publish own topic: %v", err)
		}
		ctl.waitFor(t, marker, 1)
		if got := ctl.messages(forged); len(got) != 0 {
			t.Errorf("controller received forged %s: %v", forged, got)
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		devA, err := dial(env, a, a, secretA)
		if err != nil {
			t.Fatalf("device A connect: %v", err)
		}
		defer devA.close()
		own := wire.DeviceTopic(a, wire.LeafHealth)
		if err := devA.publish(own, "before", 1); err != nil {
			t.Fatalf("device A publish before revoke: %v", err)
		}
		start := time.Now()
		env.Revoke(t, a)
		select {
		case <-devA.lost:
			t.Logf("revoked device cut off %v after the revocation began", time.Since(start).Round(time.Millisecond))
		case <-time.After(wait):
			t.Fatal("revoked device A still connected")
		}
		if c, err := dial(env, a, a, secretA); err == nil {
			c.close()
			t.Fatal("revoked device A reconnected")
		}
		// B is untouched.
		if err := devB.publish(wire.DeviceTopic(b, wire.LeafHealth), "after", 1); err != nil {
			t.Fatalf("device B publish after A's revocation: %v", err)
		}
		ctl.waitFor(t, wire.DeviceTopic(b, wire.LeafHealth), 2)
	})
}

type client struct {
	paho.Client
	mu   sync.Mutex
	got  map[string][]string // topic → payloads
	lost chan error
}

// dial connects once, without retries, as MQTT 3.1.1.
func dial(env Env, clientID, user, password string) (*client, error) {
	c := &client{got: map[string][]string{}, lost: make(chan error, 1)}
	o := paho.NewClientOptions().AddBroker(env.URL).SetClientID(clientID).
		SetUsername(user).SetPassword(password).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectTimeout(wait).SetTLSConfig(env.TLS).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		}).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.record(m) })
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(wait) {
		c.Disconnect(0)
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *client) close() { c.Disconnect(100) }

func (c *client) record(m paho.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got[m.Topic()] = append(c.got[m.Topic()], string(m.Payload()))
}

func (c *client) messages(topic string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got[topic]...)
}

func (c *client) topics() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ts []string
	for k := range c.got {
		ts = append(ts, k)
	}
	return ts
}

func (c *client) trySubscribe(filter string) {
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { c.record(m) })
	tok.WaitTimeout(wait)
}

func (c *client) subscribe(t *testing.T, filter string) {
	t.Helper()
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { c.record(m) })
	if !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	if q := tok.(*paho.SubscribeToken).Result()[filter]; q > 2 {
		t.Fatalf("subscribe %s refused (%#x)", filter, q)
	}
}

func (c *client) publish(topic, payload string, qos byte) error {
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(wait) {
		return fmt.Errorf("publish %s not acknowledged", topic)
	}
	return tok.Error()
}

// waitFor waits until at least n messages arrived on topic.
func (c *client) waitFor(t *testing.T, topic string, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for len(c.messages(topic)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d message(s) on %s (got %d)", n, topic, len(c.messages(topic)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
