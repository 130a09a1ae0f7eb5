package faulttest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/broker"
)

// chaosFor is how long the network misbehaves.
const chaosFor = 2 * time.Minute

// TestFlakyNetwork puts a TCP proxy between the agent and the broker that cuts (FIN and RST),
// stalls, half-closes and refuses connections at random for two minutes: every result must
// still reach the controller once, in order.
func TestFlakyNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("the network chaos lasts two minutes")
	}
	t.Parallel()
	seed := testSeed(t)
	b := startEmbeddedBroker(t)
	c := newController(t, b.addr, broker.DefaultControllerUser, b.password)
	p, err := NewProxy(ProxyOptions{Target: b.addr})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stopProxy := context.WithCancel(context.Background())
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- p.Run(pctx) }()
	t.Cleanup(func() {
		stopProxy()
		if err := <-proxyDone; err != nil {
			t.Errorf("proxy: %v", err)
		}
	})

	const device = "flaky-1"
	cfg := agentConfig{Broker: p.Addr(), Device: device, DataDir: t.TempDir(), Seed: seed}
	log := &logBuffer{}
	a := startAgent(t, cfg, log)
	waitUntil(t, "controller acks the first 50 results through the proxy", 30*time.Second, func() bool { return c.acked(device) >= 50 })

	chaosLog := &logBuffer{}
	before := c.acked(device)
	ctx, cancel := context.WithTimeout(context.Background(), chaosFor)
	defer cancel()
	faults := p.Chaos(ctx, ChaosOptions{
		Seed: seed,
		Log:  func(format string, args ...any) { fmt.Fprintf(chaosLog, format+"\n", args...) },
	})
	during := c.acked(device) - before
	t.Logf("chaos: %d faults in %v, proxy %+v; controller acked %d results meanwhile", faults, chaosFor, p.Stats(), during)
	if faults < 20 {
		t.Errorf("only %d faults injected in %v", faults, chaosFor)
	}
	if during == 0 {
		t.Errorf("no result got through in %v of chaos; chaos log:\n%s", chaosFor, chaosLog.tail(30))
	}
	if a.exited() {
		t.Fatalf("agent exited during the chaos: %v; log:\n%s", a.err, log.tail(30))
	}

	calm := time.Now()
	c.waitCaughtUp(t, device, calm, 90*time.Second)
	t.Logf("caught up %v after the chaos ended", time.Since(calm).Round(time.Millisecond))
	stopAgent(t, a, log)
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	noErrorsLogged(t, log)
	got := verify(t, c.dir, c.rec, device, cfg.DataDir, verifyOpts{seed: cfg.Seed, ordered: true})
	if t.Failed() {
		t.Logf("chaos log:\n%s", chaosLog.String())
	}
	t.Logf("%d results, each stored once and in order; %d re-sent duplicates ignored", got.lastSeq, got.duplicates)
}
