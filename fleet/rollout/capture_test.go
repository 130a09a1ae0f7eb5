package rollout

import (
	"context"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestCapturePolicy: a rollout's capture policy reaches every device's desired state and is
// kept when a device is ordered back; a bad policy refuses the rollout with one line.
func TestCapturePolicy(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	defer st.Close()
	if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}
	f := newSimFleet(10, func(int) behaviour { return good })
	e := newTestEngine(t, st, f)
	bad := baseSpec()
	bad.Capture = &wire.CapturePolicy{Random: 2}
	if _, err := e.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "capture policy: random 2") {
		t.Errorf("Create with a bad capture policy = %v", err)
	}
	spec := baseSpec()
	spec.Capture = &wire.CapturePolicy{Random: 0.05, Drift: 1, DriftHoldS: 60}
	r, err := e.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	drive(t, e, f)
	for _, w := range e.List()[0].Waves {
		for _, d := range w.Devices {
			if c := e.Desired(d.ID).Capture; c == nil || *c != *spec.Capture {
				t.Errorf("device %s desired capture %+v, want %+v", d.ID, c, spec.Capture)
			}
		}
	}
	dev := r.Waves[0].Devices[0]
	e.mu.Lock()
	rb := e.rollbackLocked(&r, &dev, "test")
	e.mu.Unlock()
	if c := rb.Desired.Capture; c == nil || *c != *spec.Capture {
		t.Errorf("rollback desired capture %+v, want it kept", c)
	}
}
