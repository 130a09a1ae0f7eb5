package broker

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
)

// TestSettleAfterPredecessor plays the takeover race of takeover.go step by step: the old
// connection's clean session starts ending (OnDisconnect), the new session of the same id is
// listed, mochi's ending then deletes the id from the client list, and only after that does
// mochi let go of the old connection. The new session's settle must wait for that and put the
// session back in the list. A session with no ending predecessor is left as it is, and a
// predecessor that never finishes costs at most maxTeardownWait.
func TestSettleAfterPredecessor(t *testing.T) {
	srv := mqtt.New(nil)
	td := newTeardowns()
	h := &aclHook{srv: srv, log: slog.New(slog.DiscardHandler), teardowns: td}
	pipe := func() net.Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a
	}

	oldConn, newConn := pipe(), pipe()
	old := srv.NewClient(oldConn, "tcp", "dev-1", false)
	srv.Clients.Add(old)
	h.OnDisconnect(old, nil, true) // the old session starts ending
	cl := srv.NewClient(newConn, "tcp", "dev-1", false)
	srv.Clients.Add(cl) // mochi lists the new session...
	go func() {
		time.Sleep(50 * time.Millisecond)
		srv.Clients.Delete(old.ID) // ...and the old ending deletes it by id
		td.end(oldConn)            // then mochi is done with the old connection
	}()
	start := time.Now()
	h.settle(cl)
	if waited := time.Since(start); waited < 40*time.Millisecond || waited > maxTeardownWait {
		t.Errorf("settle returned after %v, want it to wait for the ending (50 ms)", waited)
	}
	if got, ok := srv.Clients.Get("dev-1"); !ok || got != cl {
		t.Fatalf("after settle the list has %v (%v), want the new session", got, ok)
	}
	td.mu.Lock() // end closes the channel before it tidies the map
	left := len(td.byID) + len(td.byConn)
	td.mu.Unlock()
	if left != 0 {
		t.Errorf("%d ids' teardowns left behind", left)
	}

	// No predecessor: nothing to wait for, and settle does not list a session itself.
	other := srv.NewClient(pipe(), "tcp", "dev-2", false)
	start = time.Now()
	h.settle(other)
	if time.Since(start) > 20*time.Millisecond {
		t.Errorf("settle without a predecessor took %v", time.Since(start))
	}
	if _, ok := srv.Clients.Get("dev-2"); ok {
		t.Error("settle listed a session that had no ending predecessor")
	}

	// An ending of another id, or of the session's own connection, is not waited for.
	third := pipe()
	td.begin("dev-3", third)
	if td.wait("dev-1", nil, time.Second) || td.wait("dev-3", third, time.Second) {
		t.Error("wait waited for another id's ending or for its own connection")
	}
	td.end(third)

	// An ending that never finishes is waited for at most max.
	stuck := pipe()
	td.begin("dev-4", stuck)
	start = time.Now()
	if !td.wait("dev-4", nil, 30*time.Millisecond) {
		t.Error("wait did not report the pending ending")
	}
	if d := time.Since(start); d < 25*time.Millisecond || d > time.Second {
		t.Errorf("wait for a stuck ending returned after %v, want about 30 ms", d)
	}
	td.end(stuck)
	td.end(stuck) // a second end, or one for a connection never begun, is harmless
	td.end(pipe())
}

// TestListenerEndsTeardowns: through the real broker, each clean session that disconnects is
// noted as ending (mochi calls OnDisconnect) and forgotten once mochi is done with its
// connection (the listener wrapper).
func TestListenerEndsTeardowns(t *testing.T) {
	b, err := New(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	user, pass := b.ControllerCredentials()
	for i := range 3 {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("ctl").
			SetUsername(user).SetPassword(pass).SetCleanSession(true))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %d: %v", i, tok.Error())
		}
		c.Disconnect(100)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.teardowns.mu.Lock()
		left, begun := len(b.teardowns.byID)+len(b.teardowns.byConn), b.teardowns.begun
		b.teardowns.mu.Unlock()
		if left == 0 && begun >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after 3 clients left: %d endings noted, %d ids still noted as ending", begun, left)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
