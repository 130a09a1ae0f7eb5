package agent_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func testSpec() agent.ModelSpec {
	return agent.ModelSpec{
		SampleRateHz: 500, Window: 4, Stride: 2, Channels: 1,
		Mean: []float32{1}, Std: []float32{2},
		OutputKind: agent.OutputAnomaly, Threshold: 10,
	}
}

type rig struct {
	src  *fakeSource
	pred *fakePredictor
	buf  *memBuffer
	up   *fakeUplink
	opts agent.Options
}

func newRig() *rig {
	r := &rig{
		src:  &fakeSource{rate: 500},
		pred: &fakePredictor{spec: testSpec()},
		buf:  &memBuffer{},
		up:   newFakeUplink(),
	}
	r.opts = agent.Options{
		DeviceID: "dev-1", AgentVersion: "test",
		Source: r.src, Predictor: r.pred, Buffer: r.buf, Uplink: r.up,
		HealthInterval: 50 * time.Millisecond,
		CommitInterval: 10 * time.Millisecond,
		AckTimeout:     200 * time.Millisecond,
	}
	return r
}

// start runs the agent until the test ends (or stop is called) and fails the test if Run
// returns an error.
func (r *rig) start(t *testing.T) (a *agent.Agent, stop func()) {
	t.Helper()
	a, err := agent.New(r.opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of cancel")
		}
	}
	t.Cleanup(stop)
	return a, stop
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name   string
		modify func(r *rig)
		want   string
	}{
		{"bad device id", func(r *rig) { r.opts.DeviceID = "a b" }, "device id"},
		{"no uplink", func(r *rig) { r.opts.Uplink = nil }, "required"},
		{"rate mismatch", func(r *rig) { r.src.rate = 100 }, "trained at 500 Hz"},
		{"zero rate", func(r *rig) { r.src.rate = 0; r.pred.spec.SampleRateHz = 0 }, "out of range"},
		{"negative read rate", func(r *rig) { r.src.read = -1 }, "read rate -1 Hz out of range"},
		{"read rate too high", func(r *rig) { r.src.read = 2e5 }, "read rate 200000 Hz out of range"},
		// Reading faster (a replay at speed 2) does not change the data's rate.
		{"rate mismatch read fast", func(r *rig) { r.src.rate, r.src.read = 250, 500 }, "samples at 250 Hz, model was trained at 500 Hz"},
		{"channels", func(r *rig) { r.pred.spec.Channels = 3; r.pred.spec.Mean, r.pred.spec.Std = nil, nil }, "gives 1 channels (fake.0), model wants 3"},
		{"stride", func(r *rig) { r.pred.spec.Stride = 0 }, "stride 0"},
		{"window", func(r *rig) { r.pred.spec.Window = 0 }, "window 0"},
		{"std", func(r *rig) { r.pred.spec.Std = []float32{0} }, "std of channel 0"},
		{"norm len", func(r *rig) { r.pred.spec.Mean = []float32{1, 2} }, "2 means"},
		{"output kind", func(r *rig) { r.pred.spec.OutputKind = "regress" }, `output kind "regress"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig()
			tt.modify(r)
			_, err := agent.New(r.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("New = %v, want one-line error containing %q", err, tt.want)
			}
		})
	}
}

func TestPipelineDeliversEverything(t *testing.T) {
	r := newRig()
	a, stop := r.start(t)
	eventually(t, "100 results acked", func() bool { return a.Stats().AckedSeq >= 100 })
	stop()

	st := a.Stats()
	// Every inference became exactly one committed result.
	if st.Inferences != st.LastSeq || st.Inferences < 100 {
		t.Fatalf("Stats: %d inferences, last seq %d; want equal and ≥ 100", st.Inferences, st.LastSeq)
	}
	// Windows: 4 samples of 1,2,3,… sliding by 2, normalized as (x-1)/2.
	ws := r.pred.windows()
	for i, w := range ws[:10] {
		first := float32(2*i + 1)
		want := []float32{(first - 1) / 2, first / 2, (first + 1) / 2, (first + 2) / 2}
		if !slices.Equal(w, want) {
			t.Fatalf("window %d = %v, want %v", i, w, want)
		}
	}
	// Results reached the uplink in order, each seq once (every batch was acked at once).
	seen := r.up.seqs()
	for seq := uint64(1); seq <= st.AckedSeq; seq++ {
		if seen[seq] != 1 {
			t.Fatalf("seq %d published %d times, want 1", seq, seen[seq])
		}
	}
	rs, _ := r.buf.Oldest(1)
	if len(rs) > 0 && rs[0].Seq != st.AckedSeq+1 {
		t.Fatalf("oldest buffered seq %d after ack %d", rs[0].Seq, st.AckedSeq)
	}
	// Scores follow the last sample, so the threshold (10 ⇒ sample ≥ 21) marks events.
	for _, b := range r.up.batches {
		for _, res := range b.Results {
			if res.Event != (res.Score >= 10) || (res.Label == "anomaly") != res.Event || res.Model != "fake@1" {
				t.Fatalf("result %+v: event/label inconsistent with score and threshold 10", res)
			}
		}
	}
	if st.P50 <= 0 || st.P50 > st.P95 || st.P95 > st.P99 || st.P99 > 7*time.Millisecond {
		t.Fatalf("latency percentiles p50 %v p95 %v p99 %v, want 0 < p50 ≤ p95 ≤ p99 ≤ 7ms", st.P50, st.P95, st.P99)
	}
	if st.SensorStatus != "ok" || st.SensorErrors != 0 {
		t.Fatalf("sensor status %q errors %d, want ok and 0", st.SensorStatus, st.SensorErrors)
	}
}

func TestHealthReports(t *testing.T) {
	r := newRig()
	a, stop := r.start(t)
	eventually(t, "two health reports with inferences", func() bool {
		hs := r.up.healthReports()
		return len(hs) >= 2 && hs[len(hs)-1].Inferences > 0 && hs[len(hs)-1].InferencesPerS > 0
	})
	stop()
	hs := r.up.healthReports()
	h := hs[len(hs)-1]
	if h.Device != "dev-1" || h.AgentVersion != "test" || h.Model.String() != "fake@1" || h.Model.SHA256 != "abc" ||
		h.UptimeSeconds <= 0 || h.LatencyP50Ms <= 0 || h.SensorStatus != "ok" || h.V != wire.SchemaVersion {
		t.Fatalf("health = %+v", h)
	}
	// 500 Hz with stride 2 is 250 inferences/s; allow for a loaded test machine.
	if h.InferencesPerS > 300 {
		t.Fatalf("InferencesPerS = %v, want ≤ 300", h.InferencesPerS)
	}
	if st := a.Stats(); st.PerSecond <= 0 {
		t.Fatalf("Stats().PerSecond = %v", st.PerSecond)
	}
}

func TestDisconnectedKeepsBuffering(t *testing.T) {
	r := newRig()
	r.up.setConnected(false)
	a, stop := r.start(t)
	eventually(t, "50 results buffered while disconnected", func() bool { return a.Stats().Buffered >= 50 })
	if len(r.up.seqs()) != 0 || len(r.up.healthReports()) != 0 {
		t.Fatal("published while disconnected")
	}
	if a.Stats().Connected {
		t.Fatal("Stats().Connected while disconnected")
	}
	r.up.setConnected(true)
	eventually(t, "buffer drained after reconnect", func() bool {
		st := a.Stats()
		return st.AckedSeq >= 50 && st.Connected
	})
	stop()
}

func TestUnackedBatchIsResent(t *testing.T) {
	r := newRig()
	r.up.dropAck = func(n int) bool { return n == 1 } // the controller misses the first batch
	a, stop := r.start(t)
	eventually(t, "results acked after a resend", func() bool { return a.Stats().AckedSeq >= 20 })
	stop()
	seen := r.up.seqs()
	if seen[1] < 2 {
		t.Fatalf("seq 1 published %d times, want ≥ 2 (resend after ack timeout)", seen[1])
	}
}

func TestSensorErrorsAreRetried(t *testing.T) {
	r := newRig()
	r.opts.SensorBackoffMax = 20 * time.Millisecond
	r.src.fail = func(n int) bool { return n <= 3 }
	a, stop := r.start(t)
	eventually(t, "inferences after sensor recovered", func() bool { return a.Stats().Inferences >= 5 })
	stop()
	st := a.Stats()
	if st.SensorErrors != 3 || st.SensorStatus != "ok" {
		t.Fatalf("sensor errors %d status %q, want 3 and ok", st.SensorErrors, st.SensorStatus)
	}
}

func TestSensorFailingReportsStatus(t *testing.T) {
	r := newRig()
	r.opts.SensorBackoffMax = 20 * time.Millisecond
	r.src.fail = func(int) bool { return true }
	a, stop := r.start(t)
	eventually(t, "sensor errors counted", func() bool { return a.Stats().SensorErrors >= 3 })
	stop()
	if st := a.Stats(); !strings.Contains(st.SensorStatus, "no ack") || st.Inferences != 0 {
		t.Fatalf("status %q, inferences %d; want the sensor error and none", st.SensorStatus, st.Inferences)
	}
}

func TestBufferFailureIsRetried(t *testing.T) {
	r := newRig()
	r.buf.setFail(errors.New("disk full"))
	a, stop := r.start(t)
	eventually(t, "append error reported", func() bool { return strings.Contains(a.Stats().LastError, "disk full") })
	if a.Stats().LastSeq != 0 {
		t.Fatal("results committed while the buffer fails")
	}
	n := a.Stats().Inferences
	r.buf.setFail(nil)
	eventually(t, "pending results committed after recovery", func() bool { return a.Stats().LastSeq >= n })
	stop()
	if st := a.Stats(); st.Dropped != 0 || st.LastSeq != st.Inferences {
		t.Fatalf("after recovery: dropped %d, last seq %d, inferences %d; want 0 and equal", st.Dropped, st.LastSeq, st.Inferences)
	}
}

// A failing buffer is retried once per commit interval, not once per new result: each retry
// encodes every pending result, so retrying per result made a full disk cost enough CPU to
// starve inference (the disk-full fault test saw over a thousand samples dropped).
func TestBufferFailureRetriedPerTick(t *testing.T) {
	r := newRig()
	r.opts.CommitMax = 16 // holds 16×16 results in memory: none shed here
	r.opts.CommitInterval = 100 * time.Millisecond
	r.buf.setFail(errors.New("disk full"))
	start := time.Now()
	a, stop := r.start(t)
	eventually(t, "many results pending", func() bool { return a.Stats().Inferences >= 100 })
	calls, n := r.buf.appendCalls(), a.Stats().Inferences
	ticks := int(time.Since(start) / r.opts.CommitInterval)
	r.buf.setFail(nil)
	stop()
	// One attempt per tick and one when CommitMax is first reached.
	if calls > ticks+1 {
		t.Fatalf("%d append attempts for %d results in %d commit intervals; want at most %d", calls, n, ticks, ticks+1)
	}
	if st := a.Stats(); st.LastSeq != st.Inferences || st.Dropped != 0 {
		t.Fatalf("after recovery: last seq %d, inferences %d, dropped %d; want all committed", st.LastSeq, st.Inferences, st.Dropped)
	}
}

func TestPredictErrorsCounted(t *testing.T) {
	r := newRig()
	r.pred.err = errors.New("tensor arena exhausted")
	a, stop := r.start(t)
	eventually(t, "predict errors", func() bool { return a.Stats().PredictErrors >= 3 })
	stop()
	if st := a.Stats(); !strings.Contains(st.LastError, "tensor arena") || st.LastSeq != 0 {
		t.Fatalf("last error %q, last seq %d", st.LastError, st.LastSeq)
	}
}

func TestRunTwice(t *testing.T) {
	r := newRig()
	a, stop := r.start(t)
	eventually(t, "running", func() bool { return a.Stats().Inferences > 0 })
	if err := a.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
	stop()
}

func TestStopDrainsBuffer(t *testing.T) {
	r := newRig()
	r.opts.CommitInterval = time.Second // results are still pending when the stop comes
	a, stop := r.start(t)
	eventually(t, "inferences", func() bool { return a.Stats().Inferences >= 20 })
	stop()
	st := a.Stats()
	if st.LastSeq != st.Inferences || st.AckedSeq != st.LastSeq || st.Buffered != 0 {
		t.Fatalf("after stop: inferences %d, last seq %d, acked %d, buffered %d; want all committed, sent and acked",
			st.Inferences, st.LastSeq, st.AckedSeq, st.Buffered)
	}
}

func TestStopWhileDisconnectedKeepsResults(t *testing.T) {
	r := newRig()
	r.up.setConnected(false)
	r.opts.DrainTimeout = time.Minute // must not be waited for: nothing can be sent
	a, stop := r.start(t)
	eventually(t, "inferences", func() bool { return a.Stats().Inferences >= 20 })
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stop took %v while disconnected", d)
	}
	st := a.Stats()
	if st.LastSeq != st.Inferences || st.Buffered != st.LastSeq {
		t.Fatalf("after stop: inferences %d, last seq %d, buffered %d; want all kept", st.Inferences, st.LastSeq, st.Buffered)
	}
}
