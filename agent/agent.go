package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/agent/drift"
	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sysstat"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Options configures an Agent. Source, Predictor, Buffer and Uplink are required; zero
// durations and sizes take the Default values below.
type Options struct {
	DeviceID     string
	AgentVersion string
	Source       sensor.Source
	Predictor    Predictor
	Buffer       Buffer
	Uplink       Uplink
	Logger       *slog.Logger // nil logs nothing

	HealthInterval   time.Duration // between retained health reports
	CommitInterval   time.Duration // group commit: longest a result waits before Append
	CommitMax        int           // group commit: most results per Append
	BatchMax         int           // most results per ResultBatch
	AckTimeout       time.Duration // resend unacked results after this long without an ack
	PublishTimeout   time.Duration // longest wait for one PUBACK
	DrainTimeout     time.Duration // on stop, longest wait to upload what is buffered
	SensorBackoffMax time.Duration // longest pause between reads of a failing sensor

	// DataDir is where the buffer lives; health reports its filesystem's free space. Empty
	// leaves the figure out.
	DataDir string
	// System reads CPU, memory and temperature for health; nil reads this process on the
	// real /proc and /sys.
	System *sysstat.Reader

	// Upload path. A batch holds at most BatchMax results and BatchBytes bytes of JSON; a
	// partial batch waits at most BatchDelay for more. Window batches may await the
	// controller's ack at once. MaxUploadRate caps results sent per second (0: no cap), so
	// a long backlog drains steadily instead of in one burst. Batches of at least CompressMin
	// bytes go gzipped on wire.LeafResultsZ (negative: never compress).
	BatchBytes    int
	BatchDelay    time.Duration
	Window        int
	MaxUploadRate float64
	CompressMin   int

	// Update, when set, reports the model update's state for health (agent/update).
	Update func() *wire.UpdateStatus
	// Unsigned marks a model run without a signature check (--allow-unsigned), in health.
	Unsigned bool
	// Drift, when set, monitors inputs and outputs for drift (agent/drift, driftpub.go).
	Drift DriftMonitor
	// DriftQueue, when set and the Uplink delivers drift acks (DriftAckSource), keeps drift
	// summaries durably until the controller acks them (agent/driftq); otherwise they are
	// published at most once. DriftResend is how often unacked summaries are sent again
	// (default DefaultDriftResend).
	DriftQueue  DriftQueue
	DriftResend time.Duration
	// Capture, when set, keeps windows for retraining (capture.go).
	Capture Capturer
}

// Defaults for zero Options fields.
const (
	DefaultHealthInterval   = 5 * time.Second
	DefaultCommitInterval   = 100 * time.Millisecond
	DefaultCommitMax        = 256
	DefaultBatchMax         = 1000
	DefaultBatchBytes       = 256 << 10
	DefaultBatchDelay       = 50 * time.Millisecond
	DefaultWindow           = 8
	DefaultCompressMin      = 2048
	DefaultAckTimeout       = 10 * time.Second
	DefaultPublishTimeout   = 10 * time.Second
	DefaultDrainTimeout     = 2 * time.Second
	DefaultSensorBackoffMax = 5 * time.Second
	DefaultDriftResend      = 10 * time.Second
)

// latencyRing is how many recent inference latencies the percentiles are taken over.
const latencyRing = 1024

// Agent runs the sample → infer → buffer → upload pipeline and reports health.
type Agent struct {
	opts  Options
	spec  ModelSpec
	model wire.ModelRef
	log   *slog.Logger

	running atomic.Bool

	inferences     atomic.Uint64
	predictErrors  atomic.Uint64
	sensorErrors   atomic.Uint64
	samplesDropped atomic.Uint64 // samples lost because inference fell behind
	unbuffered     atomic.Uint64 // results lost before commit because the buffer kept failing
	rejected       atomic.Uint64 // results the controller refused (wire.Ack.Rejected)
	redials        atomic.Uint64 // connections dropped and made again because acks stopped
	driftDropped   atomic.Uint64 // drift reports not published (driftpub.go)
	driftReports   chan *drift.Report
	driftKick      chan struct{}         // capacity 1: a queued summary waits (driftpub.go)
	driftPutErr    atomic.Pointer[error] // last drift queue write error, for runDrift to log

	// mu guards the fields below.
	mu           sync.Mutex
	start        time.Time                  // when Run began
	lat          [latencyRing]time.Duration // ring of recent inference latencies
	latN         int                        // number of valid entries in lat
	latNext      int                        // next slot to write
	scratch      [latencyRing]time.Duration // sorted copy for percentiles
	perSecond    float64                    // inference rate over the last health interval
	sensorStatus string
	lastErr      string
	lastErrAt    time.Time // when lastErr happened
	cpuPercent   float64   // this process's CPU use over the last health interval, % of one core
	rejectLogged time.Time // last warning about rejected results
}

