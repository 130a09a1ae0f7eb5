package boltbuf_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/agent/buffertest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func open(t *testing.T, dir string, max int) *boltbuf.Buffer {
	t.Helper()
	b, err := boltbuf.Open(filepath.Join(dir, "buffer.db"), boltbuf.Options{MaxResults: max})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func closer(t *testing.T, b *boltbuf.Buffer) func() {
	return func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func TestBufferContract(t *testing.T) {
	buffertest.Run(t, func(t *testing.T, dir string, max int) (agent.Buffer, func()) {
		b := open(t, dir, max)
		return b, closer(t, b)
	})
}

func TestStateStoreContract(t *testing.T) {
	buffertest.RunStateStore(t, func(t *testing.T, dir string) (agent.StateStore, func()) {
		b := open(t, dir, 0)
		return b.State(), closer(t, b)
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	held := open(t, dir, 0)
	defer held.Close()

	tests := []struct {
		name, path, want string
	}{
		{"parent is a file", filepath.Join(notDir, "buffer.db"), "not a directory"},
		{"missing dir", filepath.Join(dir, "nope", "buffer.db"), "no such file"},
		{"locked", filepath.Join(dir, "buffer.db"), fmt.Sprintf("in use by another agent (pid %d", os.Getpid())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := boltbuf.Open(tt.path, boltbuf.Options{LockTimeout: 50e6})
			if err == nil {
				b.Close()
				t.Fatalf("Open(%s) succeeded, want error containing %q", tt.path, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, tt.path) || strings.Contains(msg, "\n") {
				t.Fatalf("Open(%s) = %q, want one line naming the path and containing %q", tt.path, msg, tt.want)
			}
		})
	}
}

func result(k int) wire.Result {
	return wire.Result{Time: time.Unix(int64(k), 0).UTC(), Model: "vibration-anomaly@1.0.0", Score: 0.25, Label: "normal",
		Outputs: []float32{0.25, float32(k)}, LatencyUs: 40}
}

func batch(from, n int) []wire.Result {
	rs := make([]wire.Result, n)
	for i := range rs {
		rs[i] = result(from + i)
	}
	return rs
}

func mustAppend(t testing.TB, b *boltbuf.Buffer, rs []wire.Result) {
	t.Helper()
	if err := b.Append(rs); err != nil {
		t.Fatal(err)
	}
}

func TestBounds(t *testing.T) {
	one, _ := json.Marshal(result(7)) // seq 0: the stored form
	per := int64(len(one) + 8)        // stored size of one result (value plus 8-byte key)
	tests := []struct {
		name        string
		opts        boltbuf.Options
		appends     []int // sizes of successive Appends
		wantLen     uint64
		wantDropped uint64
		wantFirst   uint64 // lowest seq kept
		wantThrough uint64
	}{
		{"count, drop oldest", boltbuf.Options{MaxResults: 10}, []int{6, 6}, 10, 2, 3, 2},
		{"bytes, drop oldest", boltbuf.Options{MaxBytes: 5 * per}, []int{3, 4}, 5, 2, 3, 2},
		{"count, drop newest", boltbuf.Options{MaxResults: 10, Policy: boltbuf.DropNewest}, []int{6, 6}, 10, 2, 1, 0},
		{"bytes, drop newest", boltbuf.Options{MaxBytes: 5 * per, Policy: boltbuf.DropNewest}, []int{3, 4}, 5, 2, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			b, err := boltbuf.Open(filepath.Join(dir, "b.db"), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var last []wire.Result
			for _, n := range tt.appends {
				last = make([]wire.Result, n)
				for i := range last {
					last[i] = result(7)
				}
				mustAppend(t, b, last)
			}
			check := func(when string) {
				st := b.Stats()
				if st.Len != tt.wantLen || st.Dropped != tt.wantDropped || st.DroppedThrough != tt.wantThrough {
					t.Fatalf("%s: Stats() = %+v, want len %d dropped %d through %d", when, st, tt.wantLen, tt.wantDropped, tt.wantThrough)
				}
				if tt.opts.MaxBytes > 0 && int64(st.Bytes) > tt.opts.MaxBytes {
					t.Fatalf("%s: %d bytes held, bound %d", when, st.Bytes, tt.opts.MaxBytes)
				}
				rs, err := b.Oldest(100)
				if err != nil || uint64(len(rs)) != tt.wantLen || rs[0].Seq != tt.wantFirst {
					t.Fatalf("%s: Oldest = %d results from seq %d, %v; want %d from %d", when, len(rs), rs[0].Seq, err, tt.wantLen, tt.wantFirst)
				}
				for i := 1; i < len(rs); i++ {
					if rs[i].Seq != rs[i-1].Seq+1 {
						t.Fatalf("%s: seqs not contiguous: %d after %d", when, rs[i].Seq, rs[i-1].Seq)
					}
				}
			}
			check("after appends")
			if tt.opts.Policy == boltbuf.DropNewest {
				// The results that did not fit never got a seq.
				if got := []uint64{last[len(last)-2].Seq, last[len(last)-1].Seq}; !slices.Equal(got, []uint64{0, 0}) {
					t.Fatalf("dropped newest results got seqs %v, want 0 0", got)
				}
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if b, err = boltbuf.Open(filepath.Join(dir, "b.db"), tt.opts); err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			check("after reopen") // the drop counters are persisted
		})
	}
	if _, err := boltbuf.Open(filepath.Join(t.TempDir(), "b.db"), boltbuf.Options{Policy: "drop-random"}); err == nil ||
		!strings.Contains(err.Error(), `retention policy "drop-random"`) {
		t.Fatalf("Open with a bad policy = %v", err)
	}
}

// TestFileStaysBounded fills and drains the buffer again and again: freed pages are reused
// and the file is compacted once it is much larger than what it holds, so it never grows
// without bound.
func TestFileStaysBounded(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.db")
	opts := boltbuf.Options{MaxResults: 1 << 20, MaxBytes: 1 << 30, CompactMinBytes: 1 << 20}
	b, err := boltbuf.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { b.Close() }()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var peak int64
	k := 0
	for round := range 4 {
		// Fill with a backlog (a few MiB), then drain it the way acks do, a batch at a time.
		n := 12_000 + 4_000*(round%2)
		for done := 0; done < n; done += 2000 {
			mustAppend(t, b, batch(k, 2000))
			k += 2000
		}
		peak = max(peak, size())
		for {
			rs, err := b.Oldest(1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) == 0 {
				break
			}
			if err := b.Ack(rs[len(rs)-1].Seq); err != nil {
				t.Fatal(err)
			}
		}
		if st := b.Stats(); st.Len != 0 || st.Bytes != 0 {
			t.Fatalf("round %d: drained buffer Stats() = %+v", round, st)
		}
		t.Logf("round %d: peak %d KiB, after drain %d KiB", round, peak>>10, size()>>10)
		if got := size(); got > opts.CompactMinBytes {
			t.Fatalf("round %d: drained file is %d bytes, want it compacted below %d", round, got, opts.CompactMinBytes)
		}
	}
	n, err := b.Compactions()
	if n == 0 || err != nil {
		t.Fatalf("Compactions() = %d, %v; want some, no error", n, err)
	}
	if peak > 16<<20 {
		t.Fatalf("peak file size %d bytes for a 16k-result backlog: free pages are not reused", peak)
	}
	// Everything still works on the compacted file, and the sequence carries on.
	last := b.Stats().LastSeq
	rs := batch(k, 3)
	mustAppend(t, b, rs)
	if rs[0].Seq != last+1 {
		t.Fatalf("after compaction Append assigned seq %d, want %d", rs[0].Seq, last+1)
	}
	epoch := b.Epoch()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err = boltbuf.Open(path, opts); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Len != 3 || st.LastSeq != last+3 || st.Epoch != epoch {
		t.Fatalf("after reopen Stats() = %+v, want 3 held, last seq %d, epoch %d", st, last+3, epoch)
	}
}

func TestStaleCompactionFileRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.db")
	if err := os.WriteFile(path+".compact", []byte("half-written copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := boltbuf.Open(path, boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Fatalf("stale compaction file still there: %v", err)
	}
}

// TestAfterRaw: the raw form is exactly what encoding the decoded result gives.
func TestAfterRaw(t *testing.T) {
	b := open(t, t.TempDir(), 0)
	defer b.Close()
	mustAppend(t, b, batch(0, 10))
	if err := b.Ack(3); err != nil {
		t.Fatal(err)
	}
	raws, seqs, err := b.AfterRaw(4, 100, 1<<20)
	if err != nil || !slices.Equal(seqs, []uint64{5, 6, 7, 8, 9, 10}) {
		t.Fatalf("AfterRaw(4) seqs %v, %v", seqs, err)
	}
	rs, _ := b.After(4, 100)
	for i, r := range rs {
		want, _ := json.Marshal(&r)
		if string(raws[i]) != string(want) {
			t.Fatalf("AfterRaw result %d = %s, want %s", i, raws[i], want)
		}
	}
	// The byte bound stops early but always yields one result.
	if raws, _, _ := b.AfterRaw(0, 100, 2*len(raws[0])+2); len(raws) != 2 {
		t.Fatalf("AfterRaw within two results' bytes gave %d", len(raws))
	}
	if raws, _, _ := b.AfterRaw(0, 100, 1); len(raws) != 1 {
		t.Fatalf("AfterRaw within 1 byte gave %d, want 1", len(raws))
	}
}

// TestGroupCommit: concurrent Appends are merged into shared transactions, and every caller
// gets its own contiguous run of seqs.
func TestGroupCommit(t *testing.T) {
	b := open(t, t.TempDir(), 1<<20)
	defer b.Close()
	const callers, rounds, per = 8, 40, 5
	var mu sync.Mutex
	var got [][]uint64
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				rs := batch(c*1000+r*per, per)
				if err := b.Append(rs); err != nil {
					t.Error(err)
					return
				}
				seqs := make([]uint64, per)
				for i := range rs {
					seqs[i] = rs[i].Seq
				}
				mu.Lock()
				got = append(got, seqs)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var all []uint64
	for _, s := range got {
		for i := 1; i < len(s); i++ {
			if s[i] != s[i-1]+1 {
				t.Fatalf("one Append got seqs %v, want a contiguous run", s)
			}
		}
		all = append(all, s...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for i, s := range all {
		if s != uint64(i+1) {
			t.Fatalf("seqs assigned: %d at position %d, want every seq 1..%d once", s, i, callers*rounds*per)
		}
	}
}

// BenchmarkAppend measures one Append of n results (one fsynced transaction).
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{1, 32, 256} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			buf, err := boltbuf.Open(filepath.Join(b.TempDir(), "buffer.db"), boltbuf.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			rs := batch(0, n)
			for b.Loop() {
				if err := buf.Append(rs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/result")
		})
	}
}

// BenchmarkAppendDurable is the buffer target (≥ 20,000 results/s, each Append on
// stable storage before it returns): producers hand over results as the agent's commit loop
// does, a group at a time, while acks delete from the front, so the buffer sits at a steady
// depth. "serial" is the agent's shape (one committer, groups of 256); "concurrent" has 8
// producers of 32-result groups sharing commits.
func BenchmarkAppendDurable(b *testing.B) {
	for _, c := range []struct {
		name            string
		producers, size int
	}{{"serial", 1, 256}, {"concurrent", 8, 32}} {
		b.Run(c.name, func(b *testing.B) {
			buf, err := boltbuf.Open(filepath.Join(b.TempDir(), "buffer.db"), boltbuf.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			var next sync.Mutex
			remaining := 0
			b.ResetTimer()
			start := time.Now()
			remaining = b.N
			var wg sync.WaitGroup
			for range c.producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rs := batch(0, c.size)
					for {
						next.Lock()
						n := min(c.size, remaining)
						remaining -= n
						next.Unlock()
						if n == 0 {
							return
						}
						if err := buf.Append(rs[:n]); err != nil {
							b.Error(err)
							return
						}
						// Keep the depth steady, as the controller's acks do.
						if st := buf.Stats(); st.Len > 20_000 {
							if err := buf.Ack(st.LastSeq - 10_000); err != nil {
								b.Error(err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "results/s")
		})
	}
}

// BenchmarkAfterRaw reads batches of 1000 stored results as the upload path does, each
// record checked on the way (the cost of finding damaged ones before they are sent).
func BenchmarkAfterRaw(b *testing.B) {
	buf, err := boltbuf.Open(filepath.Join(b.TempDir(), "buffer.db"), boltbuf.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer buf.Close()
	for i := range 10 {
		mustAppend(b, buf, batch(i*1000, 1000))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		raws, _, err := buf.AfterRaw(uint64(i%9)*1000, 1000, 1<<20)
		if err != nil || len(raws) != 1000 {
			b.Fatalf("AfterRaw = %d results, %v", len(raws), err)
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "results/s")
}
