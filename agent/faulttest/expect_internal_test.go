package faulttest

import (
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// agentLike makes results the way the agent does from the seeded sensor: every sample is
// drawn, the ones in drop are not taken (inference was late), and each stride of taken
// samples gives the window of the last ones taken. shed results are made but never get a seq.
func agentLike(t *testing.T, e *expected, results int, drop func(i int) bool, shed func(k int) bool) []wire.Result {
	t.Helper()
	var ring []int
	var out []wire.Result
	since, k := 0, 0
	for i := 0; len(out) < results; i++ {
		if drop(i) {
			continue
		}
		ring = append(ring, i)
		if len(ring) > e.window {
			ring = ring[1:]
		}
		if since++; len(ring) < e.window || since < e.stride {
			continue
		}
		since = 0
		if k++; shed(k) {
			continue
		}
		o := e.ringOutputs(t, ring)
		out = append(out, wire.Result{Seq: uint64(len(out) + 1), Outputs: o, Score: float64(o[0])})
	}
	return out
}

// The content check must accept what an agent that drops samples and sheds results really
// sends, and catch an old window's content under a new seq.
func TestContentCheck(t *testing.T) {
	never := func(int) bool { return false }
	// Gaps of 1 to 9 samples every 97 samples, as a loaded machine's sample loop drops them,
	// and one stall of 700.
	gappy := func(i int) bool { return i%97 < (i/97)%10 || (i >= 3000 && i < 3700) }
	shed := func(k int) bool { return k > 200 && k <= 260 }
	tests := []struct {
		name     string
		drop     func(int) bool
		shed     func(int) bool
		mutate   func([]wire.Result)
		wantErr  string
		restarts int
	}{
		{name: "no drops", drop: never, shed: never},
		{name: "dropped samples", drop: gappy, shed: never},
		{name: "dropped samples and shed results", drop: gappy, shed: shed},
		{name: "two gaps within a stride", shed: never,
			drop: func(i int) bool { return i >= 2000 && i < 2600 && (i%23 < 3 || i%23 >= 5 && i%23 < 8) }},
		{name: "old content under a new seq", drop: gappy, shed: never,
			mutate:  func(rs []wire.Result) { rs[700].Outputs, rs[700].Score = rs[300].Outputs, rs[300].Score },
			wantErr: "seq 701 "},
		{name: "first window again", drop: never, shed: never,
			mutate: func(rs []wire.Result) {
				// The agent restarted after result 500: its windows begin again.
				copy(rs[500:], rs[:len(rs)-500])
				for i := range rs {
					rs[i].Seq = uint64(i + 1)
				}
			},
			restarts: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newExpected(t, 42)
			rs := agentLike(t, e, 1000, tc.drop, tc.shed)
			if tc.mutate != nil {
				tc.mutate(rs)
			}
			c := &contentCheck{e: e, maxSkip: maxResync}
			var err error
			for _, r := range rs {
				if err = c.check(t, r); err != nil {
					break
				}
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("check: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("check = %v, want an error about %q", err, tc.wantErr)
			case c.restarts != tc.restarts:
				t.Fatalf("%d restarts, want %d", c.restarts, tc.restarts)
			}
			t.Logf("%d gaps, %d forward skips, %d readings left", c.gaps, c.resyncs, len(c.readings))
		})
	}
}