// New checks opts and returns an Agent ready to Run. It starts nothing.
func New(opts Options) (*Agent, error) {
	if err := wire.ValidDeviceID(opts.DeviceID); err != nil {
		return nil, fmt.Errorf("new agent: %w", err)
	}
	if opts.Source == nil || opts.Predictor == nil || opts.Buffer == nil || opts.Uplink == nil {
		return nil, errors.New("new agent: Source, Predictor, Buffer and Uplink are all required")
	}
	spec := opts.Predictor.Spec()
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("new agent: %w", err)
	}
	info := opts.Source.Info()
	if info.Channels != spec.Channels {
		return nil, fmt.Errorf("new agent: sensor %s gives %d channels (%s), model wants %d",
			info.Kind, info.Channels, strings.Join(info.ChannelNames(), ", "), spec.Channels)
	}
	if !(info.RateHz > 0) || info.RateHz > 100000 {
		return nil, fmt.Errorf("new agent: sensor %s rate %v Hz out of range (0, 100000]", info.Kind, info.RateHz)
	}
	// ReadHz paces reads; the data's rate (RateHz) is what the model must match below.
	if r := info.ReadHz; r != 0 && !math.IsInf(r, 1) && (!(r > 0) || r > 100000) {
		return nil, fmt.Errorf("new agent: sensor %s read rate %v Hz out of range (0, 100000] (0: its sample rate, +Inf: as fast as possible)", info.Kind, r)
	}
	if spec.SampleRateHz > 0 && math.Abs(info.RateHz-spec.SampleRateHz) > 1e-9*spec.SampleRateHz {
		return nil, fmt.Errorf("new agent: sensor %s samples at %v Hz, model was trained at %v Hz", info.Kind, info.RateHz, spec.SampleRateHz)
	}
	setDefault(&opts.HealthInterval, DefaultHealthInterval)
	setDefault(&opts.CommitInterval, DefaultCommitInterval)
	setDefault(&opts.CommitMax, DefaultCommitMax)
	setDefault(&opts.BatchMax, DefaultBatchMax)
	setDefault(&opts.BatchBytes, DefaultBatchBytes)
	setDefault(&opts.BatchDelay, DefaultBatchDelay)
	setDefault(&opts.Window, DefaultWindow)
	setDefault(&opts.CompressMin, DefaultCompressMin)
	switch {
	case opts.BatchMax < 0, opts.BatchBytes < 0, opts.Window < 0, opts.BatchDelay < 0:
		return nil, fmt.Errorf("new agent: batch max %d, batch bytes %d, window %d and batch delay %v must not be negative",
			opts.BatchMax, opts.BatchBytes, opts.Window, opts.BatchDelay)
	case opts.MaxUploadRate < 0 || math.IsNaN(opts.MaxUploadRate) || math.IsInf(opts.MaxUploadRate, 0):
		return nil, fmt.Errorf("new agent: max upload rate %v results/s must be a finite number ≥ 0", opts.MaxUploadRate)
	}
	setDefault(&opts.AckTimeout, DefaultAckTimeout)
	setDefault(&opts.PublishTimeout, DefaultPublishTimeout)
	setDefault(&opts.DriftResend, DefaultDriftResend)
	setDefault(&opts.DrainTimeout, DefaultDrainTimeout)
	setDefault(&opts.SensorBackoffMax, DefaultSensorBackoffMax)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.System == nil {
		opts.System = sysstat.New(sysstat.Options{})
	}
	return &Agent{
		opts:         opts,
		spec:         spec,
		model:        opts.Predictor.Model(),
		log:          log,
		sensorStatus: "starting",
	}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// sampleQueue hands samples from the sample loop to the infer loop without allocating: the
