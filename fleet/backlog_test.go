package fleet_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestRestartUnderBacklog restarts the controller while its broker session holds a queued
// backlog of result batches and measures how long it takes to be ready (connected and
// subscribed) and to store the backlog. Its logs are kept for the investigation.
func TestRestartUnderBacklog(t *testing.T) {
	b := startBroker(t)
	dir := t.TempDir()
	c := startController(t, b, dir, 0)
	const devices, batches, per = 10, 200, 10
	var devs []*device
	for i := range devices {
		devs = append(devs, newDevice(t, b, fmt.Sprintf("bl-%02d", i)))
	}
	for _, d := range devs {
		d.results(0, 1)
	}
	waitFor(t, "first acks", func() bool {
		for _, d := range devs {
			if d.lastAck() != 1 {
				return false
			}
		}
		return true
	})
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	// The backlog: published QoS 1 while the controller is away; the broker queues it in the
	// controller's session.
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range batches {
				bt := &wire.ResultBatch{Device: d.id}
				for j := range per {
					s := uint64(2 + i*per + j)
					bt.Results = append(bt.Results, wire.Result{Seq: s, Time: time.Unix(int64(s), 0).UTC(), Model: "vib@1", Score: 0.1, LatencyUs: 100})
				}
				p, _ := wire.Encode(bt)
				d.c.Publish(wire.DeviceTopic(d.id, wire.LeafResults), 1, false, p).Wait()
			}
		}()
	}
	wg.Wait()

	var logs syncBuffer
	store, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	user, pass := b.ControllerCredentials()
	c2, err := fleet.New(fleet.Options{Store: store, BrokerURL: b.URL(), Username: user, Password: pass,
		RetryInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- c2.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for !c2.Connected() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ready := time.Since(start)
	st := c2.Stats()
	takenAtReady := st.Messages + st.Overflowed
	// The whole backlog is delivered (stored, or dropped by the full queue: a device resends
	// those after its ack timeout; these publishers do not).
	total := uint64(devices * batches)
	for time.Now().Before(deadline) && c2.Stats().Messages+c2.Stats().Overflowed < total {
		time.Sleep(5 * time.Millisecond)
	}
	delivered := time.Since(start)
	t.Logf("backlog of %d batches: ready after %v (%d messages delivered by then), whole backlog delivered after %v; stats %+v",
		total, ready, takenAtReady, delivered, c2.Stats())
	t.Logf("controller logs:\n%s", bytes.TrimSpace([]byte(logs.String())))
	if !c2.Connected() {
		t.Fatalf("not ready after %v", ready)
	}
	// Before the fix readiness waited for the SUBACK, which the embedded broker sends only
	// after writing the whole queued backlog: ready came after every message was delivered.
	if takenAtReady >= total/2 {
		t.Errorf("ready only after %d of %d backlog messages were delivered: readiness waits for the backlog", takenAtReady, total)
	}
}
