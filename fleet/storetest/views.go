package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// The ViewStore part of the contract. Times are whole microseconds, the finest a PostgreSQL
// timestamp keeps, and compared with Equal (a store may hand back another location).

// runViews runs the ViewStore contract.
func runViews(t *testing.T, newStore Factory) {
	t.Run("ViewsEmpty", func(t *testing.T) { testViewsEmpty(t, openOne(t, newStore)) })
	t.Run("QueryResults", func(t *testing.T) { testQueryResults(t, openOne(t, newStore)) })
	t.Run("SummariesExact", func(t *testing.T) { testSummariesExact(t, newStore) })
	t.Run("SummaryQueries", func(t *testing.T) { testSummaryQueries(t, openOne(t, newStore)) })
	t.Run("PruneResults", func(t *testing.T) { testPruneResults(t, openOne(t, newStore)) })
	t.Run("Feedback", func(t *testing.T) { testFeedback(t, openOne(t, newStore)) })
	t.Run("Health", func(t *testing.T) { testHealth(t, openOne(t, newStore)) })
	t.Run("Drift", func(t *testing.T) { testDrift(t, openOne(t, newStore)) })
}

// t0 is the reference received time of the views tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// vres is a result at t0 + sec seconds (result time), with a score and label varying by seq.
func vres(seq uint64, sec int, model string) wire.Result {
	return wire.Result{
		Seq:       seq,
		Time:      t0.Add(time.Duration(sec) * time.Second),
		Model:     model,
		Score:     float64(seq%7) * 0.15,
		Label:     []string{"normal", "anomaly", "bearing"}[seq%3],
		Event:     seq%3 == 1,
		Outputs:   []float32{float32(seq)},
		LatencyUs: 100,
	}
}

func appendOK(t *testing.T, s fleet.Store, batches ...fleet.Batch) []fleet.Appended {
	t.Helper()
	got, err := s.AppendResults(context.Background(), batches)
	if err != nil {
		t.Fatalf("AppendResults: %v", err)
	}
	return got
}

// wantBuckets summarises results with OutputBucket.Add, in order: what the store must hold
// once every one of them was newly stored exactly once.
func wantBuckets(device string, rs []wire.Result) map[fleet.BucketKey]fleet.OutputBucket {
	out := map[fleet.BucketKey]fleet.OutputBucket{}
	for _, r := range rs {
		k := fleet.BucketKey{Device: device, Model: r.Model, Start: fleet.SummaryStart(r.Time)}
		b, ok := out[k]
		if !ok {
			b = fleet.OutputBucket{Device: device, Model: r.Model, Start: k.Start}
		}
		b.Add(&r)
		if b.Labels != nil {
			// Add mutates a map shared with the copy in out; clone so the stored value is ours.
			m := make(map[string]uint64, len(b.Labels))
			for l, n := range b.Labels {
				m[l] = n
			}
			b.Labels = m
		}
		b.ScoreHist = append([]uint64(nil), b.ScoreHist...)
		out[k] = b
	}
	return out
}

// checkBuckets compares the store's buckets with want, ignoring order and time location.
func checkBuckets(t *testing.T, name string, got []fleet.OutputBucket, want map[fleet.BucketKey]fleet.OutputBucket) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d buckets, want %d: %+v", name, len(got), len(want), got)
	}
	for _, b := range got {
		b.Start = b.Start.UTC()
		w, ok := want[b.Key()]
		if !ok {
			t.Fatalf("%s: unexpected bucket %+v", name, b)
		}
		if !reflect.DeepEqual(b, w) {
			t.Fatalf("%s: bucket\n %+v\nwant\n %+v", name, b, w)
		}
	}
}

