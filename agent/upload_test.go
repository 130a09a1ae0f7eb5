package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// backlog puts n results in the rig's buffer before the agent starts.
func (r *rig) backlog(t *testing.T, n int) {
	t.Helper()
	rs := make([]wire.Result, n)
	for i := range rs {
		rs[i] = wire.Result{Time: time.Unix(int64(i), 0), Model: "fake@1", Score: 0.5, Label: "normal", Outputs: []float32{0.5}}
	}
	if err := r.buf.Append(rs); err != nil {
		t.Fatal(err)
	}
}

func TestBacklogBatchedCompressedInOrder(t *testing.T) {
	r := newRig()
	r.buf.epoch = 42
	r.src.limit = 1 // the sensor goes quiet: only the backlog is sent
	r.backlog(t, 2500)
	r.opts.BatchMax = 1000
	a, stop := r.start(t)
	eventually(t, "backlog acked", func() bool { return a.Stats().AckedSeq >= 2500 })
	stop()
	r.up.mu.Lock()
	defer r.up.mu.Unlock()
	var prev uint64
	for i, b := range r.up.batches {
		if len(b.Results) > 1000 {
			t.Fatalf("batch %d holds %d results, BatchMax 1000", i, len(b.Results))
		}
		if b.Results[0].Seq != prev+1 {
			t.Fatalf("batch %d starts at seq %d after %d: not oldest first", i, b.Results[0].Seq, prev)
		}
		prev = b.Results[len(b.Results)-1].Seq
		if b.Epoch != 42 {
			t.Fatalf("batch %d epoch %d, want the buffer's 42", i, b.Epoch)
		}
	}
	if len(r.up.batches) != 3 || r.up.compressed != 3 {
		t.Fatalf("%d batches, %d compressed; want 3 full-size gzipped batches", len(r.up.batches), r.up.compressed)
	}
}

func TestBatchBytesBound(t *testing.T) {
	r := newRig()
	r.src.limit = 1
	r.backlog(t, 300)
	r.opts.BatchBytes = 4096
	r.opts.CompressMin = -1 // never compress: the plain leaf carries everything
	a, stop := r.start(t)
	eventually(t, "backlog acked", func() bool { return a.Stats().AckedSeq >= 300 })
	stop()
	r.up.mu.Lock()
	defer r.up.mu.Unlock()
	if r.up.compressed != 0 {
		t.Fatalf("%d batches compressed with CompressMin -1", r.up.compressed)
	}
	for i, b := range r.up.batches {
		p, _ := wire.Encode(&b)
		if len(p) > 4096 {
			t.Fatalf("batch %d is %d bytes, BatchBytes 4096", i, len(p))
		}
	}
	if len(r.up.batches) < 300*100/4096 {
		t.Fatalf("only %d batches for 300 results within 4 KiB each", len(r.up.batches))
	}
}

// TestUploadRateLimit drains a backlog under MaxUploadRate and checks the pace, and that
// health keeps going out meanwhile.
func TestUploadRateLimit(t *testing.T) {
	r := newRig()
	r.src.limit = 1
	r.backlog(t, 1000)
	r.opts.MaxUploadRate = 2000 // results/s: the backlog takes about 0.5 s
	r.opts.BatchMax = 100
	start := time.Now()
	a, stop := r.start(t)
	eventually(t, "backlog acked", func() bool { return a.Stats().AckedSeq >= 1000 })
	took := time.Since(start)
	stop()
	// One second's worth (the burst) may go at once; the rest at the rate.
	if took < 350*time.Millisecond {
		t.Fatalf("1000 results at 2000/s went in %v, want ≥ 0.35 s", took)
	}
	if n := len(r.up.healthReports()); n < 3 {
		t.Fatalf("%d health reports while the backlog drained for %v at a 50 ms interval", n, took)
	}
}

