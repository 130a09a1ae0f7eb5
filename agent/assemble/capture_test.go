package assemble

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/capture"
	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestTeeDesired: every desired state reaches the update manager; its capture policy is
// applied first, and an older generation never replaces a newer policy.
func TestTeeDesired(t *testing.T) {
	st, err := capture.OpenStore(filepath.Join(t.TempDir(), CaptureFile), capture.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	link, err := mqttlink.New(mqttlink.Options{DeviceID: "d1", Broker: "tcp://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := capture.New(capture.Options{DeviceID: "d1", Store: st, Link: link, Channels: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	d := &Device{Capture: c, log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := make(chan wire.Desired)
	out := d.teeDesired(ctx, in)
	step := func(des wire.Desired, wantRandom float64) {
		t.Helper()
		in <- des
		select {
		case got := <-out:
			if got.Generation != des.Generation {
				t.Fatalf("forwarded generation %d, want %d", got.Generation, des.Generation)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("desired state not forwarded")
		}
		got := 0.0
		if p := c.Policy(); p != nil {
			got = p.Random
		}
		if got != wantRandom {
			t.Errorf("after generation %d: random %v, want %v", des.Generation, got, wantRandom)
		}
	}
	step(wire.Desired{Generation: 2, Capture: &wire.CapturePolicy{Random: 0.5}}, 0.5)
	step(wire.Desired{Generation: 1}, 0.5)                                              // stale: ignored
	step(wire.Desired{Generation: 3, Capture: &wire.CapturePolicy{Random: 7}}, 0.5)     // invalid: refused
	step(wire.Desired{Generation: 4}, 0)                                                // no policy: off
	step(wire.Desired{Generation: 4, Capture: &wire.CapturePolicy{Random: 0.25}}, 0.25) // same generation again
}
