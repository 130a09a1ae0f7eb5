package agent_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/replay"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// writeRecording writes a CSV of rows samples at 50 Hz; channel c of row i holds c*1000+i.
func writeRecording(t *testing.T, rows int, names ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("timestamp," + strings.Join(names, ",") + "\n")
	for i := range rows {
		fmt.Fprintf(&b, "%.2f", float64(i)*0.02)
		for c := range names {
			fmt.Fprintf(&b, ",%d", c*1000+i)
		}
		b.WriteString("\n")
	}
	p := filepath.Join(t.TempDir(), "rec.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// replayRig is a rig reading src with a 50 Hz model of the given channels, window 4, stride 2,
// no normalization.
func replayRig(src sensor.Source, channels int) *rig {
	r := newRig()
	r.opts.Source = src
	r.pred.spec = agent.ModelSpec{
		SampleRateHz: 50, Window: 4, Stride: 2, Channels: channels,
		OutputKind: agent.OutputAnomaly, Threshold: 1e9,
	}
	return r
}

// wantWindows returns the windows a 4-sample, stride-2 model sees over rows samples of
// writeRecording's channels.
func wantWindows(rows, channels int) [][]float32 {
	var ws [][]float32
	for end := 4; end <= rows; end += 2 {
		var w []float32
		for i := end - 4; i < end; i++ {
			for c := range channels {
				w = append(w, float32(c*1000+i))
			}
		}
		ws = append(ws, w)
	}
	return ws
}

// TestReplayAsFastAsPossible replays a 500-row, 10-second recording at speed=max through the
// agent: every window is inferred, in order, none skipped, in well under the recorded time.
func TestReplayAsFastAsPossible(t *testing.T) {
	const rows = 500
	path := writeRecording(t, rows, "a", "b")
	tests := []struct {
		name string
		open func(t *testing.T) sensor.Source
	}{
		{"one replay", func(t *testing.T) sensor.Source {
			src, err := sensor.Open("replay?speed=max&file=" + path)
			if err != nil {
				t.Fatal(err)
			}
			return src
		}},
		// The same two channels from two files, combined as two --sensor flags would be.
		{"two replays combined", func(t *testing.T) sensor.Source {
			a, err := sensor.Open("replay?speed=max&file=" + writeRecording(t, rows, "a"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := replayColumn(rows) // row i holds 1000+i: the second channel
			if err != nil {
				t.Fatal(err)
			}
			c, err := sensor.Combine(a, b)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.open(t)
			defer src.Close()
			r := replayRig(src, 2)
			start := time.Now()
			a, stop := r.start(t)
			want := wantWindows(rows, 2)
			eventually(t, "every window inferred", func() bool { return len(r.pred.windows()) >= len(want) })
			took := time.Since(start)
			eventually(t, "every result committed", func() bool { return a.Stats().LastSeq >= uint64(len(want)) })
			eventually(t, "the end of the recording reported", func() bool { return strings.Contains(a.Stats().SensorStatus, "end of recording") })
			stop()
			got := r.pred.windows()
			if len(got) != len(want) {
				t.Fatalf("%d windows inferred, want %d", len(got), len(want))
			}
			for i := range want {
				if !slices.Equal(got[i], want[i]) {
					t.Fatalf("window %d = %v, want %v", i, got[i], want[i])
				}
			}
			st := a.Stats()
			if st.SamplesDropped != 0 || st.LastSeq != uint64(len(want)) {
				t.Fatalf("samples dropped %d, last seq %d; want 0 and %d", st.SamplesDropped, st.LastSeq, len(want))
			}
			t.Logf("%d rows, %d windows in %v (recorded: %v)", rows, len(want), took.Round(time.Millisecond), rows*20*time.Millisecond)
			if limit := 5 * time.Second; took > limit {
				t.Fatalf("speed=max took %v for a 10 s recording, want under %v", took, limit)
			}
		})
	}
}

// replayColumn opens a 1-channel replay whose row i holds 1000+i.
func replayColumn(rows int) (sensor.Source, error) {
	var b strings.Builder
	b.WriteString("timestamp,b\n")
	for i := range rows {
		fmt.Fprintf(&b, "%.2f,%d\n", float64(i)*0.02, 1000+i)
	}
	rec, err := replay.Parse(strings.NewReader(b.String()))
	if err != nil {
		return nil, err
	}
	return replay.New(rec, "column", replay.Options{Speed: math.Inf(1)})
}

// TestReplaySpeed replays a 3-second recording at speed=2: it takes about 1.5 s.
func TestReplaySpeed(t *testing.T) {
	const rows = 150 // 3 s at 50 Hz
	src, err := sensor.Open("replay?speed=2&file=" + writeRecording(t, rows, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r := replayRig(src, 1)
	start := time.Now()
	a, stop := r.start(t)
	want := wantWindows(rows, 1)
	eventually(t, "every window inferred", func() bool { return len(r.pred.windows()) >= len(want) })
	took := time.Since(start)
	stop()
	if st := a.Stats(); st.SamplesDropped != 0 || !slices.Equal(r.pred.windows()[len(want)-1], want[len(want)-1]) {
		t.Fatalf("samples dropped %d, last window %v; want none dropped and %v", st.SamplesDropped, r.pred.windows()[len(want)-1], want[len(want)-1])
	}
	recorded := rows * 20 * time.Millisecond
	t.Logf("speed=2: %v for %v recorded", took.Round(time.Millisecond), recorded)
	// A ticker never runs early, so the lower bound is firm; the upper one has slack for a
	// loaded machine yet stays well below recorded speed.
	if took < 2*recorded/5 || took > 4*recorded/5 {
		t.Fatalf("speed=2 took %v for %v recorded, want about %v", took, recorded, recorded/2)
	}
}

// TestHealthLastErrorAt: the health report says when its last error happened, and says
// nothing of the kind while there has been none.
func TestHealthLastErrorAt(t *testing.T) {
	t.Run("no error", func(t *testing.T) {
		r := newRig()
		a, stop := r.start(t)
		eventually(t, "health reported", func() bool { return len(r.up.healthReports()) > 0 })
		stop()
		h := a.Health()
		b, err := json.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		if !h.LastErrorAt.IsZero() || strings.Contains(string(b), "last_error") {
			t.Fatalf("health without errors = %s, want no last_error fields", b)
		}
	})
	t.Run("predict error", func(t *testing.T) {
		r := newRig()
		r.pred.err = errors.New("tensor arena exhausted")
		start := time.Now().Add(-time.Second) // wall clocks in reports have no monotonic part
		a, stop := r.start(t)
		var h wire.Health
		eventually(t, "health with the error", func() bool {
			hs := r.up.healthReports()
			if len(hs) == 0 {
				return false
			}
			h = hs[len(hs)-1]
			return h.LastError != ""
		})
		stop()
		end := time.Now().Add(time.Second)
		if !strings.Contains(h.LastError, "tensor arena") || h.LastErrorAt.Before(start) || h.LastErrorAt.After(end) ||
			h.LastErrorAt.Location() != time.UTC {
			t.Fatalf("last_error %q at %v; want the predict error at a UTC time between %v and %v", h.LastError, h.LastErrorAt, start, end)
		}
		// The time moves on with each new error: a later report is no older.
		if st := a.Stats(); st.LastErrorAt.Before(h.LastErrorAt) {
			t.Fatalf("Stats().LastErrorAt %v is before the reported %v", st.LastErrorAt, h.LastErrorAt)
		}
	})
}
