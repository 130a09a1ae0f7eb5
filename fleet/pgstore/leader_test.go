package pgstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
)

// TestElector runs two electors on one database: exactly one leads at a time; killing the
// leader's database session (as a dead host or a dropped connection would) moves leadership to
// the other and stops the old one's lead function; a stopped elector releases the lock at once
// and the other takes over.
func TestElector(t *testing.T) {
	t.Parallel()
	url := pgtest.Start(t, pgtest.Options{}).NewDB(t)
	ctx := context.Background()
	const key = 42

	var leaders, maxLeaders atomic.Int32
	started := make(chan string, 16)
	run := func(name string) (stop func(), stopped <-chan error) {
		e := &pgstore.Elector{URL: url, Key: key, CheckEvery: 50 * time.Millisecond}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- e.Run(rctx, func(lctx context.Context) error {
				n := leaders.Add(1)
				for m := maxLeaders.Load(); n > m && !maxLeaders.CompareAndSwap(m, n); m = maxLeaders.Load() {
				}
				started <- name
				<-lctx.Done()
				leaders.Add(-1)
				return nil
			})
		}()
		return cancel, done
	}
	next := func(what string) string {
		t.Helper()
		select {
		case n := <-started:
			return n
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no leader within 30s", what)
			return ""
		}
	}

	stopA, doneA := run("a")
	if got := next("first campaign"); got != "a" {
		t.Fatalf("first leader %q, want a (b not started)", got)
	}
	stopB, doneB := run("b")

	if m := maxLeaders.Load(); m != 1 {
		t.Fatalf("%d leaders at once before the kill, want 1", m)
	}
	// Kill the leader's session from outside.
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND ((classid::bigint << 32) | objid::bigint) = $1`, int64(key)).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d lock-holding sessions, %v; want 1", killed, err)
	}
	if got := next("after the leader's session was killed"); got != "b" {
		t.Fatalf("leader after the kill %q, want b", got)
	}
	// a may still be stopping for up to one CheckEvery (the documented overlap after a
	// connection loss); it must stop, and from then on there is one leader again.
	for i := 0; leaders.Load() != 1; i++ {
		if i == 600 {
			t.Fatal("the old leader did not stop leading within 30s of losing its session")
		}
		time.Sleep(50 * time.Millisecond)
	}
	maxLeaders.Store(1)

	// A stopped leader hands over: a campaigns again and takes the lock.
	stopB()
	if err := <-doneB; err != nil {
		t.Fatalf("b: %v", err)
	}
	if got := next("after b stopped"); got != "a" {
		t.Fatalf("leader after b stopped %q, want a", got)
	}
	stopA()
	if err := <-doneA; err != nil {
		t.Fatalf("a: %v", err)
	}
	if m := maxLeaders.Load(); m != 1 {
		t.Errorf("%d leaders at once, want 1", m)
	}
}