// values and times live in rings of fixed slots, and the channel carries one empty element
// per sample. Both sides count samples from 0, so the nth sent sample is in slot n mod slots
// on both sides; the producer advances only when a send succeeds (a dropped sample's slot is
// reused).
//
// Why capacity+2 slots suffice (Go memory model: the kth receive on a channel of capacity C
// is synchronized before the completion of the (k+C)th send): the producer fills the slot of
// sample m after send m-1 completed, so after receive m-1-C, which the consumer makes only
// once it is done with sample m-2-C. Every sample up to m-2-C is therefore read, and with
// C+2 slots sample m reuses the slot of m-2-C.
type sampleQueue struct {
	ch       chan struct{} // one element per sample sent; the producer closes it
	done     chan struct{} // closed with ch: ends the infer loop's wait (inferWait)
	channels int
	vals     []float32   // slot i is vals[i*channels : (i+1)*channels]
	times    []time.Time // when slot i's sample was taken
}

// maxQueueDelay bounds how far, in the sensor's time, the samples waiting for the infer loop
// may reach back: a paced sensor's samples beyond it are dropped. Four windows of a
// one-second window (a 96×96×3 image at 9,216 Hz) took 1.3 MB of rings for a backlog the
// loop can only catch up from if inference takes less than the window's time anyway.
const maxQueueDelay = time.Second

// queueLen is how many samples wait for the infer loop at most: four windows, but no more
// than maxQueueDelay of a paced source and never less than one window. An unpaced source
// waits for the loop instead of dropping, so four windows suffice for it.
func queueLen(window int, info sensor.Info) int {
	interval := info.ReadInterval()
	if interval <= 0 {
		return 4 * window
	}
	return max(window, min(4*window, int(maxQueueDelay/interval)))
}

func newSampleQueue(capacity, channels int) *sampleQueue {
	slots := capacity + 2
	return &sampleQueue{
		ch:       make(chan struct{}, capacity),
		done:     make(chan struct{}),
		channels: channels,
		vals:     make([]float32, slots*channels),
		times:    make([]time.Time, slots),
	}
}

// slot returns the values and time of the nth sample (counted from 0).
func (q *sampleQueue) slot(n uint64) ([]float32, *time.Time) {
	i := int(n % uint64(len(q.times)))
	return q.vals[i*q.channels : (i+1)*q.channels : (i+1)*q.channels], &q.times[i]
}

// Run runs the agent's loops until ctx ends or a loop fails, then returns after every loop
// has stopped and every inferred result has been handed to Buffer.Append. While the uplink
// is connected it also keeps uploading for up to DrainTimeout after ctx ends, so that a
// clean stop leaves nothing unsent. It returns nil on a clean stop. Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	a.mu.Lock()
	a.start = time.Now()
	a.mu.Unlock()

	// Overflow policy: samples is bounded and the sample loop drops (and counts) a sample
	// when inference has fallen behind, since a sensor cannot be paused. results is bounded
	// and the infer loop blocks on it, so no produced result is discarded before commit;
	// the back-pressure lands on samples. committed has room for one wake-up, which is
	// enough because the upload loop always reads the buffer afresh.
	samples := newSampleQueue(queueLen(a.spec.Window, a.opts.Source.Info()), a.spec.Channels)
	results := make(chan inferred, 2*a.opts.CommitMax)
	committed := make(chan struct{}, 1)
	pipelineDone := make(chan struct{}) // closed when the last result is committed

	// Made before the infer loop starts, which sends to it (driftpub.go).
	a.driftReports = make(chan *drift.Report, driftQueue)
	a.driftKick = make(chan struct{}, 1)

	if r := a.opts.Buffer.Stats().Recovered; r != "" {
		a.setLastErr(errors.New(r))
		a.log.Warn("buffer file was damaged and replaced", "detail", r)
	}

	g, gctx := errgroup.WithContext(ctx)
	// The pipeline shuts down by closing channels front to back, so that every sample already
	// taken is inferred and every result is committed even when ctx has ended.
	g.Go(func() error {
		defer close(samples.done)
		defer close(samples.ch)
		return a.runSample(gctx, samples)
	})
	g.Go(func() error { defer close(results); return a.runInfer(samples, results) })
	g.Go(func() error { defer close(pipelineDone); return a.runCommit(results, committed) })
	g.Go(func() error { return a.runUpload(gctx, committed, pipelineDone) })
	g.Go(func() error { return a.runHealth(gctx) })
	if a.opts.Drift != nil {
		g.Go(func() error { return a.runDrift(gctx) })
	}
	if a.opts.Capture != nil {
		// Capture stops once the last result is committed, not when ctx ends, so the windows
		// of the final commit are stored too.
		g.Go(func() error {
			cctx, cancel := context.WithCancel(context.WithoutCancel(gctx))
			defer cancel()
			go func() {
				<-pipelineDone
				cancel()
			}()
			return a.opts.Capture.Run(cctx)
		})
	}
	return g.Wait()
}

