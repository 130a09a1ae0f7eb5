package boltstore_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/storetest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() (fleet.Store, error) {
		dir := t.TempDir()
		return func() (fleet.Store, error) { return boltstore.Open(dir, boltstore.Options{}) }
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := boltstore.Open(dir, boltstore.Options{LockTimeout: 50e6}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("second Open of a locked store = %v, want a 'locked' error", err)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := boltstore.Open(filepath.Join(file, "sub"), boltstore.Options{}); err == nil {
		t.Error("Open under a regular file = nil error, want one")
	} else if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

// TestDeviceQuota: a device keeps at most DeviceQuota entries; the oldest acked ones (other
// epochs first) make room, and results far above a watermark that never moves are refused
// rather than growing the file (an invented device id sending 1.1 M distinct seqs grew it by
// 146 MB before the quota).
func TestDeviceQuota(t *testing.T) {
	const quota = 5000
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{DeviceQuota: quota})
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

// TestMigrateViews: a file written before the views (results as plain JSON, no indexes) is
// indexed and summarised once on Open; its results read back with no Received time and are
// pruned by their result time.
func TestMigrateViews(t *testing.T) {
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db, err := bolt.Open(filepath.Join(dir, boltstore.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rs []wire.Result
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"rtime", "rrecv", "feedback", "fbindex", "outputs", "health", "drift", "meta"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		rb, err := tx.Bucket([]byte("results")).CreateBucket([]byte("legacy"))
		if err != nil {
			return err
		}
		for i := range 5 {
			r := wire.Result{Seq: uint64(i + 1), Time: old.Add(time.Duration(i) * time.Hour), Model: "m@1", Score: 0.5, Event: i == 2}
			rs = append(rs, r)
			v, _ := json.Marshal(r)
			if err := rb.Put(binary.BigEndian.AppendUint64(nil, r.Seq), v); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s, err = boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	got, err := s.QueryResults(ctx, fleet.ResultQuery{Device: "legacy"})
	if err != nil || len(got) != 5 || got[0].Result.Seq != 5 || !got[0].Received.IsZero() {
		t.Fatalf("QueryResults(legacy) = %+v, %v; want 5 results newest first, no received time", got, err)
	}
	sums, err := s.OutputSummaries(ctx, "legacy", time.Time{}, time.Time{})
	if err != nil || len(sums) != 5 || sums[2].Events != 1 {
		t.Fatalf("OutputSummaries(legacy) = %+v, %v; want 5 buckets, the third with an event", sums, err)
	}
	// Retention counts from result time for them: the first two hours go.
	if n, err := s.PruneResults(ctx, old.Add(90*time.Minute)); err != nil || n != 2 {
		t.Fatalf("PruneResults = %d, %v; want 2", n, err)
	}
	if rs, _ := s.Results(ctx, "legacy", 0, 10); len(rs) != 3 || rs[0].Seq != 3 {
		t.Errorf("Results after prune = %+v", rs)
	}
}
