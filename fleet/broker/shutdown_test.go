package broker_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/broker/mochitest"
)

// connectPacket is an MQTT 3.1.1 CONNECT with a clean session and the client id.
func connectPacket(id string) []byte {
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// TestShutdownWhileClientsLeave closes a mochi server while its clients are disconnecting, the
// moment mochi's own Close deadlocks on (see Shutdown): with srv.Close in Shutdown's place this
// test hung in its first or second round, three runs of three. Each round must finish within its
// bound, cut off the client that stayed, and refuse new connections.
func TestShutdownWhileClientsLeave(t *testing.T) {
	t.Parallel()
	const rounds, listenersPerServer, clients = 50, 32, 16
	for r := range rounds {
		srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
		if err := srv.AddHook(new(mochitest.AllowAll), nil); err != nil {
			t.Fatal(err)
		}
		// Each listener's close is one pass of mochi's GetByListener, the racy read.
		var tcp *listeners.TCP
		for i := range listenersPerServer {
			tcp = listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: fmt.Sprint("tcp", i), Address: "127.0.0.1:0"})
			if err := srv.AddListener(tcp); err != nil {
				t.Fatal(err)
			}
		}
		if err := srv.Serve(); err != nil {
			t.Fatal(err)
		}
		conns := make([]net.Conn, clients+1)
		for i := range conns {
			c, err := net.Dial("tcp", tcp.Address())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(connectPacket(fmt.Sprintf("c%d", i))); err != nil {
				t.Fatal(err)
			}
			ack := make([]byte, 4)
			if _, err := c.Read(ack); err != nil || ack[0] != 0x20 {
				t.Fatalf("client %d: no CONNACK (%v)", i, err)
			}
			conns[i] = c
		}
		// The clients leave as the server closes, and more sessions end at the same time: each
		// ending session is a Clients.Delete, the write lock that catches mochi's Close.
		var wg sync.WaitGroup
		stop := make(chan struct{})
		stays := conns[clients]
		for _, c := range conns[:clients] {
			wg.Go(func() { c.Close() })
		}
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						srv.Clients.Delete("gone")
					}
				}
			})
		}
		done := make(chan struct{})
		go func() { broker.Shutdown(srv); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the server did not close within 10 s", r)
		}
		close(stop)
		wg.Wait()
		_ = stays.SetReadDeadline(time.Now().Add(5 * time.Second))
		// mochi may send it a DISCONNECT first; then the connection must end.
		if n, err := io.Copy(io.Discard, stays); err != nil || n > 2 {
			t.Fatalf("round %d: the client that stayed read %d bytes, %v; want the connection closed", r, n, err)
		}
		stays.Close()
		if c, err := net.DialTimeout("tcp", tcp.Address(), time.Second); err == nil {
			c.Close()
			t.Fatalf("round %d: a closed server accepted a connection", r)
		}
	}
}
