package faulttest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serverKills is how many times the server side is SIGKILLed in each test below. Each cycle
// waits for ingest to resume before the next kill, so it costs a few seconds.
const serverKills = 4

// TestServeKilled SIGKILLs the real `outpost serve` (controller and embedded broker in one
// process) at random moments while the real agent streams results into it, restarting it on
// the same data dir and port each time: a kill between storing and acking, or in the middle
// of a store transaction, must lose nothing and store nothing twice. The content of every
// stored result is recomputed from the seeded sensor.
func TestServeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills outpost serve")
	}
	t.Parallel()
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	bin := outpostBinary(t)
	addr := freeAddr(t)
	ctlDir := t.TempDir()
	srvLog := &logBuffer{}
	var srv *exec.Cmd
	startServe := func() {
		t.Helper()
		// What is under test is crash consistency, not identity: devices log in without secrets
		// (--insecure-open-devices) and the test's anonymous observer may read health.
		srv = exec.Command(bin, "serve", "--listen", addr, "--data-dir", ctlDir, "--allow-observers", "--insecure-open-devices")
		srv.Stdout, srv.Stderr = srvLog, srvLog
		if err := srv.Start(); err != nil {
			t.Fatalf("start outpost serve: %v", err)
		}
		waitDial(t, addr, 20*time.Second)
	}
	startServe()
	t.Cleanup(func() {
		if srv.ProcessState == nil {
			_ = srv.Process.Kill()
			_ = srv.Wait()
		}
		if t.Failed() {
			t.Logf("outpost serve log (last 30 lines):\n%s", srvLog.tail(30))
		}
	})

	const device = "servekill-1"
	w := newHealthObserver(t, addr, device)
	cfg := agentConfig{Broker: addr, Device: device, DataDir: t.TempDir(), Seed: seed}
	log := &logBuffer{}
	a := startAgent(t, cfg, log)
	waitUntil(t, "acks for the first 100 results", 30*time.Second, func() bool { return w.ack() >= 100 })

	for i := range serverKills {
		// The random moment itself, while results are being stored and acked.
		time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
		before := w.ack()
		_ = srv.Process.Signal(syscall.SIGKILL)
		_ = srv.Wait()
		srvLog.Write([]byte(fmt.Sprintf("=== SIGKILL %d after ack %d\n", i, before)))
		startServe()
		// The agent reconnects with its backoff; then the restarted controller acks again.
		waitUntil(t, fmt.Sprintf("kill %d: acks past %d from the restarted controller", i, before), 60*time.Second,
			func() bool { return w.ack() > before })
	}
	if a.exited() {
		t.Fatalf("agent exited: %v; log:\n%s", a.err, log.tail(30))
	}
	w.caughtUp(t, time.Now(), 60*time.Second)
	stopAgent(t, a, log)
	_ = srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Errorf("outpost serve did not stop cleanly on SIGTERM: %v", err)
	}
	got := verify(t, ctlDir, nil, device, cfg.DataDir, verifyOpts{seed: cfg.Seed})
	t.Logf("%d SIGKILLs of outpost serve: %d results, each stored once", serverKills, got.lastSeq)
}

// TestMosquittoKilled SIGKILLs Debian's Mosquitto (no persistence: every session and queued
// message dies with it) at random moments while the agent streams into the controller through
// it, and starts it again on the same port.
func TestMosquittoKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills mosquitto")
	}
	t.Parallel()
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 3))
	m := newMosquitto(t)
	m.start(t)
	t.Cleanup(func() { m.stop(t) })
	c := newController(t, m.addr(), "", "")
	const device = "mosqkill-1"
	cfg := agentConfig{Broker: m.addr(), Device: device, DataDir: t.TempDir(), Seed: seed}
	log := &logBuffer{}
	a := startAgent(t, cfg, log)
	waitUntil(t, "controller acks the first 100 results", 30*time.Second, func() bool { return c.acked(device) >= 100 })
	for i := range serverKills {
		time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
		before := c.acked(device)
		m.kill()
		m.start(t)
		waitUntil(t, fmt.Sprintf("kill %d: acks past %d after mosquitto came back", i, before), 60*time.Second,
			func() bool { return c.acked(device) > before })
	}
	since := time.Now()
	c.waitCaughtUp(t, device, since, 60*time.Second)
	stopAgent(t, a, log)
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	// Not ordered: the batches in flight when Mosquitto died are lost with it, the ones after
	// them arrive first, and the agent re-sends the lost ones (go-back-N) afterwards.
	got := verify(t, c.dir, c.rec, device, cfg.DataDir, verifyOpts{seed: cfg.Seed})
	t.Logf("%d SIGKILLs of mosquitto: %d results, each stored once; %d re-sent duplicates ignored", serverKills, got.lastSeq, got.duplicates)
}

var (
	outpostOnce sync.Once
	outpostBin  string
	outpostErr  error
)

// outpostBinary builds cmd/outpost once, beside the agent binary, on first use.
func outpostBinary(t *testing.T) string {
	t.Helper()
	outpostOnce.Do(func() {
		outpostBin = filepath.Join(filepath.Dir(agentBin), "outpost")
		out, err := exec.Command("go", "build", "-o", outpostBin, "../../cmd/outpost").CombinedOutput()
		if err != nil {
			outpostErr = fmt.Errorf("build outpost: %v\n%s", err, out)
		}
	})
	if outpostErr != nil {
		t.Fatal(outpostErr)
	}
	return outpostBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
