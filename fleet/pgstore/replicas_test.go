package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestReplicasWriteOneDevice: two stores (two pools, as two controller replicas) append
// overlapping, shuffled, repeated batches of the same devices at once, as a shared
// subscription and device resends can deliver them. Every seq is stored exactly once, the
// counters add up, the watermark covers everything, and each output bucket counted each result
// once.
func TestReplicasWriteOneDevice(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := srv.NewDB(t)
	ctx := context.Background()
	var stores [2]*pgstore.Store
	for i := range stores {
		s, err := pgstore.Open(ctx, url, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	const devices, seqs, batch = 3, 300, 10
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	mk := func(dev int, from uint64) fleet.Batch {
		b := fleet.Batch{Device: fmt.Sprintf("r%d", dev), Epoch: 77}
		for q := from; q < from+batch; q++ {
			b.Results = append(b.Results, wire.Result{Seq: q, Time: t0.Add(time.Duration(q) * time.Second), Model: "m@1", Score: 0.5, Event: q%5 == 0})
		}
		return b
	}
	// Each replica gets every batch once, in its own order, two devices per call in varying
	// order (lock ordering is the store's job), so each batch arrives twice in all.
	var g errgroup.Group
	var stored [2]int
	for i, s := range stores {
		var work []fleet.Batch
		for d := range devices {
			for from := uint64(1); from <= seqs; from += batch {
				work = append(work, mk(d, from))
			}
		}
		rng := rand.New(rand.NewPCG(uint64(i), 9))
		rng.Shuffle(len(work), func(a, b int) { work[a], work[b] = work[b], work[a] })
		g.Go(func() error {
			for k := 0; k < len(work); k += 2 {
				as, err := s.AppendResults(ctx, work[k:min(k+2, len(work))])
				if err != nil {
					return err
				}
				for _, a := range as {
					stored[i] += a.Stored
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := stored[0] + stored[1]; got != devices*seqs {
		t.Errorf("replicas stored %d + %d = %d results, want %d (each exactly once)", stored[0], stored[1], got, devices*seqs)
	}
	sums, err := stores[0].OutputSummaries(ctx, "", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var counted, events uint64
	for _, b := range sums {
		counted += b.Count
		events += b.Events
	}
	if counted != devices*seqs || events != devices*seqs/5 {
		t.Errorf("output buckets count %d results and %d events, want %d and %d", counted, events, devices*seqs, devices*seqs/5)
	}
	for d := range devices {
		dev := fmt.Sprintf("r%d", d)
		st, err := stores[1].ResultStats(ctx, dev)
		if err != nil {
			t.Fatal(err)
		}
		if st.Stored != seqs || st.Duplicates != seqs || st.Contiguous != seqs || st.Epoch != 77 {
			t.Errorf("ResultStats(%s) = %+v, want %d stored, %d duplicates, watermark %d", dev, st, seqs, seqs, seqs)
		}
		rs, err := stores[0].Results(ctx, dev, 0, 2*seqs)
		if err != nil || len(rs) != seqs {
			t.Fatalf("Results(%s) = %d results, %v; want %d", dev, len(rs), err, seqs)
		}
		for i, r := range rs {
			if r.Seq != uint64(i+1) {
				t.Fatalf("Results(%s)[%d].Seq = %d", dev, i, r.Seq)
			}
		}
	}
}
