// Package storetest is the contract every fleet.Store implementation must pass. An
// implementation's test calls Run with a Factory that creates fresh, empty backing storage.
package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Factory creates fresh, empty backing storage for one test (a temp dir, a new schema) and
// returns a function that opens a Store on it. The suite may open, close and reopen to check
// durability; it closes every store it opens.
type Factory func(t *testing.T) (open func() (fleet.Store, error))

// Run runs the contract suite against the implementation newStore builds: any fleet.Store
// constructor fits, e.g. for a database, a Factory that creates a fresh schema per test and
// returns a function opening the store on it.
func Run(t *testing.T, newStore Factory) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, openOne(t, newStore)) })
	t.Run("Devices", func(t *testing.T) { testDevices(t, openOne(t, newStore)) })
	t.Run("AppendResults", func(t *testing.T) { testAppend(t, newStore) })
	t.Run("Atomic", func(t *testing.T) { testAtomic(t, openOne(t, newStore)) })
	t.Run("WideDrop", func(t *testing.T) { testWideDrop(t, openOne(t, newStore)) })
	t.Run("PlausibleDrop", func(t *testing.T) { testPlausibleDrop(t, openOne(t, newStore)) })
	t.Run("Rejected", func(t *testing.T) { testRejected(t, openOne(t, newStore)) })
	t.Run("Results", func(t *testing.T) { testResults(t, openOne(t, newStore)) })
	t.Run("Reopen", func(t *testing.T) { testReopen(t, newStore) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, openOne(t, newStore)) })
	t.Run("Epochs", func(t *testing.T) { testEpochs(t, newStore) })
	runUpdates(t, newStore)
	runViews(t, newStore)
}

// RunViews runs only the ViewStore part of the contract (Run includes it), for an
// implementation working on that part alone.
func RunViews(t *testing.T, newStore Factory) { runViews(t, newStore) }

func openOne(t *testing.T, newStore Factory) fleet.Store {
	t.Helper()
	open := newStore(t)
	return mustOpen(t, open)
}

func mustOpen(t *testing.T, open func() (fleet.Store, error)) fleet.Store {
	t.Helper()
	s, err := open()
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	return closeOnce{Store: s, closed: &closed}
}

// closeOnce lets a test close a store early without the cleanup closing it again.
type closeOnce struct {
	fleet.Store
	closed *bool
}

func (c closeOnce) Close() error {
	*c.closed = true
	return c.Store.Close()
}

// res builds results with the given seqs; their payload is derived from seq so contents can be
// checked after a round trip.
// appendStep is one AppendResults call with a single batch and what it must return.
type appendStep struct {
	name  string
	batch fleet.Batch
	want  fleet.Appended
}

// runSteps makes the calls in order and fails at the first unexpected result.
func runSteps(t *testing.T, s fleet.Store, steps []appendStep) {
	t.Helper()
	for _, st := range steps {
		got, err := s.AppendResults(context.Background(), []fleet.Batch{st.batch})
		if err != nil {
			t.Fatalf("%s: AppendResults: %v", st.name, err)
		}
		if !reflect.DeepEqual(untimed(got), []fleet.Appended{st.want}) {
			t.Fatalf("%s: AppendResults =\n %+v\nwant\n %+v", st.name, got, st.want)
		}
	}
}

// untimed clears Totals.Advanced, which holds the clock; testPlausibleDrop checks it.
func untimed(as []fleet.Appended) []fleet.Appended {
	out := make([]fleet.Appended, len(as))
	for i, a := range as {
		a.Totals = untimedStats(a.Totals)
		out[i] = a
	}
	return out
}

func untimedStats(st fleet.ResultStats) fleet.ResultStats {
	st.Advanced = time.Time{}
	return st
}

func res(seqs ...uint64) []wire.Result {
	out := make([]wire.Result, len(seqs))
	for i, s := range seqs {
		out[i] = result(s)
	}
	return out
}

