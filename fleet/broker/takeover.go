package broker

import (
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// A device that reconnects while the broker is still tearing down its previous connection
// (a clean session) could be left deaf. mochi ends a clean session in the old connection's
// goroutine: it checks that the session was not taken over, drops its subscriptions from the
// topic index and deletes the client from its list, all by client id. A new connection with
// the same id that is accepted between that check and the deletion is listed, subscribes, and
// is then deleted from the list (and may lose its subscriptions) by the old goroutine: it can
// publish, but nothing is delivered to it, and nothing tells either side. The agent's
// restart-during-download test hit this under load (a download that never got another block).
//
// The broker therefore notes when a clean session starts ending (OnDisconnect, which mochi
// runs before that check) and when mochi is done with its connection (the listener's
// establish function returns, after the deletion). A new session of the same id waits, in
// OnSessionEstablished (before mochi reads its first packet, so before it can subscribe),
// for such endings to finish, and puts itself back in the client list if it was deleted.
// An ending that begins after the new session was established is one mochi already marked
// as taken over, and leaves the new session alone.

// maxTeardownWait bounds how long a new session waits for its predecessor's ending, which
// takes microseconds unless the machine is starved.
const maxTeardownWait = 2 * time.Second

// teardowns tracks the connections whose clean session is ending, by client id.
type teardowns struct {
	mu     sync.Mutex
	byID   map[string]map[net.Conn]chan struct{}
	byConn map[net.Conn]string // the id of each connection in byID, so that end is O(1)
	begun  uint64              // endings noted, for the tests
}

func newTeardowns() *teardowns {
	return &teardowns{byID: map[string]map[net.Conn]chan struct{}{}, byConn: map[net.Conn]string{}}
}

// begin notes that the session of id on c is ending.
func (t *teardowns) begin(id string, c net.Conn) {
	if c == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byID[id]
	if m == nil {
		m = map[net.Conn]chan struct{}{}
		t.byID[id] = m
	}
	if _, ok := m[c]; !ok {
		m[c] = make(chan struct{})
		t.byConn[c] = id
		t.begun++
	}
}

// end notes that mochi is done with c (its establish function returned).
func (t *teardowns) end(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.byConn[c]
	if !ok {
		return
	}
	delete(t.byConn, c)
	m := t.byID[id]
	close(m[c])
	delete(m, c)
	if len(m) == 0 {
		delete(t.byID, id)
	}
}

// wait waits, at most max, for the endings of id's other connections than self to finish,
// and reports whether there were any.
func (t *teardowns) wait(id string, self net.Conn, max time.Duration) bool {
	t.mu.Lock()
	var pending []chan struct{}
	for c, done := range t.byID[id] {
		if c != self {
			pending = append(pending, done)
		}
	}
	t.mu.Unlock()
	if len(pending) == 0 {
		return false
	}
	timeout := time.NewTimer(max)
	defer timeout.Stop()
	for _, done := range pending {
		select {
		case <-done:
		case <-timeout.C:
			return true
		}
	}
	return true
}

// settledListener is a mochi listener whose connections report to t when mochi is done
// with them.
type settledListener struct {
	listeners.Listener
	t *teardowns
}

func (l settledListener) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		defer l.t.end(c)
		return establish(id, c)
	})
}

// OnDisconnect notes a clean session that is ending (see above).
func (h *aclHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire && h.teardowns != nil {
		h.teardowns.begin(cl.ID, cl.Net.Conn)
	}
}

// settle makes a new session safe from its predecessor's ending (see above).
func (h *aclHook) settle(cl *mqtt.Client) {
	if h.teardowns == nil || h.srv == nil {
		return
	}
	if !h.teardowns.wait(cl.ID, cl.Net.Conn, maxTeardownWait) {
		return
	}
	if _, listed := h.srv.Clients.Get(cl.ID); !listed && !cl.Closed() {
		h.srv.Clients.Add(cl)
		h.log.Info("broker relisted a session its predecessor's ending had removed", "client_id", cl.ID)
	}
}

// Provides lists the hooks aclHook implements.
func (h *aclHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}
