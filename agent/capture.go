package agent

import (
	"context"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Capturer keeps some raw input windows with their results for retraining (agent/capture
// implements it; docs/monitoring.md). With Options.Capture nil the pipeline does no capture
// work at all; with one, the infer loop asks Want after every result, copies the window only
// when it says yes, and the commit loop hands it over with Keep once the result has its seq.
type Capturer interface {
	// Want decides whether the window that produced a result with this score is captured,
	// given the model's event threshold, and names the reason ("" for no). It must be cheap
	// and must not block or allocate.
	Want(t time.Time, score, threshold float64) (reason string)
	// Keep takes a captured window (raw sensor values, time-major, owned by the Capturer from
	// now on) and its result, Seq set. It must not block.
	Keep(window []float32, reason string, r wire.Result)
	// Drift tells the Capturer whether the drift monitor's last closed window drifted.
	Drift(t time.Time, drifting bool)
	// Run stores and uploads captured windows until ctx ends.
	Run(ctx context.Context) error
}

// captureCounter is implemented by a Capturer that reports its buffer in health
// (agent/capture.Capturer).
type captureCounter interface {
	BufferCounts() (held, dropped uint64)
}

// inferred is one result on its way from the infer loop to the commit loop, with the window
// it came from when the Capturer wants it (nil otherwise: no copy is made).
type inferred struct {
	r       wire.Result
	window  []float32
	capture string // the Capturer's reason
}

// wantCapture asks the Capturer about r and, if it wants the window, returns a time-ordered
// copy of the raw ring.
func (a *Agent) wantCapture(t time.Time, r *wire.Result, ring []float32, pos int) ([]float32, string) {
	c := a.opts.Capture
	if c == nil {
		return nil, ""
	}
	spec, _ := a.windowModel()
	reason := c.Want(t, r.Score, spec.Threshold)
	if reason == "" {
		return nil, ""
	}
	ch := a.spec.Channels
	w := make([]float32, len(ring))
	n := copy(w, ring[pos*ch:])
	copy(w[n:], ring[:pos*ch])
	return w, reason
}