// TestWindowPipelines: with a controller that acks slowly, several batches are published
// before the first ack comes back, but never more than Window.
func TestWindowPipelines(t *testing.T) {
	r := newRig()
	r.src.limit = 1
	r.backlog(t, 2000)
	r.opts.BatchMax = 100
	r.opts.Window = 4
	held := make(chan struct{}) // the controller stores but does not ack until it is closed
	r.up.holdAcks = held
	a, stop := r.start(t)
	eventually(t, "a full window published", func() bool { return len(r.up.seqs()) >= 400 })
	time.Sleep(50 * time.Millisecond) // give a wrongly unbounded sender the chance to overrun
	if got := len(r.up.seqs()); got != 400 {
		t.Fatalf("%d results published with no ack yet, want exactly the window of 4×100", got)
	}
	close(held) // the agent resends after AckTimeout, and now gets its acks
	eventually(t, "backlog acked", func() bool { return a.Stats().AckedSeq >= 2000 })
	stop()
}

func TestNewRejectsBadUploadOptions(t *testing.T) {
	tests := []struct {
		name   string
		modify func(o *agent.Options)
		want   string
	}{
		{"negative rate", func(o *agent.Options) { o.MaxUploadRate = -1 }, "max upload rate"},
		{"negative window", func(o *agent.Options) { o.Window = -1 }, "window -1"},
		{"negative batch", func(o *agent.Options) { o.BatchMax = -5 }, "batch max -5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig()
			tt.modify(&r.opts)
			_, err := agent.New(r.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestForeignAckBeyondLastIgnored(t *testing.T) {
	r := newRig()
	r.up.dropAck = func(int) bool { return true } // the real acks never come
	a, stop := r.start(t)
	eventually(t, "results committed", func() bool { return a.Stats().LastSeq >= 5 })
	r.up.acks <- wire.Ack{Seq: 1 << 40, Epoch: r.buf.epoch}
	eventually(t, "bad ack reported", func() bool { return strings.Contains(a.Stats().LastError, "beyond the last") })
	stop()
	if st := a.Stats(); st.AckedSeq != 0 || st.Buffered != st.LastSeq {
		t.Fatalf("after a bogus ack: acked %d, buffered %d of %d; want nothing deleted", st.AckedSeq, st.Buffered, st.LastSeq)
	}
}

// TestAckDeletionsMerged: with an ack for every small batch, the buffer still sees at most
// about one deletion a second (each is a commit with its fsyncs), and a clean stop applies the
// last ack at once rather than after the gap.
func TestAckDeletionsMerged(t *testing.T) {
	t.Parallel()
	r := newRig()
	r.opts.BatchMax = 2 // many batches, each acked
	a, stop := r.start(t)
	start := time.Now()
	eventually(t, "results acked", func() bool { return a.Stats().AckedSeq >= 100 })
	time.Sleep(1500 * time.Millisecond) // acks keep coming meanwhile
	r.up.mu.Lock()
	batches := len(r.up.batches)
	r.up.mu.Unlock()
	stopAt := time.Now()
	stop()
	if d := time.Since(stopAt); d > 800*time.Millisecond {
		t.Errorf("stop took %v: the last deletion waited out its gap", d)
	}
	elapsed := time.Since(start)
	r.buf.mu.Lock()
	acks, acked, last := r.buf.acks, r.buf.st.AckedSeq, r.buf.st.LastSeq
	r.buf.mu.Unlock()
	// One at the start of each second of the run, one at the stop.
	if most := int(elapsed/time.Second) + 2; acks > most {
		t.Fatalf("%d deletions in %v for %d acked batches: want at most %d", acks, elapsed.Round(time.Millisecond), batches, most)
	}
	if acked != last {
		t.Fatalf("after a clean stop the buffer is acked through %d of %d: the last ack was not applied", acked, last)
	}
	t.Logf("%d acked batches, %d deletions in %v", batches, acks, elapsed.Round(time.Millisecond))
}
