package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/driftq"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// ackingUplink is a driftUplink that also delivers drift acks (agent.DriftAckSource) and,
// while hold is open, holds every drift summary publish, as a link stuck in a PUBACK wait.
type ackingUplink struct {
	*driftUplink
	acks chan wire.DriftAck
	hold chan struct{}
}

func (u *ackingUplink) DriftAcks() <-chan wire.DriftAck { return u.acks }

func (u *ackingUplink) Publish(ctx context.Context, leaf string, payload []byte, retained bool) error {
	if leaf == wire.LeafDrift && u.hold != nil {
		select {
		case <-u.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return u.driftUplink.Publish(ctx, leaf, payload, retained)
}

func newAckingUplink(r *rig) *ackingUplink {
	return &ackingUplink{driftUplink: &driftUplink{fakeUplink: r.up}, acks: make(chan wire.DriftAck, 16)}
}

// With a durable queue the infer loop stores every closed window itself, so a publisher
// stuck far longer than the 16-report in-memory hand-off lasts loses nothing, and the held
// windows go out, each with its drift event, once it moves again.
func TestDriftHandOffFullNeverDrops(t *testing.T) {
	r := newRig()
	up := newAckingUplink(r)
	up.hold = make(chan struct{})
	r.opts.Uplink = up
	r.opts.PublishTimeout = time.Minute
	r.opts.Drift = driftMonitor(t, r.pred.Model())
	q, err := driftq.Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	r.opts.DriftQueue = q
	a, _ := r.start(t)
	const held = 40 // windows closed while the first publish hangs; > 2× the hand-off
	eventually(t, "40 windows queued", func() bool { return q.Stats().Pending >= held })
	if n := a.DriftDropped(); n != 0 {
		t.Fatalf("%d drift reports dropped with a durable queue", n)
	}
	if st := q.Stats(); st.Dropped != 0 || st.Damaged != 0 {
		t.Fatalf("queue stats %+v", st)
	}
	close(up.hold)
	byID := func() map[uint64]*wire.DriftSummary {
		m := map[uint64]*wire.DriftSummary{}
		for _, s := range up.got() {
			m[s.ID] = s
		}
		return m
	}
	eventually(t, "held windows sent", func() bool {
		m := byID()
		for id := uint64(1); id <= held; id++ {
			if m[id] == nil {
				return false
			}
		}
		return len(driftEvents(r.up)) >= held
	})
	m := byID()
	ids := make([]uint64, 0, held)
	for id := uint64(1); id <= held; id++ {
		s := m[id]
		if s.Window != id || s.Event == nil || s.Event.Kind != wire.EventDrift || s.Event.Device != "dev-1" {
			t.Fatalf("summary %d: window %d, event %+v", id, s.Window, s.Event)
		}
		ids = append(ids, id)
	}
	up.acks <- wire.DriftAck{V: 1, IDs: ids}
	eventually(t, "acked windows deleted", func() bool {
		for _, s := range q.Pending() {
			if s.ID <= held {
				return false
			}
		}
		return true
	})
	if n := a.DriftDropped(); n != 0 {
		t.Errorf("%d drift reports dropped", n)
	}
}

// A drift event raised while the controller is unreachable is kept with its summary in the
// queue, survives an agent restart and is published, in the summary and on the events leaf,
// by the next run.
func TestDriftEventSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	r := newRig()
	r.up.connected = false // the controller is away for the whole first run
	r.opts.Uplink = newAckingUplink(r)
	r.opts.Drift = driftMonitor(t, r.pred.Model())
	q, err := driftq.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	r.opts.DriftQueue = q
	_, stop := r.start(t)
	eventually(t, "2 windows queued", func() bool { return q.Stats().Pending >= 2 })
	stop()
	if n := len(driftEvents(r.up)); n != 0 {
		t.Fatalf("%d drift events delivered while disconnected", n)
	}
	stored := q.Pending()
	for _, s := range stored {
		if s.Event == nil {
			t.Fatalf("queued summary %d has no event", s.ID)
		}
	}

	q2, err := driftq.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	r2 := newRig()
	r2.src.limit = 1 // no new windows: only what the first run left
	up2 := newAckingUplink(r2)
	r2.opts.Uplink = up2
	r2.opts.Drift = driftMonitor(t, r2.pred.Model())
	r2.opts.DriftQueue = q2
	r2.start(t)
	eventually(t, "stored events published", func() bool { return len(driftEvents(r2.up)) >= len(stored) })
	events := driftEvents(r2.up)
	got := map[uint64]*wire.DriftSummary{}
	for _, s := range up2.got() {
		got[s.ID] = s
	}
	var ids []uint64
	for i, s := range stored {
		g := got[s.ID]
		if g == nil || g.Event == nil || !g.Event.Time.Equal(s.Event.Time) || g.Event.Reason != s.Event.Reason {
			t.Fatalf("stored summary %d came back as %+v", s.ID, g)
		}
		if !events[i].Time.Equal(s.Event.Time) || events[i].Reason != s.Event.Reason || events[i].Device != "dev-1" {
			t.Errorf("event %d = %+v, stored %+v", i, events[i], s.Event)
		}
		ids = append(ids, s.ID)
	}
	up2.acks <- wire.DriftAck{V: 1, IDs: ids}
	eventually(t, "acked", func() bool { return q2.Stats().Pending == 0 })
}
