package fleet_test

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestRetention: each kind is pruned by its own period, measured back from now; a zero period
// keeps that kind.
func TestRetention(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name string
		r    fleet.Retention
		want fleet.Pruned
	}{
		{"defaults", fleet.Retention{Results: fleet.DefaultRetainResults, Health: fleet.DefaultRetainHealth, Summaries: fleet.DefaultRetainSummaries, Drift: fleet.DefaultRetainDrift,
			CaptureAge: fleet.DefaultCaptureRetainAge, CaptureCount: fleet.DefaultCaptureRetainCount},
			fleet.Pruned{Results: 2, Health: 1, Summaries: 1, Drift: 1, Captures: 1}}, // results keep 30 days, captures 90, the rest 90 or 365
		{"short", fleet.Retention{Results: day, Health: day, Summaries: day, Drift: day, CaptureAge: day},
			fleet.Pruned{Results: 2, Health: 2, Summaries: 2, Drift: 2, Captures: 2}},
		{"capture count only", fleet.Retention{CaptureCount: 1}, fleet.Pruned{Captures: 1}},
		{"keep forever", fleet.Retention{}, fleet.Pruned{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t)
			defer store.Close()
			ctx := context.Background()
			// One of each kind 400 days old and one 40 days old (results: received then).
			for i, age := range []time.Duration{400 * day, 40 * day} {
				at := now.Add(-age)
				seq := uint64(i + 1)
				if _, err := store.AppendResults(ctx, []fleet.Batch{{Device: "r", Received: at,
					Results: []wire.Result{{Seq: seq, Time: at, Model: "m@1", Score: 1}}}}); err != nil {
					t.Fatal(err)
				}
				if err := store.PutHealth(ctx, []fleet.HealthPoint{{Device: "r", Start: at, Health: wire.Health{Time: at}}}); err != nil {
					t.Fatal(err)
				}
				if err := store.PutDrift(ctx, []fleet.DriftRecord{{Received: at, Summary: wire.DriftSummary{Device: "r", Window: seq, Start: at, End: at}}}); err != nil {
					t.Fatal(err)
				}
				appendCapture(t, store, seq, at)
			}
			tc.r.Store, tc.r.Captures = store, store
			got, err := tc.r.Prune(ctx, now)
			if err != nil || got != tc.want {
				t.Errorf("Prune = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// appendCapture stores one captured window of device "r" received at at.
func appendCapture(t *testing.T, store fleet.CaptureStore, seq uint64, at time.Time) {
	t.Helper()
	item := wire.CaptureItem{Seq: seq, Time: at, Reason: wire.CaptureRandom, Channels: []string{"x"}, Shape: []int{1, 1},
		Values: []float32{1}, Result: wire.Result{Seq: seq, Time: at, Model: "m@1"}}
	if _, err := store.AppendCaptures(context.Background(), []fleet.CaptureBatch{{Device: "r", Items: []wire.CaptureItem{item}, Received: at}}); err != nil {
		t.Fatal(err)
	}
}

// TestRetentionRun: the loop prunes at start and on its interval, captures included although
// none arrive, and stops with its context.
func TestRetentionRun(t *testing.T) {
	store := openStore(t)
	defer store.Close()
	ctx, cancel := context.WithCancel(context.Background())
	r := &fleet.Retention{Store: store, Results: time.Hour, Captures: store, CaptureAge: time.Hour, Interval: 10 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// Results received two hours ago, after the loop started: a later tick must prune them.
	old := time.Now().Add(-2 * time.Hour)
	if _, err := store.AppendResults(ctx, []fleet.Batch{{Device: "r", Received: old,
		Results: []wire.Result{{Seq: 1, Time: old, Model: "m@1"}, {Seq: 2, Time: old, Model: "m@1"}}}}); err != nil {
		t.Fatal(err)
	}
	appendCapture(t, store, 1, old)
	waitFor(t, "the loop to prune", func() bool {
		rs, err := store.QueryResults(ctx, fleet.ResultQuery{Device: "r"})
		page, cerr := store.Captures(ctx, fleet.CaptureQuery{})
		return err == nil && len(rs) == 0 && cerr == nil && len(page.Items) == 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop within 5s of cancel")
	}
	if st, _ := store.ResultStats(context.Background(), "r"); st.Contiguous != 2 {
		t.Errorf("watermark after prune = %d, want 2 (kept)", st.Contiguous)
	}
}
