package faulttest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// outage is how long the broker stays down.
const outage = 60 * time.Second

// outageBroker is a broker the test can stop and start again on the same port.
type outageBroker interface {
	addr() string
	start(t *testing.T)
	stop(t *testing.T)
}

type embeddedOutage struct{ b *embeddedBroker }

func (e embeddedOutage) addr() string       { return e.b.addr }
func (e embeddedOutage) start(t *testing.T) { e.b.start(t) }
func (e embeddedOutage) stop(*testing.T)    { e.b.stop() }
func (e embeddedOutage) credentials() [2]string {
	return [2]string{broker.DefaultControllerUser, e.b.password}
}

// TestBrokerOutage stops the broker for a minute while the agent keeps producing, then starts
// it again on the same port: every buffered result must reach the controller, in order, and
// be stored once. It runs against the embedded broker and against Debian's Mosquitto.
func TestBrokerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("the broker outage lasts a minute")
	}
	t.Parallel()
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		b := embeddedOutage{startEmbeddedBroker(t)}
		cred := b.credentials()
		brokerOutage(t, b, cred[0], cred[1])
	})
	t.Run("mosquitto", func(t *testing.T) {
		t.Parallel()
		m := newMosquitto(t)
		m.start(t)
		t.Cleanup(func() { m.stop(t) })
		brokerOutage(t, m, "", "")
	})
}

func brokerOutage(t *testing.T, b outageBroker, user, password string) {
	seed := testSeed(t)
	c := newController(t, b.addr(), user, password)
	const device = "outage-1"
	cfg := agentConfig{Broker: b.addr(), Device: device, DataDir: t.TempDir(), Seed: seed}
	log := &logBuffer{}
	a := startAgent(t, cfg, log)
	waitUntil(t, "controller acks the first 100 results", 30*time.Second, func() bool { return c.acked(device) >= 100 })

	b.stop(t)
	down := time.Now()
	// The outage itself: the agent must go on producing into its buffer meanwhile. It is
	// slept in two parts: the controller may still store what it had queued when the broker
	// died, but after a few seconds nothing may reach it any more.
	const settle = 5 * time.Second
	time.Sleep(settle)
	before := c.acked(device)
	t.Logf("broker stopped; controller has acked through seq %d", before)
	time.Sleep(outage - settle)
	if a.exited() {
		t.Fatalf("agent exited during the outage: %v; log:\n%s", a.err, log.tail(30))
	}
	if got := c.acked(device); got != before {
		t.Fatalf("controller acked seq %d while the broker was down (had %d)", got, before)
	}
	b.start(t)
	up := time.Now()
	t.Logf("broker back after %v on %s", up.Sub(down).Round(time.Millisecond), b.addr())

	// The agent reconnects with its backoff (capped at 30 s), so allow for that plus draining
	// about a minute of results.
	c.waitCaughtUp(t, device, up, 90*time.Second)
	caughtUp := time.Now()
	h := c.health(device)
	t.Logf("caught up %v after the restart; health: last_seq %d acked %d buffered %d", caughtUp.Sub(up).Round(time.Millisecond), h.LastSeq, h.AckedSeq, h.Buffered)
	if produced := h.LastSeq - before; produced < uint64(outage.Seconds())*sampleRate/stride/2 {
		t.Errorf("only %d results produced since the outage began; want about %d a second of outage", produced, sampleRate/stride)
	}
	stopAgent(t, a, log)
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	noErrorsLogged(t, log)
	got := verify(t, c.dir, c.rec, device, cfg.DataDir, verifyOpts{seed: cfg.Seed, ordered: true})
	t.Logf("%d results, each stored once and in order; %d re-sent duplicates ignored", got.lastSeq, got.duplicates)
}

// mosquitto is Debian's Mosquitto on a fixed free loopback port, without persistence: a
// restart loses every session and queued message, the harshest case for the agent.
type mosquitto struct {
	bin, conf, address string
	log                *logBuffer

	mu  sync.Mutex
	cmd *exec.Cmd
}

// mosquittoPath finds Debian's mosquitto. In CI its absence is a failure: `make test`
// installs it with scripts/ensure-deps.
func mosquittoPath(t *testing.T) string {
	for _, p := range []string{"mosquitto", "/usr/sbin/mosquitto"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if inCI() {
		t.Fatal("mosquitto not found; `make test` installs it with scripts/ensure-deps")
	}
	t.Skip("mosquitto not installed (run `make deps`)")
	return ""
}

func newMosquitto(t *testing.T) *mosquitto {
	t.Helper()
	bin := mosquittoPath(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	// max_packet_size is the limit docs/protocol.md asks of a broker (wire.MaxPacketSize).
	cfg := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_packet_size %d\nlog_dest stderr\nlog_type error\nlog_type warning\n",
		port, wire.MaxPacketSize)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return &mosquitto{bin: bin, conf: conf, address: fmt.Sprintf("127.0.0.1:%d", port), log: &logBuffer{}}
}

func (m *mosquitto) addr() string { return m.address }

func (m *mosquitto) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stdout, cmd.Stderr = m.log, m.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	m.mu.Lock()
	m.cmd = cmd
	m.mu.Unlock()
	waitDial(t, m.address, 10*time.Second)
}

// kill sends SIGKILL and waits: no clean shutdown, no DISCONNECT to anyone.
func (m *mosquitto) kill() {
	m.mu.Lock()
	cmd := m.cmd
	m.cmd = nil
	m.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// stop sends SIGTERM and waits (SIGKILL after 10 s).
func (m *mosquitto) stop(t *testing.T) {
	m.mu.Lock()
	cmd := m.cmd
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("mosquitto did not stop within 10s of SIGTERM; log:\n%s", m.log.tail(20))
	}
}