// unpacedYield is how many reads an unpaced sample loop makes between two explicit yields to
// the scheduler, so replaying a file as fast as possible leaves the other loops CPU time.
const unpacedYield = 64

// minTick is the shortest ticker period the sample loop uses. The Go runtime sleeps at least
// a millisecond when it waits for a timer with nothing else to do (its poller waits in whole
// milliseconds), so a faster ticker delivers about 1,000 ticks a second whatever its period:
// a 9,216 Hz source read once a tick was sampled at about a tenth of its rate.
const minTick = time.Millisecond

// maxCatchUp bounds catching up: after a stall (the process stopped, the machine overloaded)
// at most this much time's worth of reads (and at least one) is made at once, and the reads
// owed beyond that are skipped, as a ticker skips the ticks its reader missed.
const maxCatchUp = 100 * time.Millisecond

// runSample reads the sensor until ctx ends: at Info().ReadInterval(), or, for a source
// that is read as fast as possible (a replay at speed=max), back to back, waiting for the
// infer loop instead of dropping samples. A paced source is read on a ticker of at least
// minTick; each tick makes the reads that have come due since the loop started, so a source
// faster than the ticker is read in bursts at its full rate (live sensors that fast buffer
// their samples in hardware).
func (a *Agent) runSample(ctx context.Context, q *sampleQueue) error {
	info := a.opts.Source.Info()
	interval := info.ReadInterval()
	var (
		tick     <-chan time.Time
		t0       time.Time // when pacing started: read k is due at t0 + k·interval
		owed     int64     // reads due up to the last tick, made or skipped
		maxBurst int64
	)
	if interval > 0 {
		period := interval
		if period < minTick {
			period *= (minTick + interval - 1) / interval
		}
		maxBurst = max(1, int64(maxCatchUp/interval))
		// Taken before the ticker starts, so tick k comes no earlier than read k's time.
		t0 = time.Now()
		ticker := time.NewTicker(period)
		defer ticker.Stop()
		tick = ticker.C
	}
	wait := time.NewTimer(0) // unpaced: sleeps out a failing sensor's backoff
	defer wait.Stop()
	var (
		backoff time.Duration
		retryAt time.Time
		ok      bool   // last read succeeded
		reads   uint64 // reads since start, for the unpaced yield
		sent    uint64 // samples handed to the infer loop: the next one goes in q.slot(sent)
	)
	// read makes one read into the next slot and queues it; it reports false when the read
	// failed (the caller then waits out the backoff) or ctx ended.
	read := func() bool {
		vals, at := q.slot(sent)
		t, err := a.opts.Source.Read(ctx, vals)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			a.sensorErrors.Add(1)
			ok = false
			backoff = min(max(2*backoff, interval, 100*time.Millisecond), a.opts.SensorBackoffMax)
			retryAt = time.Now().Add(backoff)
			a.mu.Lock()
			a.sensorStatus = err.Error()
			a.mu.Unlock()
			// One line per failed attempt, and attempts are spaced by the backoff.
			a.log.Warn("sensor read", "sensor", info.Kind, "err", err, "retry_in", backoff)
			return false
		}
		if !ok {
			ok, backoff = true, 0
			a.mu.Lock()
			a.sensorStatus = "ok"
			a.mu.Unlock()
		}
		*at = t
		if tick == nil {
			// An unpaced source can wait: nothing is lost by reading it later.
			select {
			case q.ch <- struct{}{}:
				sent++
				return true
			case <-ctx.Done():
				return false
			}
		}
		select {
		case q.ch <- struct{}{}:
			sent++
		default:
			if a.samplesDropped.Add(1) == 1 {
				a.log.Warn("inference is falling behind the sensor; dropping samples")
			}
		}
		return true
	}
	for {
		if tick != nil {
			var now time.Time
			select {
			case <-ctx.Done():
				return nil
			case now = <-tick:
			}
			due := int64(now.Sub(t0)/interval) - owed
			owed += due
			if now.Before(retryAt) {
				continue
			}
			// A burst never overfills the queue on its own: the infer loop may simply not
			// have run yet. The reads beyond its room are skipped like the rest, but one read
			// is always made, so a queue that stays full counts dropped samples as before.
			room := int64(cap(q.ch) - len(q.ch))
			for range min(due, maxBurst, max(room, 1)) {
				if !read() {
					break
				}
			}
			continue
		}
		if d := time.Until(retryAt); d > 0 {
			wait.Reset(d)
			select {
			case <-ctx.Done():
				return nil
			case <-wait.C:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if reads++; reads%unpacedYield == 0 {
			runtime.Gosched()
		}
		read()
	}
}

// runInfer slides the model's window over the samples and sends one result per stride. It
// returns when in is closed.
func (a *Agent) runInfer(q *sampleQueue, out chan<- inferred) error {
	w, c, stride := a.spec.Window, a.spec.Channels, a.spec.Stride
	ring := make([]float32, w*c) // raw samples, ring[pos*c:] is the oldest once full
	window := make([]float32, w*c)
	pos, filled, since := 0, 0, 0
	var (
		errLogged time.Time
		received  uint64 // samples taken from q: the next one is in q.slot(received)
	)
	interval := a.opts.Source.Info().ReadInterval()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()
	for {
		if d := inferWait(max(w-filled, stride-since), len(q.ch), cap(q.ch), interval); d > 0 {
			wait.Reset(d)
			select {
			case <-wait.C:
			case <-q.done:
			}
		}
		if _, ok := <-q.ch; !ok {
			return nil
		}
		vals, at := q.slot(received)
		received++
		t := *at
		copy(ring[pos*c:(pos+1)*c], vals)
		pos = (pos + 1) % w
		filled = min(filled+1, w)
		since++
		if filled < w || since < stride {
			continue
		}
		since = 0
		a.normalize(window, ring, pos)
		out0, lat, err := a.opts.Predictor.Predict(window)
		if err != nil {
			a.predictErrors.Add(1)
			a.setLastErr(fmt.Errorf("predict: %w", err))
			if time.Since(errLogged) > time.Minute {
				errLogged = time.Now()
				a.log.Error("predict", "model", a.model.String(), "err", err)
			}
			continue
		}
		a.inferences.Add(1)
		a.recordLatency(lat)
		a.observeDrift(t, ring, out0)
		r, err := a.result(t, out0, lat)
		if err != nil {
			a.predictErrors.Add(1)
			a.setLastErr(err)
			continue
		}
		w, why := a.wantCapture(t, &r, ring, pos)
		out <- inferred{r: r, window: w, capture: why}
	}
}

// Bounds of the infer loop's wait (inferWait).
const (
	minInferWait = 2 * time.Millisecond
	maxInferWait = 250 * time.Millisecond
)

// inferWait is how long the infer loop sleeps before taking its next sample, when need more
// samples make the next window, queued are waiting and the queue holds capacity: as long as
// the missing ones take to arrive from a source read every interval, so that the loop wakes
// once a window rather than on every tick of the sample loop (about 1,000 a second for a
// fast source; each wake-up of a parked goroutine is a futex call and a trip through the
// scheduler on both sides, which was most of the agent's CPU at one inference a second).
// It never lets the queue get more than half full meanwhile (the sample loop drops when
// it is full), never sleeps beyond maxInferWait, and waits not at all for an unpaced source,
// for less than minInferWait, or when the samples are already there.
func inferWait(need, queued, capacity int, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	n := min(need-queued, capacity/2-queued)
	if n <= 0 {
		return 0
	}
	d := min(time.Duration(n)*interval, maxInferWait)
	if d < minInferWait {
		return 0
	}
	return d
}

// normalize writes ring, starting at its oldest sample pos, into dst in time order with the
// model's per-channel normalization applied.
func (a *Agent) normalize(dst, ring []float32, pos int) {
	c := a.spec.Channels
	n := copy(dst, ring[pos*c:])
	copy(dst[n:], ring[:pos*c])
	if len(a.spec.Mean) == 0 && len(a.spec.Std) == 0 {
		return
	}
	for i := range dst {
		ch := i % c
		if len(a.spec.Mean) > 0 {
			dst[i] -= a.spec.Mean[ch]
		}
		if len(a.spec.Std) > 0 {
			dst[i] /= a.spec.Std[ch]
		}
	}
}

// result turns model outputs into a wire.Result (Seq is assigned by the Buffer), read the
// way the model that ran the window says (a Swap may change it between windows).
func (a *Agent) result(t time.Time, out []float32, lat time.Duration) (wire.Result, error) {
	// JSON cannot carry NaN or ±Inf: such a result could never be buffered or sent.
	for i, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return wire.Result{}, fmt.Errorf("predict: model output %d is %v", i, v)
		}
	}
	spec, model := a.windowModel()
	label, event, score, err := Outcome(spec, out)
	if err != nil {
		return wire.Result{}, err
	}
	return wire.Result{
		Time:      t,
		Model:     model.String(),
		Outputs:   slices.Clone(out),
		LatencyUs: lat.Microseconds(),
		Score:     score,
		Label:     label,
		Event:     event,
	}, nil
}

