// Package buffertest is the contract suite for agent.Buffer and agent.StateStore: every
// implementation runs it from its own tests, so they all behave alike.
package buffertest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Factory opens the buffer stored in dir, keeping at most max unacked results. close releases
// it so that dir can be opened again; the suite calls it exactly once per open.
type Factory func(t *testing.T, dir string, max int) (b agent.Buffer, close func())

// StateFactory opens the state store stored in dir, like Factory.
type StateFactory func(t *testing.T, dir string) (s agent.StateStore, close func())

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)

// results returns n results whose Time encodes their index from start.
func results(start, n int) []wire.Result {
	rs := make([]wire.Result, n)
	for i := range rs {
		k := start + i
		rs[i] = wire.Result{
			Time:      t0.Add(time.Duration(k) * time.Second),
			Model:     "m@1",
			Score:     float64(k) / 10,
			Label:     "normal",
			Event:     k%2 == 1,
			Outputs:   []float32{float32(k), 0.5},
			LatencyUs: int64(k),
		}
	}
	return rs
}

func appendN(t *testing.T, b agent.Buffer, start, n int) []wire.Result {
	t.Helper()
	rs := results(start, n)
	if err := b.Append(rs); err != nil {
		t.Fatalf("Append(%d results) = %v", n, err)
	}
	return rs
}

// checkOldest asserts that Oldest(n) returns exactly the seqs want, with their contents intact.
func checkOldest(t *testing.T, b agent.Buffer, n int, want []uint64) {
	t.Helper()
	got, err := b.Oldest(n)
	if err != nil {
		t.Fatalf("Oldest(%d) = %v", n, err)
	}
	seqs := make([]uint64, len(got))
	for i, r := range got {
		seqs[i] = r.Seq
		// results(1, …) was used for seq k throughout the suite unless noted, so k = seq.
		want := results(int(r.Seq), 1)[0]
		want.Seq = r.Seq
		if !r.Time.Equal(want.Time) || r.Score != want.Score || r.Event != want.Event || r.Model != want.Model ||
			r.Label != want.Label || r.LatencyUs != want.LatencyUs || !slices.Equal(r.Outputs, want.Outputs) {
			t.Errorf("Oldest(%d) result seq %d = %+v, want %+v", n, r.Seq, r, want)
		}
	}
	if !slices.Equal(seqs, want) {
		t.Fatalf("Oldest(%d) seqs = %v, want %v", n, seqs, want)
	}
}

