package faulttest

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/broker"
)

// TestCrashTorture kills the agent with SIGKILL at random moments — while it starts, samples,
// commits, publishes and applies acks — restarting it each time on the same data dir, then
// lets a last instance catch up and stops it cleanly: the controller must hold every seq the
// agent ever produced exactly once.
func TestCrashTorture(t *testing.T) {
	if testing.Short() {
		t.Skip("crash torture runs the agent binary for a minute or more")
	}
	t.Parallel()
	kills := *killsFlag
	if kills <= 0 {
		kills = 100
		if inCI() {
			kills = 30
		}
	}
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))

	b := startEmbeddedBroker(t)
	c := newController(t, b.addr, broker.DefaultControllerUser, b.password)
	const device = "torture-1"
	cfg := agentConfig{Broker: b.addr, Device: device, DataDir: t.TempDir(), Seed: seed}
	log := &logBuffer{}

	// Kill moments are uniform over [minLife, maxLife) after the start: about a tenth fall
	// before the first commit, the rest while results are committed and synced.
	const minLife, maxLife = 20 * time.Millisecond, 1500 * time.Millisecond
	start := time.Now()
	for i := range kills {
		log.Write([]byte("=== run " + itoa(uint64(i)) + "\n"))
		a := startAgent(t, cfg, log)
		life := minLife + time.Duration(rng.Int64N(int64(maxLife-minLife)))
		// This sleep is the random kill moment itself, not a wait for a condition.
		time.Sleep(life)
		if !a.kill() {
			t.Fatalf("run %d: the agent exited on its own before SIGKILL at %v: %v; log:\n%s", i, life, a.err, log.tail(30))
		}
	}
	beforeFinal := c.acked(device)
	t.Logf("%d kills in %v; controller acked through seq %d", kills, time.Since(start).Round(time.Millisecond), beforeFinal)
	if beforeFinal == 0 {
		t.Fatalf("no result was acked during %d runs; log:\n%s", kills, log.tail(40))
	}

	finalStart := time.Now()
	a := startAgent(t, cfg, log)
	c.waitCaughtUp(t, device, finalStart, 60*time.Second)
	stopAgent(t, a, log)
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	got := verify(t, c.dir, c.rec, device, cfg.DataDir, verifyOpts{seed: cfg.Seed, ordered: true, restarts: true})
	t.Logf("%d kills: %d results, each stored once; %d re-sent duplicates ignored by the controller", kills, got.lastSeq, got.duplicates)
}