// runCommit group-commits results into the Buffer every CommitInterval or CommitMax results,
// and wakes the upload loop after each commit. It returns when in is closed, after a last
// commit.
func (a *Agent) runCommit(in <-chan inferred, committed chan<- struct{}) error {
	tick := time.NewTicker(a.opts.CommitInterval)
	defer tick.Stop()
	// While the buffer fails, pending keeps at most this many results and then sheds the
	// oldest: they were never committed, so no sequence number is lost.
	maxPending := 16 * a.opts.CommitMax
	pending := make([]wire.Result, 0, a.opts.CommitMax)
	// captured holds the windows of pending results the Capturer wants, by index in pending;
	// it stays empty (and allocates nothing) while capture is off.
	type heldWindow struct {
		i       int
		window  []float32
		capture string
	}
	var captured []heldWindow
	var failing bool
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := a.opts.Buffer.Append(pending); err != nil {
			a.setLastErr(fmt.Errorf("buffer append: %w", err))
			if !failing {
				failing = true
				a.log.Error("buffer append; will retry", "pending", len(pending), "err", err)
			}
			if over := len(pending) - maxPending; over > 0 {
				a.unbuffered.Add(uint64(over))
				pending = append(pending[:0], pending[over:]...)
				kept := captured[:0]
				for _, h := range captured {
					if h.i -= over; h.i >= 0 {
						kept = append(kept, h)
					}
				}
				captured = kept
			}
			return err
		}
		for _, h := range captured {
			a.opts.Capture.Keep(h.window, h.capture, pending[h.i])
		}
		clear(captured)
		captured = captured[:0]
		if failing {
			failing = false
			a.log.Info("buffer append recovered")
		}
		a.log.Debug("committed", "results", len(pending), "last_seq", pending[len(pending)-1].Seq)
		clear(pending)
		pending = pending[:0]
		select {
		case committed <- struct{}{}:
		default:
		}
		return nil
	}
	for {
		select {
		case r, ok := <-in:
			if !ok {
				if err := flush(); err != nil {
					return fmt.Errorf("final commit of %d results: %w", len(pending), err)
				}
				return nil
			}
			if r.window != nil {
				captured = append(captured, heldWindow{len(pending), r.window, r.capture})
			}
			pending = append(pending, r.r)
			// While the buffer fails, only the tick retries: retrying on every new result
			// would encode up to maxPending results per result, eating the CPU that
			// inference needs, so the sensor's samples would be dropped as well.
			if len(pending) >= a.opts.CommitMax && !failing {
				_ = flush() // an error is recorded and retried on the next tick
			}
		case <-tick.C:
			_ = flush()
		}
	}
}

