package mqttlink_test

import (
	"context"
	"errors"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/fleet/broker/mochitest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// startBroker runs a real mochi broker on a free loopback port until the test ends.
func startBroker(t *testing.T) (*mochi.Server, string) { return startBrokerWith(t, nil) }

// startBrokerWith is startBroker with hook deciding who may connect and what they may do.
func startBrokerWith(t *testing.T, hook mochi.Hook) (*mochi.Server, string) {
	t.Helper()
	b := mochitest.Start(t, "127.0.0.1:0", hook)
	return b.Server, b.URL()
}

// watcher is a plain paho client standing in for the controller.
type watcher struct {
	c   paho.Client
	mu  sync.Mutex
	got []paho.Message
}

func newWatcher(t *testing.T, broker, id string, topics ...string) *watcher {
	t.Helper()
	w := &watcher{}
	w.c = paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetOrderMatters(false))
	if tok := w.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	t.Cleanup(func() { w.c.Disconnect(0) })
	for _, topic := range topics {
		tok := w.c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
			w.mu.Lock()
			w.got = append(w.got, m)
			w.mu.Unlock()
		})
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("watcher subscribe %s: %v", topic, tok.Error())
		}
	}
	return w
}

// waitFor polls until some message received satisfies ok, or fails the test after 10 s.
func (w *watcher) waitFor(t *testing.T, what string, ok func(paho.Message) bool) paho.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, m := range w.got {
			if ok(m) {
				w.mu.Unlock()
				return m
			}
		}
		w.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s within 10s", what)
	return nil
}

func (w *watcher) reset() {
	w.mu.Lock()
	w.got = nil
	w.mu.Unlock()
}

func stateIs(device, state string) func(paho.Message) bool {
	return func(m paho.Message) bool {
		var s wire.State
		return m.Topic() == wire.DeviceTopic(device, wire.LeafState) && wire.Decode(m.Payload(), &s) == nil &&
			s.State == state && s.Device == device
	}
}

