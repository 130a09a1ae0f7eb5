package agent

import (
	"context"
	"io"
	"log/slog"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// countingSource writes its read number into every channel and allocates nothing. With limit
// set, the read after the limit ends the run by calling stop.
type countingSource struct {
	rate, readHz float64
	channels     int
	n            atomic.Int64
	limit        int64
	stop         context.CancelFunc
}

func (s *countingSource) Read(ctx context.Context, dst []float32) (time.Time, error) {
	n := s.n.Add(1)
	if s.limit > 0 && n > s.limit {
		s.stop()
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	for i := range dst {
		dst[i] = float32(n)
	}
	return time.Unix(0, n), nil
}

func (s *countingSource) Info() sensor.Info {
	return sensor.Info{Kind: "counting", RateHz: s.rate, ReadHz: s.readHz, Channels: s.channels}
}
func (s *countingSource) Close() error { return nil }

// lastSample scores a window with its newest value, so a result names the sample that
// completed its window.
type lastSample struct {
	spec ModelSpec
	out  [1]float32
}

func (p *lastSample) Predict(w []float32) ([]float32, time.Duration, error) {
	p.out[0] = w[len(w)-1]
	return p.out[:], time.Microsecond, nil
}
func (p *lastSample) Model() wire.ModelRef { return wire.ModelRef{Name: "last", Version: "1"} }
func (p *lastSample) Spec() ModelSpec      { return p.spec }

// runSamplePath runs the sample and infer loops alone (no buffer, no uplink) until ctx ends
// and returns the results they produced.
func runSamplePath(t *testing.T, ctx context.Context, src sensor.Source, spec ModelSpec, queue int) []wire.Result {
	t.Helper()
	a := &Agent{
		opts: Options{Source: src, Predictor: &lastSample{spec: spec}, SensorBackoffMax: time.Second},
		spec: spec, model: wire.ModelRef{Name: "last", Version: "1"},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	q := newSampleQueue(queue, spec.Channels)
	out := make(chan inferred)
	sampleErr, inferErr := make(chan error, 1), make(chan error, 1)
	go func() { defer close(q.ch); sampleErr <- a.runSample(ctx, q) }()
	go func() { defer close(out); inferErr <- a.runInfer(q, out) }()
	var results []wire.Result
	for r := range out {
		results = append(results, r.r)
	}
	if err := <-sampleErr; err != nil {
		t.Fatal(err)
	}
	if err := <-inferErr; err != nil {
		t.Fatal(err)
	}
	return results
}

// The sensor's samples go to the model's window through fixed rings: at tens of thousands of
// samples a second, a slice per sample was most of the agent's garbage.
func TestSamplePathAllocatesNothingPerSample(t *testing.T) {
	const (
		samples = 200_000
		window  = 10_000
	)
	spec := ModelSpec{Window: window, Stride: window, Channels: 3, OutputKind: OutputAnomaly, Threshold: 0.5}
	measure := func() (mallocs uint64, results []wire.Result) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Unpaced (a replay at speed=max): every sample is read and none is dropped.
		src := &countingSource{rate: 1000, readHz: math.Inf(1), channels: 3, limit: samples, stop: cancel}
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		results = runSamplePath(t, ctx, src, spec, 4*window)
		runtime.ReadMemStats(&m1)
		return m1.Mallocs - m0.Mallocs, results
	}
	measure() // the first run pays for the goroutines' stacks growing
	mallocs, results := measure()
	if len(results) != samples/window {
		t.Fatalf("%d results from %d samples in windows of %d, want %d", len(results), samples, window, samples/window)
	}
	for i, r := range results {
		if want := float64((i + 1) * window); r.Score != want || !r.Time.Equal(time.Unix(0, int64(want))) {
			t.Fatalf("result %d: score %v at %v, want sample %v's value and time", i, r.Score, r.Time, want)
		}
	}
	// Each window allocates its result (a copy of the outputs, the model's name) and the
	// loops' start a few things; a slice per sample would be 200,000.
	perWindow := float64(mallocs) / float64(len(results))
	t.Logf("%d allocations for %d samples in %d windows (%.4f per sample)", mallocs, samples, len(results), float64(mallocs)/samples)
	if perWindow > 20 {
		t.Errorf("%d allocations for %d samples in %d windows: %.1f per window, want the sample path to allocate nothing",
			mallocs, samples, len(results), perWindow)
	}
}

// The queue's rings must never hand the consumer a slot the producer has refilled: every
// sample arrives whole and in order even when the producer runs ahead of a slow consumer.
func TestSampleQueueKeepsOrder(t *testing.T) {
	const samples = 50_000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &countingSource{rate: 1000, readHz: math.Inf(1), channels: 5, limit: samples, stop: cancel}
	spec := ModelSpec{Window: 1, Stride: 1, Channels: 5, OutputKind: OutputAnomaly, Threshold: 0.5}
	results := runSamplePath(t, ctx, src, spec, 3)
	if len(results) != samples {
		t.Fatalf("%d results, want %d", len(results), samples)
	}
	for i, r := range results {
		if want := float64(i + 1); r.Score != want || !r.Time.Equal(time.Unix(0, int64(i+1))) {
			t.Fatalf("result %d: score %v at %v, want sample %v", i, r.Score, r.Time, want)
		}
	}
}

// A source faster than the runtime's timers (about a millisecond) is read at its own rate, in
// bursts: a tick per read gave about 1,000 reads a second whatever the rate.
func TestFastSourceReadAtItsRate(t *testing.T) {
	const (
		rate = 20_000.0
		run  = 500 * time.Millisecond
	)
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	src := &countingSource{rate: rate, channels: 1}
	spec := ModelSpec{Window: 100, Stride: 100, Channels: 1, OutputKind: OutputAnomaly, Threshold: 0.5}
	start := time.Now()
	runSamplePath(t, ctx, src, spec, 4*spec.Window)
	elapsed := time.Since(start)
	got, due := src.n.Load(), rate*elapsed.Seconds()
	t.Logf("%d reads in %v of a %.0f Hz source (%.0f due)", got, elapsed.Round(time.Millisecond), rate, due)
	// Loose, for loaded machines: a read per tick would be about 500 here.
	if float64(got) < due/4 || float64(got) > due+1 {
		t.Errorf("%d reads in %v of a %.0f Hz source, want about %.0f", got, elapsed, rate, due)
	}
}

func TestQueueLen(t *testing.T) {
	tests := []struct {
		window       int
		rate, readHz float64
		want         int
	}{
		{4, 500, 0, 16},            // four windows when they fit in a second
		{64, 100, 0, 100},          // a second of a 100 Hz sensor
		{9216, 9216, 0, 9216},      // a one-second window: one window
		{64, 10, 0, 64},            // never less than a window
		{64, 50, math.Inf(1), 256}, // unpaced: four windows
		{1000, 100, 400, 1000},     // a replay at 4x: a second of reads, at least a window
		{1000, 9216, 0, 4000},      // 4 windows below a second
	}
	for _, tt := range tests {
		info := sensor.Info{Kind: "x", RateHz: tt.rate, ReadHz: tt.readHz, Channels: 1}
		if got := queueLen(tt.window, info); got != tt.want {
			t.Errorf("queueLen(%d, %v Hz read at %v) = %d, want %d", tt.window, tt.rate, tt.readHz, got, tt.want)
		}
	}
}

// TestInferWait: the infer loop sleeps for the samples its next window still lacks, within
// its bounds and never past half the queue; not at all for an unpaced source.
func TestInferWait(t *testing.T) {
	const ms = time.Millisecond
	us := func(n int) time.Duration { return time.Duration(n) * time.Microsecond }
	for _, c := range []struct {
		name                   string
		need, queued, capacity int
		interval               time.Duration
		want                   time.Duration
	}{
		{"unpaced source", 1000, 0, 4000, 0, 0},
		{"a window to come at 9,216 Hz, capped", 9216, 0, 9216, us(108), maxInferWait},
		{"100 ms to come", 1000, 0, 4000, us(100), 100 * ms},
		{"part queued already", 1000, 400, 4000, us(100), 60 * ms},
		{"all queued already", 1000, 1000, 4000, us(100), 0},
		{"more queued than needed", 10, 500, 4000, us(100), 0},
		{"less than the minimum to come", 15, 0, 4000, us(100), 0},
		{"exactly the minimum", 20, 0, 4000, us(100), 2 * ms},
		{"half the queue bounds it", 1000, 100, 400, us(100), 10 * ms},
		{"the queue half full", 1000, 200, 400, us(100), 0},
		{"a slow source, one sample to come", 1, 0, 100, 10 * ms, 10 * ms},
	} {
		if got := inferWait(c.need, c.queued, c.capacity, c.interval); got != c.want {
			t.Errorf("%s: inferWait(%d, %d, %d, %v) = %v, want %v", c.name, c.need, c.queued, c.capacity, c.interval, got, c.want)
		}
	}
}
