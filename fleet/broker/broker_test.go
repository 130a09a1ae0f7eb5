package broker_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// startBroker runs a broker on a free loopback port for the test's lifetime.
func startBroker(t *testing.T, opts broker.Options) *broker.Broker {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	b, err := broker.New(opts)
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker Run: %v", err)
		}
	})
	return b
}

type client struct {
	paho.Client
	mu   sync.Mutex
	got  map[string][]string // topic -> payloads
	lost chan error
}

// connect dials b as clientID/user with no retries; err is the CONNECT outcome.
func connect(t *testing.T, b *broker.Broker, clientID, user, password string, will string) (*client, error) {
	t.Helper()
	c := &client{got: map[string][]string{}, lost: make(chan error, 1)}
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID(clientID).
		SetUsername(user).SetPassword(password).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		}).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.record(m) })
	if will != "" {
		o.SetWill(will, "offline", 1, true)
	}
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

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

// subscribe returns the granted QoS (0x80 = refused).
func (c *client) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { c.record(m) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (c *client) publish(t *testing.T, topic, payload string, qos byte) error {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(3 * time.Second) {
		return errors.New("publish not acknowledged")
	}
	return tok.Error()
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestACL(t *testing.T) {
	b := startBroker(t, broker.Options{})
	user, pass := b.ControllerCredentials()
	ctl, err := connect(t, b, user, user, pass, "")
	if err != nil {
		t.Fatalf("controller connect: %v", err)
	}
	if q := ctl.subscribe(t, "#"); q != 1 {
		t.Fatalf("controller subscribe # granted %#x, want 1", q)
	}

	dev, err := connect(t, b, "dev-a", "dev-a", "", wire.DeviceTopic("dev-a", wire.LeafState))
	if err != nil {
		t.Fatalf("device connect: %v", err)
	}
	subTests := []struct {
		filter string
		want   byte
	}{
		{wire.ControllerTopic("dev-a", "#"), 1},
		{wire.ControllerTopic("dev-a", wire.LeafAck), 1},
		{wire.ControllerTopic("dev-b", wire.LeafAck), 0x80},
		{"outpost/v1/c/+/ack", 0x80}, // observing is for anonymous clients only
		{"#", 0x80},
		{"$SYS/#", 0x80},
	}
	for _, tt := range subTests {
		if got := dev.subscribe(t, tt.filter); got != tt.want {
			t.Errorf("device subscribe %s granted %#x, want %#x", tt.filter, got, tt.want)
		}
	}

	// Own topic goes through; the controller receives it.
	own := wire.DeviceTopic("dev-a", wire.LeafHealth)
	if err := dev.publish(t, own, "hi", 1); err != nil {
		t.Fatalf("publish own topic: %v", err)
	}
	waitFor(t, "controller to receive the device's own publish", func() bool { return len(ctl.messages(own)) == 1 })

	// Controller publishes to the device.
	ack := wire.ControllerTopic("dev-a", wire.LeafAck)
	if err := ctl.publish(t, ack, "ack", 1); err != nil {
		t.Fatalf("controller publish: %v", err)
	}
	waitFor(t, "device to receive its ack", func() bool { return len(dev.messages(ack)) >= 1 })

	// QoS 0 publish under another device's id is dropped silently.
	other := wire.DeviceTopic("dev-b", wire.LeafResults)
	if err := dev.publish(t, other, "forged0", 0); err != nil {
		t.Fatalf("publish qos0: %v", err)
	}
	// QoS 1 publish under another id gets an MQTT 3.1.1 client disconnected.
	_ = dev.publish(t, other, "forged1", 1)
	select {
	case <-dev.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("device publishing under another id was not disconnected")
	}
	// A marker from the controller proves earlier messages would have arrived by now.
	marker := wire.DeviceTopic("marker", "x")
	if err := ctl.publish(t, marker, "m", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "marker", func() bool { return len(ctl.messages(marker)) == 1 })
	if got := ctl.messages(other); len(got) != 0 {
		t.Errorf("forged messages reached the controller: %v", got)
	}
}

func TestConnectRules(t *testing.T) {
	tests := []struct {
		name     string
		strict   bool
		clientID string
		user     string
		password string // "ctl" means the controller's real password
		will     string
		wantOK   bool
	}{
		{"controller", false, "outpost-controller", "outpost-controller", "ctl", "", true},
		{"controller wrong password", false, "x", "outpost-controller", "nope", "", false},
		{"controller client id stolen", false, "outpost-controller", "", "", "", false},
		{"device by client id", false, "dev-1", "", "", "", true},
		{"device by username", false, "anything", "dev-2", "", "", true},
		{"device own will", false, "dev-3", "", "", "outpost/v1/d/dev-3/state", true},
		{"device foreign will", false, "dev-3", "", "", "outpost/v1/d/dev-4/state", false},
		{"observer", false, "watch:me", "", "", "", true},
		{"username not a device id", false, "x", "bad user", "", "", false},
		{"observer will", false, "watch:me", "", "", "outpost/v1/d/x/state", false},
		{"strict observer", true, "watch:me", "", "", "", false},
		{"strict device", true, "dev-5", "", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBroker(t, broker.Options{Strict: tt.strict})
			pw := tt.password
			if pw == "ctl" {
				_, pw = b.ControllerCredentials()
			}
			_, err := connect(t, b, tt.clientID, tt.user, pw, tt.will)
			if (err == nil) != tt.wantOK {
				t.Errorf("connect err = %v, want ok=%v", err, tt.wantOK)
			}
		})
	}
}

func TestObserver(t *testing.T) {
	for _, strictDev := range []bool{false, true} {
		b := startBroker(t, broker.Options{Strict: strictDev})
		dev, err := connect(t, b, "dev-o", "", "", "")
		if err != nil {
			t.Fatal(err)
		}
		if strictDev {
			if q := dev.subscribe(t, "outpost/#"); q != 0x80 {
				t.Errorf("strict: device subscribe outpost/# granted %#x, want refused", q)
			}
			continue
		}
		obs, err := connect(t, b, "observer:1", "", "", "")
		if err != nil {
			t.Fatalf("observer connect: %v", err)
		}
		if q := obs.subscribe(t, "outpost/#"); q != 1 {
			t.Fatalf("observer subscribe outpost/# granted %#x", q)
		}
		topic := wire.DeviceTopic("dev-o", wire.LeafHealth)
		if err := dev.publish(t, topic, "h", 1); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "observer to see health", func() bool { return len(obs.messages(topic)) == 1 })
		// Observers are read-only: a QoS 1 publish gets them disconnected.
		_ = obs.publish(t, wire.DeviceTopic("dev-o", wire.LeafHealth), "x", 1)
		select {
		case <-obs.lost:
		case <-time.After(5 * time.Second):
			t.Fatal("observer publishing was not disconnected")
		}
	}
}

func TestFallbackPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	b := startBroker(t, broker.Options{Addr: busy.Addr().String()})
	if !b.FellBack() || b.Addr() == busy.Addr().String() || !strings.HasPrefix(b.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr() = %s FellBack=%v, want a different 127.0.0.1 port than %s", b.Addr(), b.FellBack(), busy.Addr())
	}
	if _, err := connect(t, b, "dev-f", "", "", ""); err != nil {
		t.Fatalf("connect to fallback port: %v", err)
	}

	if _, err := broker.New(broker.Options{Addr: busy.Addr().String(), ExactAddr: true}); err == nil {
		t.Error("New with ExactAddr on a taken port = nil error, want one")
	}
	if _, err := broker.New(broker.Options{Addr: "no-port"}); err == nil {
		t.Error("New with a malformed address = nil error, want one")
	}
}

// TestMaxPacketSize: a packet up to wire.MaxPacketSize is delivered; a larger one gets its
// sender disconnected and reaches nobody (before the limit a 64 MiB publish was accepted).
func TestMaxPacketSize(t *testing.T) {
	b := startBroker(t, broker.Options{})
	user, pass := b.ControllerCredentials()
	ctl, err := connect(t, b, "ctl", user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	ctl.subscribe(t, wire.DeviceWildcard(wire.LeafResults))
	dev, err := connect(t, b, "big-1", "big-1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	topic := wire.DeviceTopic("big-1", wire.LeafResults)
	fits := strings.Repeat("x", wire.MaxPacketSize-2-2-len(topic)-2-8) // header ≤ 5 bytes, topic length, packet id
	if err := dev.publish(t, topic, fits, 1); err != nil {
		t.Fatalf("publish of %d bytes: %v", len(fits), err)
	}
	waitFor(t, "the largest allowed packet delivered", func() bool { return len(ctl.messages(topic)) == 1 })

	dev.Publish(topic, 1, false, strings.Repeat("y", wire.MaxPacketSize+1))
	select {
	case <-dev.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("sender of an oversized packet still connected after 5s")
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(ctl.messages(topic)); n != 1 {
		t.Errorf("subscriber got %d messages, want only the one that fits", n)
	}
}