func newLink(t *testing.T, broker, id string) *mqttlink.Link {
	t.Helper()
	l, err := mqttlink.New(mqttlink.Options{
		Broker: broker, DeviceID: id,
		ConnectRetryInterval: 100 * time.Millisecond, MaxReconnectInterval: 500 * time.Millisecond,
		ConnectTimeout: 2 * time.Second, KeepAlive: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func waitConnected(t *testing.T, l *mqttlink.Link, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Connected() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Connected() did not become %v within 10s", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOnlineHealthAndCleanClose(t *testing.T) {
	_, broker := startBroker(t)
	w := newWatcher(t, broker, "ctl", wire.DeviceTopic("dev-1", "#"))
	l := newLink(t, broker, "dev-1")
	l.Connect()
	waitConnected(t, l, true)
	w.waitFor(t, "retained online state", stateIs("dev-1", wire.StateOnline))

	h, _ := wire.Encode(&wire.Health{Device: "dev-1", Inferences: 42})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Publish(ctx, wire.LeafHealth, h, true); err != nil {
		t.Fatalf("Publish(health) = %v", err)
	}

	// A subscriber arriving later still sees the retained health and presence.
	late := newWatcher(t, broker, "late", wire.DeviceTopic("dev-1", "#"))
	m := late.waitFor(t, "retained health", func(m paho.Message) bool {
		return m.Topic() == wire.DeviceTopic("dev-1", wire.LeafHealth)
	})
	var got wire.Health
	if err := wire.Decode(m.Payload(), &got); err != nil || got.Inferences != 42 || !m.Retained() {
		t.Fatalf("late health = %+v (retained %v), %v; want 42 inferences, retained", got, m.Retained(), err)
	}
	late.waitFor(t, "retained online state", stateIs("dev-1", wire.StateOnline))

	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close = %v", err)
	}
	w.waitFor(t, "offline state after Close", stateIs("dev-1", wire.StateOffline))
	if l.Connected() {
		t.Fatal("Connected() after Close")
	}
	if err := l.Publish(ctx, wire.LeafHealth, h, true); !errors.Is(err, agent.ErrNotConnected) {
		t.Fatalf("Publish after Close = %v, want ErrNotConnected", err)
	}
}

func TestLastWillWhenConnectionKilled(t *testing.T) {
	srv, broker := startBroker(t)
	w := newWatcher(t, broker, "ctl", wire.DeviceTopic("dev-2", wire.LeafState))
	l := newLink(t, broker, "dev-2")
	l.Connect()
	defer l.Close(context.Background())
	w.waitFor(t, "online state", stateIs("dev-2", wire.StateOnline))
	w.reset()

	cl, ok := srv.Clients.Get("dev-2")
	if !ok {
		t.Fatal("broker has no client dev-2")
	}
	cl.Stop(errors.New("test: connection killed"))
	w.waitFor(t, "last-will offline state", stateIs("dev-2", wire.StateOffline))
	// paho reconnects on its own and announces itself again.
	w.waitFor(t, "online state after reconnect", stateIs("dev-2", wire.StateOnline))
	waitConnected(t, l, true)
}

func TestAcks(t *testing.T) {
	_, broker := startBroker(t)
	ctl := newWatcher(t, broker, "ctl")
	l := newLink(t, broker, "dev-3")
	l.Connect()
	defer l.Close(context.Background())
	waitConnected(t, l, true)
	// The subscription is made in the connect handler; wait until an ack gets through.
	topic := wire.ControllerTopic("dev-3", wire.LeafAck)
	deadline := time.Now().Add(10 * time.Second)
	send := func(payload []byte) {
		if tok := ctl.c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("controller publish: %v", tok.Error())
		}
	}
	ack := func(seq uint64) []byte { b, _ := wire.Encode(&wire.Ack{Seq: seq}); return b }
	var got uint64
	next := func() bool {
		select {
		case a := <-l.Acks():
			got = a.Seq
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}
	for got != 1 {
		if time.Now().After(deadline) {
			t.Fatal("ack 1 not delivered within 10s")
		}
		send(ack(1))
		next()
	}
	// Malformed acks are counted and skipped; later good ones still arrive. Acks that pile
	// up unread are coalesced to the highest.
	send([]byte("not json"))
	send([]byte(`{"v":9,"seq":1000}`))
	for seq := uint64(2); seq <= 40; seq++ {
		send(ack(seq))
	}
	for deadline := time.Now().Add(10 * time.Second); got != 40; {
		if !next() && time.Now().After(deadline) {
			t.Fatalf("highest ack seen %d, want 40", got)
		}
	}
	if got > 40 {
		t.Fatalf("ack %d delivered, never sent", got)
	}
	if n := l.BadAcks(); n != 2 {
		t.Fatalf("BadAcks() = %d, want 2", n)
	}
}

func TestBrokerUnreachable(t *testing.T) {
	// A port that was free a moment ago: nothing listens on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := newLink(t, "tcp://"+addr, "dev-4")
	l.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Publish(ctx, wire.LeafResults, []byte("{}"), false); !errors.Is(err, agent.ErrNotConnected) {
		t.Fatalf("Publish with no broker = %v, want ErrNotConnected", err)
	}
	start := time.Now()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close with no broker = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v with no broker", d)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct{ broker, id, want string }{
		{"tcp://127.0.0.1:1883", "", "device id"},
		{"tcp://127.0.0.1:1883", "a/b", "not allowed"},
		{"http://127.0.0.1:1883", "d", "scheme"},
		{"127.0.0.1:1883", "d", "broker"},
		{"tcp://127.0.0.1", "d", "host:port"},
		{"tcp://[::1", "d", "broker"},
	}
	for _, tt := range tests {
		t.Run(tt.broker+"/"+tt.id, func(t *testing.T) {
			_, err := mqttlink.New(mqttlink.Options{Broker: tt.broker, DeviceID: tt.id})
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("New(%q, %q) = %v, want one-line error containing %q", tt.broker, tt.id, err, tt.want)
			}
		})
	}
}