func testViewsEmpty(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	if rs, err := s.QueryResults(ctx, fleet.ResultQuery{Device: "nobody"}); err != nil || len(rs) != 0 {
		t.Errorf("QueryResults(nobody) = %v, %v; want none", rs, err)
	}
	if bs, err := s.OutputSummaries(ctx, "", time.Time{}, time.Time{}); err != nil || len(bs) != 0 {
		t.Errorf("OutputSummaries = %v, %v; want none", bs, err)
	}
	if hs, err := s.HealthHistory(ctx, "nobody", time.Time{}, time.Time{}); err != nil || len(hs) != 0 {
		t.Errorf("HealthHistory = %v, %v; want none", hs, err)
	}
	if ds, err := s.Drift(ctx, fleet.DriftQuery{}); err != nil || len(ds) != 0 {
		t.Errorf("Drift = %v, %v; want none", ds, err)
	}
	if fs, err := s.FeedbackResults(ctx, "", time.Time{}, 0); err != nil || len(fs) != 0 {
		t.Errorf("FeedbackResults = %v, %v; want none", fs, err)
	}
	for name, prune := range map[string]func(context.Context, time.Time) (int, error){
		"PruneResults": s.PruneResults, "PruneSummaries": s.PruneSummaries,
		"PruneHealth": s.PruneHealth, "PruneDrift": s.PruneDrift,
	} {
		if n, err := prune(ctx, t0); err != nil || n != 0 {
			t.Errorf("%s on an empty store = %d, %v; want 0, nil", name, n, err)
		}
	}
}

// seqsOfStored lists (epoch, seq) of stored results as "e/s".
func seqsOfStored(rs []fleet.StoredResult) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%d/%d", r.Epoch, r.Result.Seq))
	}
	return out
}