// runHealth publishes a retained health report every HealthInterval while connected.
func (a *Agent) runHealth(ctx context.Context) error {
	tick := time.NewTicker(a.opts.HealthInterval)
	defer tick.Stop()
	prevN, prevT := a.inferences.Load(), time.Now()
	// A failed read (not Linux, /proc hidden) leaves CPU at 0 rather than stopping health.
	prevProc, procErr := a.opts.System.Process()
	recoveredSent := a.opts.Buffer.Stats().Recovered == ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			n := a.inferences.Load()
			proc, err := a.opts.System.Process()
			a.mu.Lock()
			a.perSecond = float64(n-prevN) / now.Sub(prevT).Seconds()
			a.cpuPercent = 0
			if err == nil && procErr == nil {
				a.cpuPercent = sysstat.CPUPercent(prevProc, proc)
			}
			a.mu.Unlock()
			prevN, prevT = n, now
			prevProc, procErr = proc, err
		}
		// The link's standing problem (refused credentials, a refused ack subscription) is
		// current for as long as it lasts.
		if le, ok := a.opts.Uplink.(interface{ Err() error }); ok {
			if err := le.Err(); err != nil {
				a.setLastErr(err)
			}
		}
		if !a.opts.Uplink.Connected() {
			continue
		}
		if !recoveredSent {
			recoveredSent = a.publishRecovered(ctx)
		}
		h := a.Health()
		payload, err := wire.Encode(&h)
		if err != nil {
			return fmt.Errorf("encode health: %w", err)
		}
		pctx, cancel := context.WithTimeout(ctx, a.opts.PublishTimeout)
		err = a.opts.Uplink.Publish(pctx, wire.LeafHealth, payload, true)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.log.Debug("publish health", "err", err)
		}
	}
}