func result(seq uint64) wire.Result {
	return wire.Result{
		Seq:       seq,
		Time:      time.Date(2026, 1, 2, 3, 4, 5, int(seq)*1000, time.UTC),
		Model:     "vib@1.0.0",
		Score:     float64(seq) / 8,
		Label:     fmt.Sprintf("l%d", seq%3),
		Event:     seq%2 == 0,
		Outputs:   []float32{float32(seq), 0.5},
		LatencyUs: int64(seq) * 10,
	}
}

func seqsOf(rs []wire.Result) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.Seq
	}
	return out
}

func testEmpty(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	ds, err := s.Devices(ctx)
	if err != nil || len(ds) != 0 {
		t.Fatalf("Devices() = %v, %v; want none, nil", ds, err)
	}
	st, err := s.ResultStats(ctx, "nobody")
	if err != nil || st != (fleet.ResultStats{}) {
		t.Fatalf("ResultStats(nobody) = %+v, %v; want zero, nil", st, err)
	}
	rs, err := s.Results(ctx, "nobody", 0, 10)
	if err != nil || len(rs) != 0 {
		t.Fatalf("Results(nobody) = %v, %v; want none, nil", rs, err)
	}
	if a, err := s.AppendResults(ctx, nil); err != nil || len(a) != 0 {
		t.Fatalf("AppendResults(nil) = %v, %v; want none, nil", a, err)
	}
}

func testDevices(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := &wire.Health{V: 1, Device: "b", Time: t0, Model: wire.ModelRef{Name: "vib", Version: "2"}, InferencesPerS: 9.5, Buffered: 3}
	in := []fleet.Device{
		{ID: "b", Online: true, FirstSeen: t0, LastSeen: t0.Add(time.Minute), Model: h.Model, Health: h},
		{ID: "a", FirstSeen: t0, LastSeen: t0},
	}
	if err := s.PutDevices(ctx, in); err != nil {
		t.Fatalf("PutDevices: %v", err)
	}
	got, err := s.Devices(ctx)
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	want := []fleet.Device{in[1], in[0]}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Devices() = %+v\nwant %+v", got, want)
	}

	// Replace one record; the other stays.
	upd := in[1]
	upd.Online = true
	upd.LastSeen = t0.Add(time.Hour)
	if err := s.PutDevices(ctx, []fleet.Device{upd}); err != nil {
		t.Fatalf("PutDevices(update): %v", err)
	}
	got, _ = s.Devices(ctx)
	if len(got) != 2 || !got[0].Online || !got[0].LastSeen.Equal(upd.LastSeen) || got[1].Health == nil {
		t.Fatalf("after update Devices() = %+v", got)
	}

	for _, bad := range []string{"", "a/b", "x+y", "#"} {
		if err := s.PutDevices(ctx, []fleet.Device{{ID: bad}}); err == nil {
			t.Errorf("PutDevices(id %q) = nil, want error", bad)
		}
		if _, err := s.AddDevice(ctx, bad); err == nil {
			t.Errorf("AddDevice(%q) = nil, want error", bad)
		}
	}

	// AddDevice registers a new id with nothing else known, and leaves a known one alone.
	for _, tc := range []struct {
		id    string
		added bool
	}{{"c", true}, {"c", false}, {"b", false}} {
		added, err := s.AddDevice(ctx, tc.id)
		if err != nil || added != tc.added {
			t.Errorf("AddDevice(%q) = %v, %v; want %v", tc.id, added, err, tc.added)
		}
	}
	got, _ = s.Devices(ctx)
	if len(got) != 3 || got[1].Health == nil || !got[1].Online || !reflect.DeepEqual(got[2], fleet.Device{ID: "c"}) {
		t.Fatalf("after AddDevice Devices() = %+v", got)
	}
}

