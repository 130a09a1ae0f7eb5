// Package mochitest runs a bare mochi-mqtt broker on loopback for the tests of MQTT clients (the
// agent's link, its end-to-end tests): none of Outpost's rules, every client allowed unless the
// test brings its own hook. It closes the broker with broker.Shutdown, never mochi's Close alone.
package mochitest

import (
	"log/slog"
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-ml/outpost/fleet/broker"
)

// AllowAll lets every client connect, publish and subscribe.
type AllowAll struct{ mqtt.HookBase }

func (*AllowAll) ID() string { return "allow-all" }

func (*AllowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (*AllowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (*AllowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// Broker is a running test broker.
type Broker struct {
	*mqtt.Server
	// Addr is the host:port it listens on.
	Addr string
	once sync.Once
}

// URL is Addr as a client URL, tcp://host:port.
func (b *Broker) URL() string { return "tcp://" + b.Addr }

// Stop closes the broker and disconnects its clients; it is safe to call more than once and
// runs by itself when the test ends.
func (b *Broker) Stop() { b.once.Do(func() { broker.Shutdown(b.Server) }) }

// Start runs a broker on addr ("127.0.0.1:0" for a free port) with hook deciding who may connect
// and what they may do (AllowAll when nil), until Stop or the end of the test. It has an inline
// client, so the test can publish as the broker.
func Start(t testing.TB, addr string, hook mqtt.Hook) *Broker {
	t.Helper()
	if hook == nil {
		hook = new(AllowAll)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "t", Address: addr})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	b := &Broker{Server: srv, Addr: ln.Address()}
	t.Cleanup(b.Stop)
	return b
}
