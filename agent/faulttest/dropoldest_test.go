package faulttest

import (
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestDropOldest runs the real agent with a small buffer and drop-oldest retention while the
// controller stores nothing: the agent drops its oldest results and announces them with
// dropped_through; once the controller stores again it must ack past exactly the dropped
// seqs, store every other seq once with the content the seeded sensor gives, and agree with
// the agent on what was dropped.
func TestDropOldest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the agent binary")
	}
	t.Parallel()
	seed := testSeed(t)
	b := startEmbeddedBroker(t)
	c := newController(t, b.addr, broker.DefaultControllerUser, b.password)
	const device = "dropold-1"
	obs := newHealthObserver(t, b.addr, device)
	cfg := agentConfig{Broker: b.addr, Device: device, DataDir: t.TempDir(), Seed: seed,
		Extra: []string{"--max-buffered", "300", "--retention", "drop-oldest"}}
	log := &logBuffer{}
	a := startAgent(t, cfg, log)
	waitUntil(t, "controller acks the first 100 results", 30*time.Second, func() bool { return c.acked(device) >= 100 })

	c.rec.pause()
	held := time.Now()
	h := obs.waitFor(t, "the agent dropping its oldest results", 30*time.Second, func(h wire.Health) bool {
		return h.Time.After(held) && h.Dropped >= 300
	})
	t.Logf("while held: last_seq %d, acked %d, buffered %d, dropped %d", h.LastSeq, h.AckedSeq, h.Buffered, h.Dropped)
	back := time.Now()
	c.rec.resume()
	c.waitCaughtUp(t, device, back, 60*time.Second)
	stopAgent(t, a, log)
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	got := verify(t, c.dir, c.rec, device, cfg.DataDir, verifyOpts{seed: cfg.Seed, dropping: true})
	if got.dropped == 0 {
		t.Fatal("the agent's buffer counted no drops")
	}
	t.Logf("%d results, %d dropped by the agent, the rest stored once; %d re-sent duplicates ignored", got.lastSeq, got.dropped, got.duplicates)
}