func testAppend(t *testing.T, newStore Factory) {
	type step struct {
		name    string
		batches []fleet.Batch
		want    []fleet.Appended
	}
	tests := []struct {
		name      string
		steps     []step
		wantSeqs  map[string][]uint64
		wantStats map[string]fleet.ResultStats
	}{
		{
			name: "contiguous then duplicates",
			steps: []step{
				{"first", []fleet.Batch{{Device: "d1", Results: res(1, 2, 3)}},
					[]fleet.Appended{{Device: "d1", Stored: 3, Totals: fleet.ResultStats{Stored: 3, Contiguous: 3}}}},
				{"resend with new", []fleet.Batch{{Device: "d1", Results: res(2, 3, 4)}},
					[]fleet.Appended{{Device: "d1", Stored: 1, Duplicates: 2, Totals: fleet.ResultStats{Stored: 4, Duplicates: 2, Contiguous: 4}}}},
				{"dup inside batch", []fleet.Batch{{Device: "d1", Results: res(5, 5)}},
					[]fleet.Appended{{Device: "d1", Stored: 1, Duplicates: 1, Totals: fleet.ResultStats{Stored: 5, Duplicates: 3, Contiguous: 5}}}},
			},
			wantSeqs:  map[string][]uint64{"d1": {1, 2, 3, 4, 5}},
			wantStats: map[string]fleet.ResultStats{"d1": {Stored: 5, Duplicates: 3, Contiguous: 5}},
		},
		{
			name: "gap holds watermark until filled",
			steps: []step{
				{"gap", []fleet.Batch{{Device: "d", Results: res(1, 2, 5, 6)}},
					[]fleet.Appended{{Device: "d", Stored: 4, Totals: fleet.ResultStats{Stored: 4, Contiguous: 2}}}},
				{"part fill", []fleet.Batch{{Device: "d", Results: res(3)}},
					[]fleet.Appended{{Device: "d", Stored: 1, Totals: fleet.ResultStats{Stored: 5, Contiguous: 3}}}},
				{"fill", []fleet.Batch{{Device: "d", Results: res(4)}},
					[]fleet.Appended{{Device: "d", Stored: 1, Totals: fleet.ResultStats{Stored: 6, Contiguous: 6}}}},
			},
			wantSeqs: map[string][]uint64{"d": {1, 2, 3, 4, 5, 6}},
		},
		{
			name: "dropped through skips gaps and counts them",
			steps: []step{
				{"start", []fleet.Batch{{Device: "d", Results: res(1)}},
					[]fleet.Appended{{Device: "d", Stored: 1, Totals: fleet.ResultStats{Stored: 1, Contiguous: 1}}}},
				// 2,3 dropped; 4 stored earlier than the drop announcement; 5,6 dropped; 8 present.
				{"out of order", []fleet.Batch{{Device: "d", Results: res(4, 8)}},
					[]fleet.Appended{{Device: "d", Stored: 2, Totals: fleet.ResultStats{Stored: 3, Contiguous: 1}}}},
				{"announce", []fleet.Batch{{Device: "d", Results: res(7), DroppedThrough: 6}},
					[]fleet.Appended{{Device: "d", Stored: 1, Dropped: 4, Totals: fleet.ResultStats{Stored: 4, Dropped: 4, Contiguous: 8}}}},
				{"late arrival of a dropped seq is a duplicate", []fleet.Batch{{Device: "d", Results: res(3, 9), DroppedThrough: 6}},
					[]fleet.Appended{{Device: "d", Stored: 1, Duplicates: 1, Totals: fleet.ResultStats{Stored: 5, Duplicates: 1, Dropped: 4, Contiguous: 9}}}},
			},
			wantSeqs: map[string][]uint64{"d": {1, 4, 7, 8, 9}},
		},
		{
			name: "drop announcement alone",
			steps: []step{
				// A device holds results above what it dropped, so a claim with none is not believed.
				{"only drop", []fleet.Batch{{Device: "d", DroppedThrough: 10}},
					[]fleet.Appended{{Device: "d", DropRefused: true, Totals: fleet.ResultStats{}}}},
				{"drop with the next result", []fleet.Batch{{Device: "d", Results: res(11), DroppedThrough: 10}},
					[]fleet.Appended{{Device: "d", Stored: 1, Dropped: 10, Totals: fleet.ResultStats{Stored: 1, Dropped: 10, Contiguous: 11}}}},
				{"stale drop", []fleet.Batch{{Device: "d", Results: res(12), DroppedThrough: 4}},
					[]fleet.Appended{{Device: "d", Stored: 1, Totals: fleet.ResultStats{Stored: 2, Dropped: 10, Contiguous: 12}}}},
				{"drop at or past the batch's own results", []fleet.Batch{{Device: "d", Results: res(14), DroppedThrough: 14}},
					[]fleet.Appended{{Device: "d", Stored: 1, DropRefused: true, Totals: fleet.ResultStats{Stored: 3, Dropped: 10, Contiguous: 12}}}},
			},
			wantSeqs: map[string][]uint64{"d": {11, 12, 14}},
		},
		{
			name: "many devices and the same device twice in one call",
			steps: []step{
				{"mixed", []fleet.Batch{
					{Device: "a", Results: res(1, 2)},
					{Device: "b", Results: res(2)},
					{Device: "a", Results: res(2, 3)},
				}, []fleet.Appended{
					{Device: "a", Stored: 2, Totals: fleet.ResultStats{Stored: 2, Contiguous: 2}},
					{Device: "b", Stored: 1, Totals: fleet.ResultStats{Stored: 1}},
					{Device: "a", Stored: 1, Duplicates: 1, Totals: fleet.ResultStats{Stored: 3, Duplicates: 1, Contiguous: 3}},
				}},
			},
			wantSeqs:  map[string][]uint64{"a": {1, 2, 3}, "b": {2}},
			wantStats: map[string]fleet.ResultStats{"b": {Stored: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openOne(t, newStore)
			ctx := context.Background()
			for _, st := range tt.steps {
				got, err := s.AppendResults(ctx, st.batches)
				if err != nil {
					t.Fatalf("%s: AppendResults: %v", st.name, err)
				}
				if !reflect.DeepEqual(untimed(got), st.want) {
					t.Fatalf("%s: AppendResults =\n %+v\nwant\n %+v", st.name, got, st.want)
				}
			}
			for dev, want := range tt.wantSeqs {
				rs, err := s.Results(ctx, dev, 0, 1000)
				if err != nil {
					t.Fatalf("Results(%s): %v", dev, err)
				}
				if got := seqsOf(rs); !reflect.DeepEqual(got, want) {
					t.Errorf("Results(%s) seqs = %v, want %v", dev, got, want)
				}
				for _, r := range rs {
					if !reflect.DeepEqual(r, result(r.Seq)) {
						t.Errorf("Results(%s) seq %d = %+v, want %+v", dev, r.Seq, r, result(r.Seq))
					}
				}
			}
			for dev, want := range tt.wantStats {
				got, err := s.ResultStats(ctx, dev)
				if err != nil || untimedStats(got) != want {
					t.Errorf("ResultStats(%s) = %+v, %v; want %+v", dev, got, err, want)
				}
			}
		})
	}
}

func testAtomic(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	bad := [][]fleet.Batch{
		{{Device: "ok", Results: res(1)}, {Device: "ok", Results: res(0)}},
		{{Device: "ok", Results: res(1)}, {Device: "no/slash", Results: res(1)}},
		{{Device: "", Results: res(1)}},
	}
	for i, bs := range bad {
		if _, err := s.AppendResults(ctx, bs); err == nil {
			t.Errorf("case %d: AppendResults = nil error, want one", i)
		}
	}
	if st, _ := s.ResultStats(ctx, "ok"); st != (fleet.ResultStats{}) {
		t.Errorf("after rejected calls ResultStats(ok) = %+v, want zero (nothing stored)", st)
	}
	if rs, _ := s.Results(ctx, "ok", 0, 10); len(rs) != 0 {
		t.Errorf("after rejected calls Results(ok) = %v, want none", seqsOf(rs))
	}
}

// testWideDrop checks a drop announcement covering a huge range completes promptly, i.e. the
// implementation does not walk every dropped seq.
func testWideDrop(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	const far = 1 << 40
	t0 := time.Now()
	if _, err := s.AppendResults(ctx, []fleet.Batch{{Device: "w", Results: res(2), Received: t0}}); err != nil {
		t.Fatalf("AppendResults: %v", err)
	}
	// A device making results at fleet.MaxResultRate for long enough can have dropped this
	// many; 2 was stored before the drop and is counted as present, not dropped.
	later := t0.Add(time.Duration(far/fleet.MaxResultRate+1) * time.Second)
	start := time.Now()
	got, err := s.AppendResults(ctx, []fleet.Batch{{Device: "w", Results: res(far + 1), DroppedThrough: far, Received: later}})
	if err != nil {
		t.Fatalf("AppendResults: %v", err)
	}
	want := fleet.ResultStats{Stored: 2, Dropped: far - 1, Contiguous: far + 1}
	if untimedStats(got[0].Totals) != want {
		t.Fatalf("Totals = %+v, want %+v", got[0].Totals, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("wide drop took %v", d)
	}
}

// testPlausibleDrop: a spoofed huge DroppedThrough (9e15) on a known space is not believed, so
// the device's real results after it are still stored; Advanced records when the watermark
// moved.
func testPlausibleDrop(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	t0 := time.Now()
	const spoof = 9_000_000_000_000_000
	steps := []appendStep{
		{"real start", fleet.Batch{Device: "p", Epoch: 7, Results: res(1, 2, 3), Received: t0},
			fleet.Appended{Device: "p", Stored: 3, Totals: fleet.ResultStats{Stored: 3, Contiguous: 3, Epoch: 7}}},
		{"spoof with a result above it", fleet.Batch{Device: "p", Epoch: 7, Results: res(spoof + 1), DroppedThrough: spoof, Received: t0.Add(time.Second)},
			fleet.Appended{Device: "p", Stored: 1, DropRefused: true, Totals: fleet.ResultStats{Stored: 4, Contiguous: 3, Epoch: 7}}},
		{"spoof alone", fleet.Batch{Device: "p", Epoch: 7, DroppedThrough: spoof, Received: t0.Add(2 * time.Second)},
			fleet.Appended{Device: "p", DropRefused: true, Totals: fleet.ResultStats{Stored: 4, Contiguous: 3, Epoch: 7}}},
		{"real results go on", fleet.Batch{Device: "p", Epoch: 7, Results: res(4, 5), Received: t0.Add(3 * time.Second)},
			fleet.Appended{Device: "p", Stored: 2, Totals: fleet.ResultStats{Stored: 6, Contiguous: 5, Epoch: 7}}},
		{"a real drop within the rate", fleet.Batch{Device: "p", Epoch: 7, Results: res(9), DroppedThrough: 8, Received: t0.Add(4 * time.Second)},
			fleet.Appended{Device: "p", Stored: 1, Dropped: 3, Totals: fleet.ResultStats{Stored: 7, Dropped: 3, Contiguous: 9, Epoch: 7}}},
	}
	runSteps(t, s, steps)
	st, err := s.ResultStats(ctx, "p")
	if err != nil || !st.Advanced.Equal(t0.Add(4*time.Second)) {
		t.Errorf("ResultStats(p).Advanced = %v, %v; want the last batch's arrival %v", st.Advanced, err, t0.Add(4*time.Second))
	}
}

// testRejected: rejected seqs fill the watermark like stored results, are counted, are never
// returned as results, and a gap before them still holds the watermark.
func testRejected(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	rej := func(seqs ...uint64) []wire.Rejected {
		var out []wire.Rejected
		for _, q := range seqs {
			out = append(out, wire.Rejected{Seq: q, Reason: "bad"})
		}
		return out
	}
	steps := []appendStep{
		{"one bad among good", fleet.Batch{Device: "j", Results: res(1, 3), Rejected: rej(2)},
			fleet.Appended{Device: "j", Stored: 2, Rejected: 1, Totals: fleet.ResultStats{Stored: 2, Rejected: 1, Contiguous: 3}}},
		{"rejected again on resend", fleet.Batch{Device: "j", Results: res(3), Rejected: rej(2)},
			fleet.Appended{Device: "j", Duplicates: 1, Totals: fleet.ResultStats{Stored: 2, Duplicates: 1, Rejected: 1, Contiguous: 3}}},
		{"gap before a rejection", fleet.Batch{Device: "j", Results: res(6), Rejected: rej(5)},
			fleet.Appended{Device: "j", Stored: 1, Rejected: 1, Totals: fleet.ResultStats{Stored: 3, Duplicates: 1, Rejected: 2, Contiguous: 3}}},
		{"gap filled", fleet.Batch{Device: "j", Results: res(4)},
			fleet.Appended{Device: "j", Stored: 1, Totals: fleet.ResultStats{Stored: 4, Duplicates: 1, Rejected: 2, Contiguous: 6}}},
		{"all rejected", fleet.Batch{Device: "j", Rejected: rej(7, 8)},
			fleet.Appended{Device: "j", Rejected: 2, Totals: fleet.ResultStats{Stored: 4, Duplicates: 1, Rejected: 4, Contiguous: 8}}},
	}
	runSteps(t, s, steps)
	if rs, err := s.Results(ctx, "j", 0, 100); err != nil || !reflect.DeepEqual(seqsOf(rs), []uint64{1, 3, 4, 6}) {
		t.Errorf("Results(j) = %v, %v; want 1 3 4 6", seqsOf(rs), err)
	}
}

func testResults(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	if _, err := s.AppendResults(ctx, []fleet.Batch{{Device: "p", Results: res(1, 2, 3, 5, 8, 9)}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 100, []uint64{1, 2, 3, 5, 8, 9}},
		{0, 2, []uint64{1, 2}},
		{2, 2, []uint64{3, 5}},
		{5, 100, []uint64{8, 9}},
		{9, 100, []uint64{}},
		{^uint64(0), 100, []uint64{}},
		{0, 0, []uint64{}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("after%d_limit%d", tt.after, tt.limit), func(t *testing.T) {
			rs, err := s.Results(ctx, "p", tt.after, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqsOf(rs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Results(p, %d, %d) = %v, want %v", tt.after, tt.limit, got, tt.want)
			}
		})
	}
}

func testReopen(t *testing.T, newStore Factory) {
	ctx := context.Background()
	open := newStore(t)
	s := mustOpen(t, open)
	if _, err := s.AppendResults(ctx, []fleet.Batch{{Device: "r", Results: res(1, 2, 4), DroppedThrough: 0}}); err != nil {
		t.Fatal(err)
	}
	dev := fleet.Device{ID: "r", Online: true, Model: wire.ModelRef{Name: "m", Version: "1"}}
	if err := s.PutDevices(ctx, []fleet.Device{dev}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = mustOpen(t, open)
	st, err := s.ResultStats(ctx, "r")
	if want := (fleet.ResultStats{Stored: 3, Contiguous: 2}); err != nil || untimedStats(st) != want {
		t.Fatalf("after reopen ResultStats = %+v, %v; want %+v", st, err, want)
	}
	got, err := s.AppendResults(ctx, []fleet.Batch{{Device: "r", Results: res(1, 2, 3, 4)}})
	if err != nil {
		t.Fatal(err)
	}
	want := fleet.Appended{Device: "r", Stored: 1, Duplicates: 3, Totals: fleet.ResultStats{Stored: 4, Duplicates: 3, Contiguous: 4}}
	if untimed(got)[0] != want {
		t.Fatalf("after reopen AppendResults = %+v, want %+v", got[0], want)
	}
	ds, err := s.Devices(ctx)
	if err != nil || len(ds) != 1 || ds[0].Model != dev.Model || !ds[0].Online {
		t.Fatalf("after reopen Devices = %+v, %v", ds, err)
	}
}

func testConcurrent(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	const writers, perWriter = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter*3)
	for w := range writers {
		dev := fmt.Sprintf("c%d", w)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				seq := uint64(i + 1)
				if _, err := s.AppendResults(ctx, []fleet.Batch{{Device: dev, Results: res(seq)}}); err != nil {
					errs <- err
				}
				if err := s.PutDevices(ctx, []fleet.Device{{ID: dev, LastSeen: time.Unix(int64(i), 0)}}); err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range perWriter {
				if _, err := s.ResultStats(ctx, dev); err != nil {
					errs <- err
				}
				if _, err := s.Devices(ctx); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := range writers {
		dev := fmt.Sprintf("c%d", w)
		st, err := s.ResultStats(ctx, dev)
		if want := (fleet.ResultStats{Stored: perWriter, Contiguous: perWriter}); err != nil || untimedStats(st) != want {
			t.Errorf("ResultStats(%s) = %+v, %v; want %+v", dev, st, err, want)
		}
	}
}

// testEpochs: each (device, epoch) is its own sequence space. A device whose data dir was
// wiped starts again at seq 1 under a new epoch; those results are stored, not taken for
// duplicates, and the old epoch's results stay readable.
func testEpochs(t *testing.T, newStore Factory) {
	ctx := context.Background()
	open := newStore(t)
	s := mustOpen(t, open)
	const e1, e2 = 0x1234, 0x9876
	steps := []appendStep{
		{"legacy epoch 0", fleet.Batch{Device: "w", Results: res(1, 2)},
			fleet.Appended{Device: "w", Stored: 2, Totals: fleet.ResultStats{Stored: 2, Contiguous: 2}}},
		{"first epoch after upgrade", fleet.Batch{Device: "w", Epoch: e1, Results: res(1, 2, 3)},
			fleet.Appended{Device: "w", Stored: 3, Restarted: true, Totals: fleet.ResultStats{Stored: 3, Contiguous: 3, Epoch: e1}}},
		{"resend in e1", fleet.Batch{Device: "w", Epoch: e1, Results: res(3, 4)},
			fleet.Appended{Device: "w", Stored: 1, Duplicates: 1, Totals: fleet.ResultStats{Stored: 4, Duplicates: 1, Contiguous: 4, Epoch: e1}}},
		{"wiped: e2 restarts at 1", fleet.Batch{Device: "w", Epoch: e2, Results: res(1, 2)},
			fleet.Appended{Device: "w", Stored: 2, Restarted: true, Totals: fleet.ResultStats{Stored: 2, Contiguous: 2, Epoch: e2}}},
		{"late e1 batch is its own space", fleet.Batch{Device: "w", Epoch: e1, Results: res(4, 5)},
			fleet.Appended{Device: "w", Stored: 1, Duplicates: 1, Totals: fleet.ResultStats{Stored: 5, Duplicates: 2, Contiguous: 5, Epoch: e1}}},
		{"other device same epoch", fleet.Batch{Device: "v", Epoch: e2, Results: res(1)},
			fleet.Appended{Device: "v", Stored: 1, Totals: fleet.ResultStats{Stored: 1, Contiguous: 1, Epoch: e2}}},
	}
	runSteps(t, s, steps)
	check := func(when string) {
		t.Helper()
		// The current epoch is the one started last (e2), however late e1 batches come.
		if st, err := s.ResultStats(ctx, "w"); err != nil || untimedStats(st) != (fleet.ResultStats{Stored: 2, Contiguous: 2, Epoch: e2}) {
			t.Fatalf("%s: ResultStats(w) = %+v, %v; want epoch %#x with 2 stored", when, st, err, e2)
		}
		if rs, err := s.Results(ctx, "w", 0, 100); err != nil || !reflect.DeepEqual(seqsOf(rs), []uint64{1, 2}) {
			t.Fatalf("%s: Results(w) = %v, %v; want the current epoch's 1, 2", when, seqsOf(rs), err)
		}
		for _, tt := range []struct {
			epoch uint64
			want  []uint64
		}{{0, []uint64{1, 2}}, {e1, []uint64{1, 2, 3, 4, 5}}, {e2, []uint64{1, 2}}, {0x5555, []uint64{}}} {
			rs, err := s.EpochResults(ctx, "w", tt.epoch, 0, 100)
			if err != nil || !reflect.DeepEqual(seqsOf(rs), tt.want) {
				t.Fatalf("%s: EpochResults(w, %#x) = %v, %v; want %v", when, tt.epoch, seqsOf(rs), err, tt.want)
			}
			for _, r := range rs {
				if !reflect.DeepEqual(r, result(r.Seq)) {
					t.Fatalf("%s: EpochResults(w, %#x) seq %d = %+v", when, tt.epoch, r.Seq, r)
				}
			}
		}
	}
	check("before reopen")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, open)
	check("after reopen")
}
