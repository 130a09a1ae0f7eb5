package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestDeviceQuota (boltstore's, on PostgreSQL): a device keeps at most DeviceQuota entries; the oldest acked ones (other
// epochs first) make room, and results far above a watermark that never moves are refused
// rather than growing the file (an invented device id sending 1.1 M distinct seqs grew it by
// 146 MB before the quota).
func TestDeviceQuota(t *testing.T) {
	const quota = 5000
	url := pgtest.Start(t, pgtest.Options{}).NewDB(t)
	s, err := pgstore.Open(context.Background(), url, pgstore.Options{DeviceQuota: quota})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	seqs := func(from, n uint64) []wire.Result {
		out := make([]wire.Result, n)
		for i := range out {
			out[i] = wire.Result{Seq: from + uint64(i), Time: time.Unix(1, 0), Model: "m@1"}
		}
		return out
	}
	// An older epoch with 3000 results, then the current one with 4000: 2000 of the old
	// epoch's must go, none of the current's.
	if _, err := s.AppendResults(ctx, []fleet.Batch{{Device: "q", Epoch: 1, Results: seqs(1, 3000)}}); err != nil {
		t.Fatal(err)
	}
	for from := uint64(1); from <= 4000; from += 1000 {
		if _, err := s.AppendResults(ctx, []fleet.Batch{{Device: "q", Epoch: 2, Results: seqs(from, 1000)}}); err != nil {
			t.Fatal(err)
		}
	}
	old, err := s.EpochResults(ctx, "q", 1, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := s.Results(ctx, "q", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(old)+len(cur) > quota || len(cur) != 4000 || len(old) == 0 || old[len(old)-1].Seq != 3000 {
		t.Fatalf("kept %d of the old epoch (last %d) and %d of the current; want at most %d in all, the current whole, the old one's newest",
			len(old), old[len(old)-1].Seq, len(cur), quota)
	}

	// Evicted results leave the time index with them: QueryResults lists exactly what is kept.
	if q, err := s.QueryResults(ctx, fleet.ResultQuery{Device: "q", Limit: fleet.MaxResultLimit}); err != nil || len(q) != len(old)+len(cur) {
		t.Fatalf("QueryResults after eviction = %d results, %v; want %d", len(q), err, len(old)+len(cur))
	}

	// A spoofer on another id: distinct seqs far apart never move its watermark, so nothing is
	// evictable and the quota refuses the rest.
	far := make([]wire.Result, 0, 2*quota)
	for i := range uint64(2 * quota) {
		far = append(far, wire.Result{Seq: 10 + 2*i, Time: time.Unix(1, 0), Model: "m@1"})
	}
	a, err := s.AppendResults(ctx, []fleet.Batch{{Device: "spoof", Results: far}})
	if err != nil {
		t.Fatal(err)
	}
	if a[0].Stored != quota || a[0].OverQuota != quota {
		t.Errorf("spoof: stored %d, over quota %d; want %d and %d", a[0].Stored, a[0].OverQuota, quota, quota)
	}
	// The real device is unaffected by the spoofer's quota.
	a, err = s.AppendResults(ctx, []fleet.Batch{{Device: "q", Epoch: 2, Results: seqs(4001, 10)}})
	if err != nil || a[0].Stored != 10 || a[0].Totals.Contiguous != 4010 {
		t.Errorf("q after spoof: %+v, %v", a, err)
	}
}