func TestAcksOfAnotherEpochIgnored(t *testing.T) {
	_, broker := startBroker(t)
	ctl := newWatcher(t, broker, "ctl")
	l, err := mqttlink.New(mqttlink.Options{
		Broker: broker, DeviceID: "dev-5", Epoch: 77,
		ConnectRetryInterval: 100 * time.Millisecond, MaxReconnectInterval: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Connect()
	defer l.Close(context.Background())
	waitConnected(t, l, true)
	topic := wire.ControllerTopic("dev-5", wire.LeafAck)
	send := func(epoch, seq uint64) {
		payload, _ := wire.Encode(&wire.Ack{Seq: seq, Epoch: epoch})
		if tok := ctl.c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("controller publish: %v", tok.Error())
		}
	}
	// Until the link's subscription is in place acks are lost, so repeat the pair: a stale
	// ack of another epoch first, then ours.
	deadline := time.Now().Add(10 * time.Second)
	for {
		send(5, 1000)
		send(0, 999)
		send(77, 3)
		select {
		case a := <-l.Acks():
			if got := a.Seq; got != 3 || a.Epoch != 77 {
				t.Fatalf("Acks() delivered %d; only seq 3 was sent for epoch 77", got)
			}
			if l.ForeignAcks() == 0 {
				t.Fatal("ForeignAcks() = 0 after acks of epochs 5 and 0 were delivered before ours")
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no ack of epoch 77 delivered within 10s")
		}
	}
}

func TestNewRejectsBadJitter(t *testing.T) {
	for _, j := range []float64{1.5, math.NaN()} {
		_, err := mqttlink.New(mqttlink.Options{Broker: "tcp://127.0.0.1:1883", DeviceID: "d", Jitter: j})
		if err == nil || !strings.Contains(err.Error(), "jitter") {
			t.Errorf("New(jitter %v) = %v, want a jitter error", j, err)
		}
	}
}

// TestReconnectIsJittered kills the connections of several links at once and checks that
// they do not all come back in the same instant.
func TestReconnectIsJittered(t *testing.T) {
	srv, broker := startBroker(t)
	const n = 6
	links := make([]*mqttlink.Link, n)
	for i := range links {
		l, err := mqttlink.New(mqttlink.Options{
			Broker: broker, DeviceID: "j" + strconv.Itoa(i), Jitter: 1,
			ConnectRetryInterval: 400 * time.Millisecond, MaxReconnectInterval: 400 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		l.Connect()
		defer l.Close(context.Background())
		links[i] = l
	}
	for _, l := range links {
		waitConnected(t, l, true)
	}
	// Kill every connection, then time each link's return by watching the broker's client
	// table for a new connection: polling Connected() for false could miss a link that is
	// already back (its jitter may be near zero).
	killed := make([]*mochi.Client, n)
	for i := range links {
		if cl, ok := srv.Clients.Get("j" + strconv.Itoa(i)); ok {
			killed[i] = cl
			cl.Stop(errors.New("test: connection killed"))
		}
	}
	back := make([]time.Duration, n)
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for done := 0; done < n && time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		done = 0
		for i := range links {
			if back[i] == 0 {
				if cl, ok := srv.Clients.Get("j" + strconv.Itoa(i)); ok && cl != killed[i] && !cl.Closed() {
					back[i] = time.Since(start)
				}
			}
			if back[i] != 0 {
				done++
			}
		}
	}
	lo, hi := slices.Min(back), slices.Max(back)
	if lo == 0 {
		t.Fatalf("not every link reconnected within 10s: %v", back)
	}
	// Without jitter paho retries the first time at once, so all would be back within a few
	// ms; a jitter of up to one 400 ms step spreads six links by far more than 20 ms.
	if hi-lo < 20*time.Millisecond {
		t.Fatalf("reconnect times %v span %v, want them spread by jitter", back, hi-lo)
	}
	t.Logf("reconnect times %v", back)
}