// publishRecovered announces a replaced buffer file as an event; it reports whether the event
// went out (else it is tried again on the next report).
func (a *Agent) publishRecovered(ctx context.Context) bool {
	payload, err := wire.Encode(&wire.Event{
		Device: a.opts.DeviceID, Time: time.Now().UTC(),
		Kind: wire.EventBufferRecovered, Reason: a.opts.Buffer.Stats().Recovered,
	})
	if err != nil {
		return true // cannot happen for these types; never retry a message that cannot encode
	}
	pctx, cancel := context.WithTimeout(ctx, a.opts.PublishTimeout)
	defer cancel()
	if err := a.opts.Uplink.Publish(pctx, wire.LeafEvents, payload, false); err != nil {
		a.log.Debug("publish event", "err", err)
		return false
	}
	// A buffer that keeps the note across restarts forgets it now that it is announced.
	if c, ok := a.opts.Buffer.(interface{ ClearRecovered() error }); ok {
		if err := c.ClearRecovered(); err != nil {
			a.log.Warn("forget announced buffer replacement", "err", err)
		}
	}
	return true
}

func (a *Agent) setLastErr(err error) {
	a.mu.Lock()
	a.lastErr = err.Error()
	a.lastErrAt = time.Now()
	a.mu.Unlock()
}

// recordLatency stores d in the ring without allocating.
func (a *Agent) recordLatency(d time.Duration) {
	a.mu.Lock()
	a.lat[a.latNext] = d
	a.latNext = (a.latNext + 1) % latencyRing
	a.latN = min(a.latN+1, latencyRing)
	a.mu.Unlock()
}

// percentilesLocked returns the nearest-rank p50, p95 and p99 of the recent latencies.
func (a *Agent) percentilesLocked() (p50, p95, p99 time.Duration) {
	if a.latN == 0 {
		return 0, 0, 0
	}
	s := a.scratch[:a.latN]
	copy(s, a.lat[:a.latN])
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(i, 0)]
	}
	return rank(0.50), rank(0.95), rank(0.99)
}

// Stats is a point-in-time view of an Agent, for tables and tests.
type Stats struct {
	Device         string
	Model          wire.ModelRef
	Uptime         time.Duration
	Inferences     uint64  // since start
	PerSecond      float64 // over the last health interval
	P50, P95, P99  time.Duration
	Buffered       uint64 // results awaiting ack
	Oldest         time.Time
	LastSeq        uint64
	AckedSeq       uint64
	Dropped        uint64 // results discarded by retention or lost before commit
	Quarantined    uint64 // damaged buffer records set aside, over the life of the buffer
	Rejected       uint64 // results the controller refused, since start
	EpochRenewals  uint64 // new epochs opened after an ack beyond the last seq
	Redials        uint64 // connections dropped and made again because acks stopped, since start
	Recovered      string // set when the buffer was found damaged at start and replaced
	SamplesDropped uint64 // samples discarded because inference fell behind
	SensorErrors   uint64
	PredictErrors  uint64
	SensorStatus   string
	Connected      bool
	LastError      string
	LastErrorAt    time.Time // zero when LastError is empty
}

