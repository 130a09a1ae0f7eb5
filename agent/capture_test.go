package agent_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// recordingCapturer wants every third window and records what the pipeline hands over; its
// Run returns only when its ctx ends, as agent/capture's does.
type recordingCapturer struct {
	mu      sync.Mutex
	asked   int
	wanted  int
	kept    []kept
	running chan struct{}
}

type kept struct {
	window []float32
	reason string
	r      wire.Result
}

func (c *recordingCapturer) Want(_ time.Time, score, threshold float64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked++
	if threshold != 10 || c.asked%3 != 0 {
		return ""
	}
	c.wanted++
	return wire.CaptureRandom
}

func (c *recordingCapturer) Keep(w []float32, reason string, r wire.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kept = append(c.kept, kept{w, reason, r})
}

func (c *recordingCapturer) Drift(time.Time, bool) {}

func (c *recordingCapturer) Run(ctx context.Context) error {
	close(c.running)
	<-ctx.Done()
	return nil
}

// TestCaptureHook: the windows the Capturer wants reach Keep raw (not normalized), in time
// order, with their result and its buffer seq, including those of the final commit at stop.
func TestCaptureHook(t *testing.T) {
	r := newRig()
	r.src.limit = 200
	c := &recordingCapturer{running: make(chan struct{})}
	r.opts.Capture = c
	_, stop := r.start(t)
	<-c.running
	deadline := time.Now().Add(10 * time.Second)
	for len(r.pred.windows()) < 99 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wanted == 0 || len(c.kept) != c.wanted {
		t.Fatalf("wanted %d windows, %d kept", c.wanted, len(c.kept))
	}
	// Results are numbered in the order the model ran them, so result seq n is the n-th
	// window the predictor saw.
	seen := r.pred.windows()
	for i, k := range c.kept {
		// fakeSource yields 1, 2, 3, …: a raw window is four consecutive values ending at the
		// sample the result is for; the model saw them normalized as (x-1)/2.
		last := k.window[len(k.window)-1]
		for j, v := range k.window {
			if want := last - float32(len(k.window)-1-j); v != want {
				t.Fatalf("kept window %d = %v: not raw consecutive samples", i, k.window)
			}
		}
		if k.r.Seq == 0 || k.reason != wire.CaptureRandom {
			t.Fatalf("kept %d: result %+v, reason %q", i, k.r, k.reason)
		}
		if k.r.Seq > uint64(len(seen)) || float32(k.r.Score) != (last-1)/2 {
			t.Fatalf("kept %d: result seq %d score %v for raw window ending %v", i, k.r.Seq, k.r.Score, last)
		}
		if w := seen[k.r.Seq-1]; w[len(w)-1] != (last-1)/2 {
			t.Fatalf("kept %d: result seq %d is the window ending %v (normalized), not %v", i, k.r.Seq, w[len(w)-1], (last-1)/2)
		}
	}
}