func checkStats(t *testing.T, b agent.Buffer, want agent.BufferStats) {
	t.Helper()
	got := b.Stats()
	if !got.Oldest.Equal(want.Oldest) {
		t.Errorf("Stats().Oldest = %v, want %v", got.Oldest, want.Oldest)
	}
	got.Oldest, want.Oldest = time.Time{}, time.Time{}
	// Sizes are the implementation's own; they must be zero exactly when the buffer is empty.
	if (got.Bytes == 0) != (got.Len == 0) {
		t.Errorf("Stats() = %d results in %d bytes; want bytes zero exactly when empty", got.Len, got.Bytes)
	}
	if got.Epoch == 0 {
		t.Errorf("Stats().Epoch = 0; new storage must draw a non-zero epoch")
	}
	got.Bytes, want.Bytes = 0, 0
	got.Epoch, want.Epoch = 0, 0
	if got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func timeOf(seq int) time.Time { return t0.Add(time.Duration(seq) * time.Second) }

// Run runs the Buffer contract against the implementation open returns.
func Run(t *testing.T, open Factory) {
	t.Run("Empty", func(t *testing.T) {
		b, closeB := open(t, t.TempDir(), 100)
		defer closeB()
		checkStats(t, b, agent.BufferStats{})
		checkOldest(t, b, 10, nil)
		if err := b.Append(nil); err != nil {
			t.Fatalf("Append(nil) = %v", err)
		}
		if err := b.Ack(0); err != nil {
			t.Fatalf("Ack(0) on empty buffer = %v", err)
		}
		checkStats(t, b, agent.BufferStats{})
	})

	t.Run("AppendAssignsSeqs", func(t *testing.T) {
		b, closeB := open(t, t.TempDir(), 100)
		defer closeB()
		rs := appendN(t, b, 1, 3)
		for i, r := range rs {
			if r.Seq != uint64(i+1) {
				t.Fatalf("after Append, rs[%d].Seq = %d, want %d", i, r.Seq, i+1)
			}
		}
		appendN(t, b, 4, 2)
		checkOldest(t, b, 100, seqRange(1, 5))
		checkOldest(t, b, 2, seqRange(1, 2))
		checkStats(t, b, agent.BufferStats{Len: 5, LastSeq: 5, Oldest: timeOf(1)})
	})

	t.Run("After", func(t *testing.T) {
		b, closeB := open(t, t.TempDir(), 100)
		defer closeB()
		appendN(t, b, 1, 6)
		if err := b.Ack(2); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			after uint64
			n     int
			want  []uint64
		}{
			{0, 100, seqRange(3, 6)},
			{2, 2, seqRange(3, 4)},
			{3, 2, seqRange(4, 5)},
			{5, 100, []uint64{6}},
			{6, 100, nil},
			{^uint64(0), 100, nil},
			{0, 0, nil},
		}
		for _, tt := range tests {
			got, err := b.After(tt.after, tt.n)
			if err != nil {
				t.Fatalf("After(%d, %d) = %v", tt.after, tt.n, err)
			}
			var seqs []uint64
			for _, r := range got {
				seqs = append(seqs, r.Seq)
				if want := results(int(r.Seq), 1)[0]; !r.Time.Equal(want.Time) || r.Score != want.Score {
					t.Errorf("After(%d, %d) seq %d = %+v, want contents of result %d", tt.after, tt.n, r.Seq, r, r.Seq)
				}
			}
			if !slices.Equal(seqs, tt.want) {
				t.Errorf("After(%d, %d) seqs = %v, want %v", tt.after, tt.n, seqs, tt.want)
			}
		}
	})

	t.Run("Ack", func(t *testing.T) {
		b, closeB := open(t, t.TempDir(), 100)
		defer closeB()
		appendN(t, b, 1, 6)
		steps := []struct {
			ack     uint64
			wantErr bool
			want    []uint64
			stats   agent.BufferStats
		}{
			{ack: 2, want: seqRange(3, 6), stats: agent.BufferStats{Len: 4, LastSeq: 6, AckedSeq: 2, Oldest: timeOf(3)}},
			{ack: 2, want: seqRange(3, 6), stats: agent.BufferStats{Len: 4, LastSeq: 6, AckedSeq: 2, Oldest: timeOf(3)}},
			{ack: 1, want: seqRange(3, 6), stats: agent.BufferStats{Len: 4, LastSeq: 6, AckedSeq: 2, Oldest: timeOf(3)}},
			{ack: 7, wantErr: true, want: seqRange(3, 6), stats: agent.BufferStats{Len: 4, LastSeq: 6, AckedSeq: 2, Oldest: timeOf(3)}},
			{ack: 5, want: []uint64{6}, stats: agent.BufferStats{Len: 1, LastSeq: 6, AckedSeq: 5, Oldest: timeOf(6)}},
			{ack: 6, want: nil, stats: agent.BufferStats{Len: 0, LastSeq: 6, AckedSeq: 6}},
		}
		for _, st := range steps {
			t.Run(fmt.Sprint("ack", st.ack), func(t *testing.T) {
				err := b.Ack(st.ack)
				if (err != nil) != st.wantErr {
					t.Fatalf("Ack(%d) = %v, want error %v", st.ack, err, st.wantErr)
				}
				checkOldest(t, b, 100, st.want)
				checkStats(t, b, st.stats)
			})
		}
		rs := appendN(t, b, 7, 1)
		if rs[0].Seq != 7 {
			t.Fatalf("Append after acking everything assigned seq %d, want 7", rs[0].Seq)
		}
	})

	t.Run("Reopen", func(t *testing.T) {
		dir := t.TempDir()
		b, closeB := open(t, dir, 100)
		epoch := b.Stats().Epoch
		appendN(t, b, 1, 5)
		if err := b.Ack(2); err != nil {
			t.Fatal(err)
		}
		closeB()

		b, closeB = open(t, dir, 100)
		if got := b.Stats().Epoch; got != epoch {
			t.Fatalf("after reopen Stats().Epoch = %d, want %d (the epoch belongs to the storage)", got, epoch)
		}
		checkStats(t, b, agent.BufferStats{Len: 3, LastSeq: 5, AckedSeq: 2, Oldest: timeOf(3)})
		checkOldest(t, b, 100, seqRange(3, 5))
		if err := b.Ack(5); err != nil {
			t.Fatal(err)
		}
		closeB()

		// The sequence survives even when every result was acked.
		b, closeB = open(t, dir, 100)
		defer closeB()
		checkStats(t, b, agent.BufferStats{LastSeq: 5, AckedSeq: 5})
		if rs := appendN(t, b, 6, 1); rs[0].Seq != 6 {
			t.Fatalf("Append after reopen assigned seq %d, want 6", rs[0].Seq)
		}
	})

	t.Run("FullDropsOldest", func(t *testing.T) {
		dir := t.TempDir()
		b, closeB := open(t, dir, 3)
		appendN(t, b, 1, 2)
		appendN(t, b, 3, 3)
		checkOldest(t, b, 100, seqRange(3, 5))
		checkStats(t, b, agent.BufferStats{Len: 3, LastSeq: 5, Dropped: 2, DroppedThrough: 2, Oldest: timeOf(3)})
		// One Append larger than the bound keeps its newest results.
		appendN(t, b, 6, 4)
		checkOldest(t, b, 100, seqRange(7, 9))
		checkStats(t, b, agent.BufferStats{Len: 3, LastSeq: 9, Dropped: 6, DroppedThrough: 6, Oldest: timeOf(7)})
		closeB()

		b, closeB = open(t, dir, 3)
		defer closeB()
		checkStats(t, b, agent.BufferStats{Len: 3, LastSeq: 9, Dropped: 6, DroppedThrough: 6, Oldest: timeOf(7)})
		// Acked results free room: nothing more is dropped.
		if err := b.Ack(8); err != nil {
			t.Fatal(err)
		}
		appendN(t, b, 10, 2)
		checkStats(t, b, agent.BufferStats{Len: 3, LastSeq: 11, AckedSeq: 8, Dropped: 6, DroppedThrough: 6, Oldest: timeOf(9)})
	})

	t.Run("Concurrent", func(t *testing.T) {
		b, closeB := open(t, t.TempDir(), 100000)
		defer closeB()
		const rounds, per = 50, 4
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range rounds {
				if err := b.Append(results(1+i*per, per)); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range rounds {
				rs, err := b.Oldest(per)
				if err != nil {
					t.Errorf("Oldest: %v", err)
					return
				}
				if len(rs) > 0 {
					if err := b.Ack(rs[len(rs)-1].Seq); err != nil {
						t.Errorf("Ack(%d): %v", rs[len(rs)-1].Seq, err)
						return
					}
				}
				_ = b.Stats()
			}
		}()
		wg.Wait()
		st := b.Stats()
		if st.LastSeq != rounds*per || st.Len != st.LastSeq-st.AckedSeq {
			t.Fatalf("after concurrent use Stats() = %+v, want LastSeq %d and Len = LastSeq-AckedSeq", st, rounds*per)
		}
		rs, err := b.Oldest(int(st.Len) + 1)
		if err != nil || uint64(len(rs)) != st.Len {
			t.Fatalf("Oldest = %d results, %v; want %d", len(rs), err, st.Len)
		}
		for i, r := range rs {
			if r.Seq != st.AckedSeq+1+uint64(i) {
				t.Fatalf("Oldest()[%d].Seq = %d, want %d", i, r.Seq, st.AckedSeq+1+uint64(i))
			}
		}
	})
}