func testQueryResults(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	// Epoch 0: seqs 1..6 at 0,10,...,50 s; epoch 7 (the device restarted with a clock going
	// back): seqs 1..3 at 15, 25, 35 s. Results of another device must never show.
	var e0, e7 []wire.Result
	for i := range 6 {
		e0 = append(e0, vres(uint64(i+1), i*10, "vib@1.0.0"))
	}
	for i := range 3 {
		e7 = append(e7, vres(uint64(i+1), 15+i*10, "vib@1.0.0"))
	}
	recv0, recv7 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	appendOK(t, s,
		fleet.Batch{Device: "qa", Results: e0, Received: recv0},
		fleet.Batch{Device: "qa", Epoch: 7, Results: e7, Received: recv7},
		fleet.Batch{Device: "other", Results: e0, Received: recv0})

	all := []string{"0/6", "0/5", "7/3", "0/4", "7/2", "0/3", "7/1", "0/2", "0/1"}
	tests := []struct {
		name string
		q    fleet.ResultQuery
		want []string
	}{
		{"all newest first, every epoch", fleet.ResultQuery{Device: "qa"}, all},
		{"since inclusive", fleet.ResultQuery{Device: "qa", Since: t0.Add(25 * time.Second)}, []string{"0/6", "0/5", "7/3", "0/4", "7/2"}},
		{"until exclusive", fleet.ResultQuery{Device: "qa", Until: t0.Add(20 * time.Second)}, []string{"7/1", "0/2", "0/1"}},
		{"window", fleet.ResultQuery{Device: "qa", Since: t0.Add(10 * time.Second), Until: t0.Add(30 * time.Second)}, []string{"7/2", "0/3", "7/1", "0/2"}},
		{"events only", fleet.ResultQuery{Device: "qa", EventsOnly: true}, []string{"0/4", "7/1", "0/1"}},
		{"limit keeps the newest", fleet.ResultQuery{Device: "qa", Limit: 2}, []string{"0/6", "0/5"}},
		{"limit with events", fleet.ResultQuery{Device: "qa", EventsOnly: true, Limit: 1}, []string{"0/4"}},
		{"limit over the maximum is capped, not an error", fleet.ResultQuery{Device: "qa", Limit: fleet.MaxResultLimit + 1}, all},
		{"negative limit is the default", fleet.ResultQuery{Device: "qa", Limit: -1}, all},
		{"empty window", fleet.ResultQuery{Device: "qa", Since: t0.Add(time.Hour)}, []string{}},
		{"unknown device", fleet.ResultQuery{Device: "zz"}, []string{}},
	}
	for _, tc := range tests {
		got, err := s.QueryResults(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if g := seqsOfStored(got); !reflect.DeepEqual(g, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, g, tc.want)
		}
	}

	got, err := s.QueryResults(ctx, fleet.ResultQuery{Device: "qa", Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("QueryResults = %v, %v", got, err)
	}
	r := got[0]
	if r.Device != "qa" || !r.Received.Equal(recv0) || r.Feedback != nil {
		t.Errorf("stored result = device %q received %v feedback %v; want qa, %v, none", r.Device, r.Received, r.Feedback, recv0)
	}
	want := e0[5]
	r.Result.Time = r.Result.Time.UTC()
	if !reflect.DeepEqual(r.Result, want) {
		t.Errorf("result round trip:\n %+v\nwant\n %+v", r.Result, want)
	}
	got, _ = s.QueryResults(ctx, fleet.ResultQuery{Device: "qa", Since: t0.Add(35 * time.Second), Until: t0.Add(36 * time.Second)})
	if len(got) != 1 || got[0].Epoch != 7 || !got[0].Received.Equal(recv7) {
		t.Errorf("epoch 7 result = %+v; want epoch 7 received %v", got, recv7)
	}
}

// testSummariesExact: every newly stored result is counted once; duplicates (in one call, in
// later calls, after a reopen), rejected seqs and seqs under the watermark are not.
func testSummariesExact(t *testing.T, newStore Factory) {
	ctx := context.Background()
	open := newStore(t)
	s := mustOpen(t, open)
	var rs []wire.Result
	for i := range 40 {
		model := "vib@1.0.0"
		if i%4 == 3 {
			model = "vib@1.1.0"
		}
		rs = append(rs, vres(uint64(i+1), i*7, model))
	}
	steps := []struct {
		name    string
		batches []fleet.Batch
	}{
		{"first", []fleet.Batch{{Device: "sx", Results: rs[:10]}}},
		{"redelivered whole", []fleet.Batch{{Device: "sx", Results: rs[:10]}}},
		{"same results twice in one call", []fleet.Batch{{Device: "sx", Results: rs[10:20]}, {Device: "sx", Results: rs[5:20]}}},
		{"rejected seq beside new ones", []fleet.Batch{{Device: "sx", Results: append(append([]wire.Result{}, rs[20:25]...), rs[26:30]...),
			Rejected: []wire.Rejected{{Seq: 26, Reason: "score is not a number"}}}}},
		{"resend of the rejected seq", []fleet.Batch{{Device: "sx", Results: rs[25:26]}}},
	}
	for _, st := range steps {
		appendOK(t, s, st.batches...)
	}
	stored := append(append([]wire.Result{}, rs[:25]...), rs[26:30]...)
	got, err := s.OutputSummaries(ctx, "sx", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	checkBuckets(t, "after duplicates", got, wantBuckets("sx", stored))

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, open)
	appendOK(t, s, fleet.Batch{Device: "sx", Results: rs[20:40]})
	stored = append(stored, rs[30:40]...)
	got, err = s.OutputSummaries(ctx, "sx", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	checkBuckets(t, "after reopen and redelivery", got, wantBuckets("sx", stored))
	var n, ev uint64
	for _, b := range got {
		n += b.Count
		ev += b.Events
	}
	if n != 39 || ev != 14 {
		t.Errorf("summed counts = %d results, %d events; want 39, 14", n, ev)
	}
}

func testSummaryQueries(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	// Device b has two models; results a minute apart fall in separate buckets.
	appendOK(t, s,
		fleet.Batch{Device: "b", Results: []wire.Result{vres(1, 0, "m@2"), vres(2, 60, "m@2"), vres(3, 120, "m@2"), vres(4, 5, "a@1")}},
		fleet.Batch{Device: "a", Results: []wire.Result{vres(1, 61, "z@1")}})
	type key struct {
		dev, model string
		min        int
	}
	keys := func(bs []fleet.OutputBucket) []key {
		out := []key{}
		for _, b := range bs {
			out = append(out, key{b.Device, b.Model, int(b.Start.Sub(t0) / time.Minute)})
		}
		return out
	}
	tests := []struct {
		name         string
		device       string
		since, until time.Time
		want         []key
	}{
		{"all, by device, model, start", "", time.Time{}, time.Time{}, []key{{"a", "z@1", 1}, {"b", "a@1", 0}, {"b", "m@2", 0}, {"b", "m@2", 1}, {"b", "m@2", 2}}},
		{"one device", "b", time.Time{}, time.Time{}, []key{{"b", "a@1", 0}, {"b", "m@2", 0}, {"b", "m@2", 1}, {"b", "m@2", 2}}},
		{"since inclusive", "b", t0.Add(time.Minute), time.Time{}, []key{{"b", "m@2", 1}, {"b", "m@2", 2}}},
		{"until exclusive", "", time.Time{}, t0.Add(time.Minute), []key{{"b", "a@1", 0}, {"b", "m@2", 0}}},
		{"bucket start, not result time, is filtered", "", t0.Add(30 * time.Second), t0.Add(90 * time.Second), []key{{"a", "z@1", 1}, {"b", "m@2", 1}}},
		{"unknown device", "c", time.Time{}, time.Time{}, []key{}},
	}
	for _, tc := range tests {
		got, err := s.OutputSummaries(ctx, tc.device, tc.since, tc.until)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if g := keys(got); !reflect.DeepEqual(g, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, g, tc.want)
		}
	}
	n, err := s.PruneSummaries(ctx, t0.Add(time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("PruneSummaries = %d, %v; want 2", n, err)
	}
	got, _ := s.OutputSummaries(ctx, "", time.Time{}, time.Time{})
	if g := keys(got); !reflect.DeepEqual(g, []key{{"a", "z@1", 1}, {"b", "m@2", 1}, {"b", "m@2", 2}}) {
		t.Errorf("after prune: %v", g)
	}
}

// testPruneResults: results received before the cutoff go, watermarks and counters stay, and a
// pruned result sent again is a duplicate that changes no summary.
func testPruneResults(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	var rs []wire.Result
	for i := range 10 {
		rs = append(rs, vres(uint64(i+1), i, "vib@1.0.0"))
	}
	appendOK(t, s,
		fleet.Batch{Device: "p", Results: rs[:6], Received: t0},
		fleet.Batch{Device: "q", Results: rs[:2], Received: t0.Add(time.Second)})
	appendOK(t, s, fleet.Batch{Device: "p", Results: rs[6:], Received: t0.Add(time.Hour)})
	if err := s.PutFeedback(ctx, []fleet.Feedback{{Device: "p", Seq: 2, Label: "normal", At: t0}}); err != nil {
		t.Fatal(err)
	}
	stats0, _ := s.ResultStats(ctx, "p")
	sums0, _ := s.OutputSummaries(ctx, "", time.Time{}, time.Time{})

	n, err := s.PruneResults(ctx, t0.Add(time.Second))
	if err != nil || n != 6 {
		t.Fatalf("PruneResults = %d, %v; want 6 (p's first batch; the cutoff is exclusive)", n, err)
	}
	got, _ := s.QueryResults(ctx, fleet.ResultQuery{Device: "p"})
	if g := seqsOfStored(got); !reflect.DeepEqual(g, []string{"0/10", "0/9", "0/8", "0/7"}) {
		t.Errorf("p after prune: %v", g)
	}
	if rs, _ := s.Results(ctx, "p", 0, 100); !reflect.DeepEqual(seqsOf(rs), []uint64{7, 8, 9, 10}) {
		t.Errorf("Results(p) after prune = %v", seqsOf(rs))
	}
	if got, _ := s.QueryResults(ctx, fleet.ResultQuery{Device: "q"}); len(got) != 2 {
		t.Errorf("q after prune: %v, want both kept", seqsOfStored(got))
	}
	if fs, _ := s.FeedbackResults(ctx, "", time.Time{}, 0); len(fs) != 0 {
		t.Errorf("feedback of a pruned result still listed: %+v", fs)
	}
	if st, _ := s.ResultStats(ctx, "p"); !reflect.DeepEqual(untimedStats(st), untimedStats(stats0)) {
		t.Errorf("stats after prune = %+v, want unchanged %+v", st, stats0)
	}

	a := appendOK(t, s, fleet.Batch{Device: "p", Results: rs[:3], Received: t0.Add(2 * time.Hour)})
	if a[0].Stored != 0 || a[0].Duplicates != 3 {
		t.Errorf("resent pruned results: stored %d duplicates %d; want 0, 3", a[0].Stored, a[0].Duplicates)
	}
	if got, _ := s.QueryResults(ctx, fleet.ResultQuery{Device: "p"}); len(got) != 4 {
		t.Errorf("resent pruned results came back: %v", seqsOfStored(got))
	}
	sums, _ := s.OutputSummaries(ctx, "", time.Time{}, time.Time{})
	if !reflect.DeepEqual(sums, sums0) {
		t.Errorf("summaries changed by prune or resend:\n %+v\nwant\n %+v", sums, sums0)
	}
	if n, err := s.PruneResults(ctx, t0.Add(time.Second)); err != nil || n != 0 {
		t.Errorf("second prune = %d, %v; want 0", n, err)
	}
}

func testFeedback(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	appendOK(t, s,
		fleet.Batch{Device: "f", Results: []wire.Result{vres(1, 0, "m@1"), vres(2, 10, "m@1"), vres(3, 20, "m@1")}, Received: t0},
		fleet.Batch{Device: "g", Epoch: 5, Results: []wire.Result{vres(1, 5, "m@1")}, Received: t0})
	at := t0.Add(time.Hour)

	bad := []struct {
		name string
		fb   fleet.Feedback
	}{
		{"unknown device", fleet.Feedback{Device: "nobody", Seq: 1, Label: "x", At: at}},
		{"unknown seq", fleet.Feedback{Device: "f", Seq: 9, Label: "x", At: at}},
		{"unknown epoch", fleet.Feedback{Device: "g", Epoch: 4, Seq: 1, Label: "x", At: at}},
	}
	for _, tc := range bad {
		// The bad label rides with a good one: the call stores nothing.
		err := s.PutFeedback(ctx, []fleet.Feedback{{Device: "f", Seq: 1, Label: "normal", At: at}, tc.fb})
		if !errors.Is(err, fleet.ErrNotFound) {
			t.Errorf("%s: PutFeedback = %v, want ErrNotFound", tc.name, err)
		}
		if fs, _ := s.FeedbackResults(ctx, "", time.Time{}, 0); len(fs) != 0 {
			t.Fatalf("%s: a failed PutFeedback stored %+v", tc.name, fs)
		}
	}

	err := s.PutFeedback(ctx, []fleet.Feedback{
		{Device: "f", Seq: 1, Label: "normal", Source: "tech", At: at},
		{Device: "f", Seq: 3, Label: "anomaly", At: at},
		{Device: "g", Seq: 1, Label: "bearing", At: at}, // epoch 0: g's current epoch, 5
	})
	if err != nil {
		t.Fatal(err)
	}
	// A second label replaces the first.
	if err := s.PutFeedback(ctx, []fleet.Feedback{{Device: "f", Seq: 1, Label: "anomaly", Source: "lab", At: at.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	fs, err := s.FeedbackResults(ctx, "", time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if g := seqsOfStored(fs); !reflect.DeepEqual(g, []string{"0/3", "5/1", "0/1"}) {
		t.Fatalf("FeedbackResults = %v, want newest result time first", g)
	}
	f := fs[2].Feedback
	if f == nil || f.Label != "anomaly" || f.Source != "lab" || !f.At.Equal(at.Add(time.Minute)) {
		t.Errorf("replaced feedback = %+v", f)
	}
	if fs[1].Feedback == nil || fs[1].Feedback.Epoch != 5 || fs[1].Device != "g" {
		t.Errorf("feedback with epoch 0 = %+v, want resolved to g's epoch 5", fs[1])
	}
	for _, tc := range []struct {
		name   string
		device string
		since  time.Time
		limit  int
		want   []string
	}{
		{"one device", "f", time.Time{}, 0, []string{"0/3", "0/1"}},
		{"since result time", "", t0.Add(5 * time.Second), 0, []string{"0/3", "5/1"}},
		{"limit", "", time.Time{}, 1, []string{"0/3"}},
	} {
		got, err := s.FeedbackResults(ctx, tc.device, tc.since, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if g := seqsOfStored(got); !reflect.DeepEqual(g, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, g, tc.want)
		}
	}
	got, _ := s.QueryResults(ctx, fleet.ResultQuery{Device: "f"})
	if len(got) != 3 || got[0].Feedback == nil || got[0].Feedback.Label != "anomaly" || got[1].Feedback != nil {
		t.Errorf("QueryResults feedback = %+v", got)
	}
}

func hp(device string, min int, seq uint64) fleet.HealthPoint {
	return fleet.HealthPoint{Device: device, Start: t0.Add(time.Duration(min) * time.Minute),
		Health: wire.Health{V: 1, Device: device, Time: t0.Add(time.Duration(min)*time.Minute + 30*time.Second).Round(time.Microsecond), LastSeq: seq, AgentVersion: "1.0"}}
}

func testHealth(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	if err := s.PutHealth(ctx, []fleet.HealthPoint{hp("h", 0, 1), hp("h", 1, 2), hp("h", 2, 3), hp("k", 0, 9)}); err != nil {
		t.Fatal(err)
	}
	// The same (device, start) replaces.
	if err := s.PutHealth(ctx, []fleet.HealthPoint{hp("h", 1, 20)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutHealth(ctx, []fleet.HealthPoint{{Device: "bad/id", Start: t0}}); err == nil {
		t.Error("PutHealth with an invalid device id = nil error")
	}
	seqs := func(ps []fleet.HealthPoint) []uint64 {
		out := []uint64{}
		for _, p := range ps {
			out = append(out, p.Health.LastSeq)
		}
		return out
	}
	for _, tc := range []struct {
		name         string
		device       string
		since, until time.Time
		want         []uint64
	}{
		{"all oldest first", "h", time.Time{}, time.Time{}, []uint64{1, 20, 3}},
		{"since inclusive", "h", t0.Add(time.Minute), time.Time{}, []uint64{20, 3}},
		{"until exclusive", "h", time.Time{}, t0.Add(2 * time.Minute), []uint64{1, 20}},
		{"other device", "k", time.Time{}, time.Time{}, []uint64{9}},
		{"unknown", "z", time.Time{}, time.Time{}, []uint64{}},
	} {
		got, err := s.HealthHistory(ctx, tc.device, tc.since, tc.until)
		if err != nil {
			t.Fatal(err)
		}
		if g := seqs(got); !reflect.DeepEqual(g, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, g, tc.want)
		}
	}
	got, _ := s.HealthHistory(ctx, "h", time.Time{}, t0.Add(time.Minute))
	want := hp("h", 0, 1)
	if len(got) != 1 || got[0].Device != "h" || !got[0].Start.Equal(want.Start) || !got[0].Health.Time.Equal(want.Health.Time) || got[0].Health.AgentVersion != "1.0" {
		t.Errorf("health round trip = %+v, want %+v", got, want)
	}
	n, err := s.PruneHealth(ctx, t0.Add(time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("PruneHealth = %d, %v; want 2", n, err)
	}
	if got, _ := s.HealthHistory(ctx, "h", time.Time{}, time.Time{}); !reflect.DeepEqual(seqs(got), []uint64{20, 3}) {
		t.Errorf("after prune: %v", seqs(got))
	}
}

func drift(device, name, version string, window uint64, endMin int) fleet.DriftRecord {
	return fleet.DriftRecord{
		Received: t0.Add(time.Duration(endMin) * time.Minute),
		Summary: wire.DriftSummary{V: 1, Device: device, Model: wire.ModelRef{Name: name, Version: version},
			Window: window, Start: t0.Add(time.Duration(endMin-1) * time.Minute), End: t0.Add(time.Duration(endMin) * time.Minute),
			Inferences: int64(window) * 10,
			Features:   []wire.DriftFeature{{Name: "x", Role: wire.DriftInput}}},
	}
}

func testDrift(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	recs := []fleet.DriftRecord{drift("d1", "vib", "1", 1, 1), drift("d1", "vib", "1", 2, 2), drift("d1", "vib", "2", 1, 3), drift("d2", "cls", "1", 1, 4)}
	if err := s.PutDrift(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// Redelivery of the same window replaces it.
	again := drift("d1", "vib", "1", 2, 2)
	again.Summary.Inferences = 999
	if err := s.PutDrift(ctx, []fleet.DriftRecord{again}); err != nil {
		t.Fatal(err)
	}
	id := func(rs []fleet.DriftRecord) []string {
		out := []string{}
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%s %s@%s #%d", r.Summary.Device, r.Summary.Model.Name, r.Summary.Model.Version, r.Summary.Window))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    fleet.DriftQuery
		want []string
	}{
		{"all newest first", fleet.DriftQuery{}, []string{"d2 cls@1 #1", "d1 vib@2 #1", "d1 vib@1 #2", "d1 vib@1 #1"}},
		{"device", fleet.DriftQuery{Device: "d1"}, []string{"d1 vib@2 #1", "d1 vib@1 #2", "d1 vib@1 #1"}},
		{"model name", fleet.DriftQuery{Model: "vib"}, []string{"d1 vib@2 #1", "d1 vib@1 #2", "d1 vib@1 #1"}},
		{"model name@version", fleet.DriftQuery{Model: "vib@1"}, []string{"d1 vib@1 #2", "d1 vib@1 #1"}},
		{"since window end", fleet.DriftQuery{Since: t0.Add(2 * time.Minute)}, []string{"d2 cls@1 #1", "d1 vib@2 #1", "d1 vib@1 #2"}},
		{"limit", fleet.DriftQuery{Limit: 1}, []string{"d2 cls@1 #1"}},
		{"unknown", fleet.DriftQuery{Device: "zz"}, []string{}},
	} {
		got, err := s.Drift(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		if g := id(got); !reflect.DeepEqual(g, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, g, tc.want)
		}
	}
	got, _ := s.Drift(ctx, fleet.DriftQuery{Model: "vib@1", Limit: 1})
	if len(got) != 1 || got[0].Summary.Inferences != 999 || !got[0].Received.Equal(t0.Add(2*time.Minute)) || len(got[0].Summary.Features) != 1 {
		t.Errorf("redelivered record = %+v", got)
	}
	n, err := s.PruneDrift(ctx, t0.Add(2*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PruneDrift = %d, %v; want 1 (received before the cutoff)", n, err)
	}
	if got, _ := s.Drift(ctx, fleet.DriftQuery{}); len(got) != 3 {
		t.Errorf("after prune: %v", id(got))
	}
}
