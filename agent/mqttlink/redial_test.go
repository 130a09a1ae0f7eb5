package mqttlink_test

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/broker/mochitest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestRedialRestoresDelivery: a link whose session the broker lost still publishes, but its
// acks go nowhere; Redial makes a new session, acks arrive again, and the controller never
// sees the device "offline" (the DISCONNECT keeps the last-will from firing).
func TestRedialRestoresDelivery(t *testing.T) {
	srv, broker := startBroker(t)
	const device = "dev-deaf"
	w := newWatcher(t, broker, "ctl", wire.DeviceTopic(device, "#"))
	l := newLink(t, broker, device)
	l.Connect()
	defer l.Close(context.Background())
	waitConnected(t, l, true)
	w.waitFor(t, "online state", stateIs(device, wire.StateOnline))

	topic := wire.ControllerTopic(device, wire.LeafAck)
	seq := uint64(0)
	// acked sends acks with rising seqs until one arrives, or until d has passed.
	acked := func(d time.Duration) bool {
		for deadline := time.Now().Add(d); time.Now().Before(deadline); {
			seq++
			b, _ := wire.Encode(&wire.Ack{Seq: seq})
			if tok := w.c.Publish(topic, 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("controller publish: %v", tok.Error())
			}
			select {
			case <-l.Acks():
				return true
			case <-time.After(50 * time.Millisecond):
			}
		}
		return false
	}
	if !acked(10 * time.Second) {
		t.Fatal("no ack delivered before the session was lost")
	}

	// The broker loses the session while its connection lives on, as mochi v2.7.9 did when a
	// session's ending raced a reconnect (fleet/broker/takeover.go): its subscriptions go and
	// it is no longer listed, so nothing is delivered to it, but its packets are still read
	// and its pings answered.
	cl, ok := srv.Clients.Get(device)
	if !ok {
		t.Fatalf("broker has no client %s", device)
	}
	srv.UnsubscribeClient(cl)
	srv.Clients.Delete(device)
	for len(l.Acks()) > 0 {
		<-l.Acks()
	}
	if acked(500 * time.Millisecond) {
		t.Fatal("an ack was delivered after the broker lost the session: the test's deafness is not real")
	}
	// Deaf, yet connected and publishing: nothing the link sees tells it.
	h, _ := wire.Encode(&wire.Health{Device: device, Inferences: 7})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Publish(ctx, wire.LeafHealth, h, true); err != nil || !l.Connected() {
		t.Fatalf("deaf link: Publish = %v, Connected = %v; want nil, true", err, l.Connected())
	}

	w.reset()
	if !l.Redial("test: acks stopped") {
		t.Fatal("Redial = false on a connected link")
	}
	w.waitFor(t, "online state after the redial", stateIs(device, wire.StateOnline))
	waitConnected(t, l, true)
	if !acked(10 * time.Second) {
		t.Fatal("no ack delivered after Redial")
	}
	w.mu.Lock()
	for _, m := range w.got {
		if stateIs(device, wire.StateOffline)(m) {
			t.Errorf("the controller saw %q: a redial must not fire the last-will", m.Payload())
		}
	}
	w.mu.Unlock()

	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if l.Redial("after close") {
		t.Fatal("Redial = true after Close")
	}
	if l.Connected() {
		t.Fatal("connected again after Close")
	}
}

// TestRedialWhileDownAndClose: Redial does nothing while the link is not connected (paho is
// reconnecting already), and Close right after a Redial leaves no connection behind.
func TestRedialWhileDownAndClose(t *testing.T) {
	b := mochitest.Start(t, "127.0.0.1:0", nil)
	l := newLink(t, b.URL(), "dev-rd")
	l.Connect()
	waitConnected(t, l, true)
	if !l.Redial("test") {
		t.Fatal("Redial = false on a connected link")
	}
	// Close at once, while the new connection is being made: it must not survive Close.
	if err := l.Close(context.Background()); err != nil {
		t.Logf("Close = %v (the link may not have been connected yet)", err)
	}
	time.Sleep(300 * time.Millisecond)
	if l.Connected() {
		t.Fatal("connected after Close")
	}
	if cl, ok := b.Clients.Get("dev-rd"); ok && !cl.Closed() {
		t.Fatal("the broker still holds an open connection for the closed link")
	}

	l2 := newLink(t, b.URL(), "dev-rd2")
	l2.Connect()
	defer l2.Close(context.Background())
	waitConnected(t, l2, true)
	b.Stop()
	waitConnected(t, l2, false)
	if l2.Redial("test: broker gone") {
		t.Fatal("Redial = true while the link is down")
	}
}