// RunStateStore runs the StateStore contract against the implementation open returns.
func RunStateStore(t *testing.T, open StateFactory) {
	dir := t.TempDir()
	s, closeS := open(t, dir)
	if _, err := s.Get("phase"); !errors.Is(err, agent.ErrNoRecord) {
		t.Fatalf("Get of a missing record = %v, want ErrNoRecord", err)
	}
	for _, v := range []string{"idle", "staging", ""} {
		if err := s.Put("phase", []byte(v)); err != nil {
			t.Fatalf("Put(phase, %q) = %v", v, err)
		}
		got, err := s.Get("phase")
		if err != nil || string(got) != v {
			t.Fatalf("Get(phase) = %q, %v; want %q", got, err, v)
		}
	}
	if err := s.Put("other", []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("", []byte("x")); err == nil {
		t.Fatalf("Put with an empty name succeeded, want an error")
	}
	closeS()

	s, closeS = open(t, dir)
	defer closeS()
	if got, err := s.Get("phase"); err != nil || string(got) != "" || got == nil {
		t.Fatalf("after reopen Get(phase) = %q (nil %v), %v; want empty non-nil", got, got == nil, err)
	}
	if got, err := s.Get("other"); err != nil || !slices.Equal(got, []byte{0, 1, 2}) {
		t.Fatalf("after reopen Get(other) = %v, %v", got, err)
	}
}