// Stats returns a snapshot; it is safe to call from any goroutine.
func (a *Agent) Stats() Stats {
	bs := a.opts.Buffer.Stats()
	s := Stats{
		Device:         a.opts.DeviceID,
		Model:          a.activeModel(),
		Inferences:     a.inferences.Load(),
		Buffered:       bs.Len,
		Oldest:         bs.Oldest,
		LastSeq:        bs.LastSeq,
		AckedSeq:       bs.AckedSeq,
		Dropped:        bs.Dropped + a.unbuffered.Load(),
		Quarantined:    bs.Quarantined,
		Rejected:       a.rejected.Load(),
		EpochRenewals:  bs.EpochRenewals,
		Redials:        a.redials.Load(),
		Recovered:      bs.Recovered,
		SamplesDropped: a.samplesDropped.Load(),
		SensorErrors:   a.sensorErrors.Load(),
		PredictErrors:  a.predictErrors.Load(),
		Connected:      a.opts.Uplink.Connected(),
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.start.IsZero() {
		s.Uptime = time.Since(a.start)
	}
	s.PerSecond = a.perSecond
	s.P50, s.P95, s.P99 = a.percentilesLocked()
	s.SensorStatus = a.sensorStatus
	s.LastError = a.lastErr
	s.LastErrorAt = a.lastErrAt
	return s
}

// Health derives the wire health report from the current Stats.
func (a *Agent) Health() wire.Health {
	s := a.Stats()
	now := time.Now()
	h := wire.Health{
		Device:          s.Device,
		Time:            now.UTC(),
		AgentVersion:    a.opts.AgentVersion,
		Model:           s.Model,
		UptimeSeconds:   s.Uptime.Seconds(),
		Inferences:      s.Inferences,
		InferencesPerS:  s.PerSecond,
		LatencyP50Ms:    ms(s.P50),
		LatencyP95Ms:    ms(s.P95),
		LatencyP99Ms:    ms(s.P99),
		Buffered:        s.Buffered,
		Dropped:         s.Dropped,
		LastSeq:         s.LastSeq,
		AckedSeq:        s.AckedSeq,
		SensorStatus:    s.SensorStatus,
		SensorErrors:    s.SensorErrors,
		LastError:       s.LastError,
		SamplesDropped:  s.SamplesDropped,
		PredictErrors:   s.PredictErrors,
		Quarantined:     s.Quarantined,
		Rejected:        s.Rejected,
		EpochRenewals:   s.EpochRenewals,
		LinkRedials:     s.Redials,
		BufferRecovered: s.Recovered,
		Unsigned:        a.opts.Unsigned,
	}
	if a.opts.Update != nil {
		h.Update = a.opts.Update()
	}
	if c, ok := a.opts.Capture.(captureCounter); ok {
		h.CaptureBuffered, h.CaptureDropped = c.BufferCounts()
	}
	if !s.LastErrorAt.IsZero() {
		h.LastErrorAt = s.LastErrorAt.UTC()
	}
	if !s.Oldest.IsZero() {
		h.OldestBufferedS = max(now.Sub(s.Oldest).Seconds(), 0)
	}
	a.mu.Lock()
	h.CPUPercent = a.cpuPercent
	a.mu.Unlock()
	// Host figures are best effort: one that cannot be read is left out of the report.
	if p, err := a.opts.System.Process(); err == nil {
		h.RSSBytes = p.RSS
	}
	if a.opts.DataDir != "" {
		if free, err := sysstat.DiskFree(a.opts.DataDir); err == nil {
			h.DiskFreeBytes = &free
		}
	}
	if t, err := a.opts.System.SoCTemp(); err == nil {
		h.SoCTempC = &t.Celsius
	}
	return h
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
