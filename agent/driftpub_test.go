package agent_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/drift"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

// driftUplink records what the agent publishes on the drift leaf and passes everything on to
// the fake controller.
type driftUplink struct {
	*fakeUplink
	mu        sync.Mutex
	summaries []*wire.DriftSummary
}

func (u *driftUplink) Publish(ctx context.Context, leaf string, payload []byte, retained bool) error {
	if leaf == wire.LeafDrift {
		s, err := wire.DecodeDriftSummary(payload)
		if err != nil {
			return err
		}
		u.mu.Lock()
		u.summaries = append(u.summaries, s)
		u.mu.Unlock()
		return nil
	}
	return u.fakeUplink.Publish(ctx, leaf, payload, retained)
}

func (u *driftUplink) got() []*wire.DriftSummary {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*wire.DriftSummary(nil), u.summaries...)
}

// driftMonitor scores the fake source's channel against a baseline of values in [0, 1):
// the source counts 1, 2, 3…, far outside it, so every window drifts.
func driftMonitor(t *testing.T, model wire.ModelRef) *drift.Monitor {
	t.Helper()
	var windows, outputs [][]float64
	for i := range 100 {
		windows = append(windows, []float64{float64(i) / 100, float64(99-i) / 100})
		outputs = append(outputs, []float64{0})
	}
	b, err := bundle.ComputeBaseline("test", []string{"x"}, windows, outputs, []string{"score"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := drift.New(&bundle.Manifest{Baseline: b}, model,
		drift.Config{Window: 10, Thresholds: bundle.DriftThresholds{MinSamples: 10}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDriftPublished(t *testing.T) {
	r := newRig()
	up := &driftUplink{fakeUplink: r.up}
	r.opts.Uplink = up
	r.opts.Drift = driftMonitor(t, r.pred.Model())
	r.start(t)
	deadline := time.Now().Add(10 * time.Second)
	for len(up.got()) < 2 || len(driftEvents(r.up)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d drift summaries, %d drift events", len(up.got()), len(driftEvents(r.up)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, s := range up.got()[:2] {
		x := s.Features[0]
		if s.Device != "dev-1" || s.Model != r.pred.Model() || s.Window != uint64(i+1) || s.Inferences != 10 ||
			x.Name != "x" || x.Role != wire.DriftInput || x.Count != 40 || !x.Scored || len(x.Drifted) == 0 {
			t.Errorf("summary %d: %+v", i, s)
		}
	}
	e := driftEvents(r.up)[0]
	if e.Device != "dev-1" || e.Model != r.pred.Model() || !strings.HasPrefix(e.Reason, "drift in x (") {
		t.Errorf("drift event %+v", e)
	}
}

// A monitor for another model than the one running observes nothing: its baseline would
// report drift that is not there.
func TestDriftOtherModelIgnored(t *testing.T) {
	r := newRig()
	up := &driftUplink{fakeUplink: r.up}
	r.opts.Uplink = up
	r.opts.Drift = driftMonitor(t, wire.ModelRef{Name: "other", Version: "2"})
	_, stop := r.start(t)
	deadline := time.Now().Add(10 * time.Second)
	for len(r.pred.windows()) < 100 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 100 inferences in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if n := len(up.got()); n != 0 {
		t.Errorf("%d drift summaries for a model that never ran", n)
	}
}

func driftEvents(u *fakeUplink) []wire.Event {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []wire.Event
	for _, e := range u.events {
		if e.Kind == wire.EventDrift {
			out = append(out, e)
		}
	}
	return out
}
