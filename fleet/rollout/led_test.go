package rollout

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
)

// TestLed hands a rollout from one replica's engine to another's through the store: a
// follower refuses changes and reads the stored rollouts; a replica that starts leading
// builds its engine from the store and carries the rollout on to the end.
func TestLed(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	ctx := context.Background()
	if err := st.PutModel(ctx, candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}
	f := newSimFleet(10, func(int) behaviour { return good })
	opts := Options{Store: st, Fleet: f, Publisher: f, Interval: 10 * time.Millisecond}
	a, err := NewLed(opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewLed(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(ctx, baseSpec()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Create on a follower = %v, want ErrNotLeader", err)
	}

	// a leads: the rollout starts and its first wave is told.
	actx, stopA := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() { aDone <- a.Lead(actx) }()
	waitFor(t, "a leading", 30*time.Second, a.Leading)
	r, err := a.Create(ctx, baseSpec())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the canary told", 30*time.Second, func() bool { _, ok := f.lastSent(r.Waves[0].Devices[0].ID); return ok })
	// b follows: it reads the stored rollout and refuses changes.
	if got, err := b.Get(r.ID); err != nil || got.ID != r.ID || len(b.List()) != 1 {
		t.Fatalf("follower Get = %+v, %v; List has %d", got, err, len(b.List()))
	}
	if _, err := b.Pause(ctx, r.ID); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Pause on a follower = %v, want ErrNotLeader", err)
	}
	if _, err := b.Get("nope"); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("follower Get of an unknown rollout = %v, want ErrNotFound", err)
	}

	// a loses leadership; b takes over and drives the rollout to the end while devices report.
	stopA()
	if err := <-aDone; err != nil {
		t.Fatalf("a.Lead: %v", err)
	}
	if a.Leading() {
		t.Fatal("a still leads after its lead context ended")
	}
	bctx, stopB := context.WithCancel(ctx)
	bDone := make(chan error, 1)
	go func() { bDone <- b.Lead(bctx) }()
	waitFor(t, "b leading", 30*time.Second, b.Leading)
	waitFor(t, "the rollout completed under b", 30*time.Second, func() bool {
		f.deliver()
		got, err := b.Get(r.ID)
		return err == nil && got.State == fleet.RolloutCompleted
	})
	stopB()
	if err := <-bDone; err != nil {
		t.Fatalf("b.Lead: %v", err)
	}
	if got, err := a.Get(r.ID); err != nil || got.State != fleet.RolloutCompleted {
		t.Errorf("stored rollout read by a follower = %s, %v; want completed", got.State, err)
	}
}
