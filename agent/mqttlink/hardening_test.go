package mqttlink_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// gate is a mochi hook that records who connects and can refuse logins and subscriptions.
type gate struct {
	mochi.HookBase
	mu        sync.Mutex
	usernames []string
	refuse    atomic.Bool // refuse every login
	attempts  atomic.Int64
	denyRead  string // topic no client may subscribe to
}

func (*gate) ID() string { return "gate" }
func (*gate) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (g *gate) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	g.attempts.Add(1)
	g.mu.Lock()
	g.usernames = append(g.usernames, string(cl.Properties.Username))
	g.mu.Unlock()
	return !g.refuse.Load()
}
func (g *gate) OnACLCheck(_ *mochi.Client, topic string, write bool) bool {
	return write || topic != g.denyRead
}

func startGatedBroker(t *testing.T, g *gate) string {
	_, broker := startBrokerWith(t, g)
	return broker
}

// logBuffer collects a logger's output for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestUsernameIsDeviceID: with no username configured the link logs in as its device id, so
// broker ACLs keyed on the username (Mosquitto's %u) match its topics.
func TestUsernameIsDeviceID(t *testing.T) {
	g := &gate{}
	broker := startGatedBroker(t, g)
	l := newLink(t, broker, "dev-user")
	l.Connect()
	defer l.Close(context.Background())
	waitConnected(t, l, true)
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.usernames) == 0 || g.usernames[0] != "dev-user" {
		t.Fatalf("broker saw usernames %q, want the device id", g.usernames)
	}
}

// TestLastWillHasNoTime: the retained last-will says offline without a time, since the broker
// may publish it long after it was registered.
func TestLastWillHasNoTime(t *testing.T) {
	srv, broker := startBroker(t)
	l := newLink(t, broker, "dev-will")
	l.Connect()
	defer l.Close(context.Background())
	waitConnected(t, l, true)
	w := newWatcher(t, broker, "ctl-will", wire.DeviceTopic("dev-will", wire.LeafState))
	w.waitFor(t, "online state", stateIs("dev-will", wire.StateOnline))
	w.reset()
	cl, ok := srv.Clients.Get("dev-will")
	if !ok {
		t.Fatal("broker has no client dev-will")
	}
	cl.Stop(errors.New("test: connection killed"))
	m := w.waitFor(t, "last-will", stateIs("dev-will", wire.StateOffline))
	var s wire.State
	if err := wire.Decode(m.Payload(), &s); err != nil || !s.Time.IsZero() || bytes.Contains(m.Payload(), []byte(`"ts"`)) {
		t.Fatalf("last-will = %s (%v); want no time in it", m.Payload(), err)
	}
}

// TestAuthRefused: refused credentials are said once, clearly, reported by Err, and retried
// on a long backoff rather than every few hundred milliseconds; once accepted the link
// connects and the error clears.
func TestAuthRefused(t *testing.T) {
	g := &gate{}
	g.refuse.Store(true)
	broker := startGatedBroker(t, g)
	logs := &logBuffer{}
	l, err := mqttlink.New(mqttlink.Options{
		Broker: broker, DeviceID: "dev-auth", Password: "wrong",
		ConnectRetryInterval: 20 * time.Millisecond, MaxReconnectInterval: 20 * time.Millisecond,
		AuthRetryInterval: 400 * time.Millisecond, AuthRetryMax: 800 * time.Millisecond, Jitter: -1,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Connect()
	defer l.Close(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(l.Err(), mqttlink.ErrAuthRefused) {
		if time.Now().After(deadline) {
			t.Fatalf("Err() = %v, want ErrAuthRefused", l.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	// Without the auth backoff paho retries every 20 ms: about 75 attempts in 1.5 s.
	if n := g.attempts.Load(); n > 5 {
		t.Fatalf("%d login attempts in about 1.5 s after a refusal, want a long backoff (≤ 5)", n)
	}
	if n := strings.Count(logs.String(), "authentication refused"); n != 1 {
		t.Fatalf("%d log lines say authentication refused, want exactly 1:\n%s", n, logs)
	}
	if msg := l.Err().Error(); !strings.Contains(msg, `"dev-auth"`) || strings.Contains(msg, "\n") {
		t.Fatalf("Err() = %q, want one line naming the username", msg)
	}
	g.refuse.Store(false)
	waitConnected(t, l, true)
	deadline = time.Now().Add(5 * time.Second)
	for l.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Err() = %v after the login was accepted, want nil", l.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSubscribeRefused: a broker that refuses the ack subscription (SUBACK 0x80, an ACL) is
// noticed: Err reports it and the log says acks will not arrive.
func TestSubscribeRefused(t *testing.T) {
	g := &gate{denyRead: wire.ControllerTopic("dev-sub", wire.LeafAck)}
	broker := startGatedBroker(t, g)
	logs := &logBuffer{}
	l, err := mqttlink.New(mqttlink.Options{
		Broker: broker, DeviceID: "dev-sub", ConnectRetryInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Connect()
	defer l.Close(context.Background())
	waitConnected(t, l, true)
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(l.Err(), mqttlink.ErrSubscribeRefused) {
		if time.Now().After(deadline) {
			t.Fatalf("Err() = %v, want ErrSubscribeRefused", l.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "acks will not arrive") {
		t.Fatalf("log does not warn that acks will not arrive:\n%s", logs)
	}
}

// TestRejectedDelivered: the controller's rejections reach the agent with the ack, and acks
// left unread are merged with their rejections kept.
func TestRejectedDelivered(t *testing.T) {
	_, broker := startBroker(t)
	ctl := newWatcher(t, broker, "ctl-rej")
	l := newLink(t, broker, "dev-rej")
	l.Connect()
	defer l.Close(context.Background())
	waitConnected(t, l, true)
	topic := wire.ControllerTopic("dev-rej", wire.LeafAck)
	send := func(a *wire.Ack) {
		payload, _ := wire.Encode(a)
		if tok := ctl.c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("controller publish: %v", tok.Error())
		}
	}
	// Until the subscription is in place acks are lost: repeat the first until one arrives.
	var got wire.Ack
	for deadline := time.Now().Add(10 * time.Second); got.Seq == 0; {
		send(&wire.Ack{Seq: 1})
		select {
		case got = <-l.Acks():
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no ack delivered within 10s")
		}
	}
	// 20 acks pile up unread (the channel holds 16), each rejecting one result.
	for seq := uint64(2); seq <= 21; seq++ {
		send(&wire.Ack{Seq: seq, Rejected: []wire.Rejected{{Seq: seq, Reason: "bad score"}}})
	}
	time.Sleep(200 * time.Millisecond)
	// paho runs handlers concurrently (order does not matter to cumulative acks), so seq 21
	// may come before the others: read until every rejection is in.
	rejected := map[uint64]bool{}
	highest := got.Seq
	for deadline := time.Now().Add(10 * time.Second); highest != 21 || len(rejected) < 20; {
		select {
		case got = <-l.Acks():
			highest = max(highest, got.Seq)
			for _, r := range got.Rejected {
				if r.Reason != "bad score" {
					t.Fatalf("rejection %+v lost its reason", r)
				}
				rejected[r.Seq] = true
			}
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("highest ack %d (want 21), %d distinct rejections (want 20)", highest, len(rejected))
		}
	}
}
