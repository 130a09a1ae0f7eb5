package agent_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// syncLog collects log output from several goroutines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAckStallReported: publishes go through but no ack ever comes (a controller that is down,
// an ACL that keeps acks from the device): after a few ack timeouts the agent says so in
// last_error and the log instead of resending in silence; an ack clears the stall.
func TestAckStallReported(t *testing.T) {
	r := newRig()
	logs := &syncLog{}
	r.opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	r.up.dropAck = func(int) bool { return true }
	a, _ := r.start(t)
	eventually(t, "stall reported", func() bool { return strings.Contains(a.Stats().LastError, "no ack from the controller") })
	if !strings.Contains(logs.String(), "acks stopped") {
		t.Fatalf("no warning in the log:\n%s", logs)
	}
	if s := a.Stats().LastError; !strings.Contains(s, wire.ControllerTopic("dev-1", wire.LeafAck)) {
		t.Fatalf("last_error %q does not name the ack topic", s)
	}
	r.up.mu.Lock()
	r.up.dropAck = nil
	r.up.mu.Unlock()
	eventually(t, "acks flowing again", func() bool { return strings.Contains(logs.String(), "acks flowing again") })
}

// TestRejectedResultsCounted: results the controller refuses come back in Ack.Rejected; the
// agent deletes them with the ack, counts them, says why in last_error and logs each reason.
func TestRejectedResultsCounted(t *testing.T) {
	r := newRig()
	logs := &syncLog{}
	r.opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	r.up.reject = func(seq uint64) string {
		if seq == 3 || seq == 4 {
			return "score out of range"
		}
		return ""
	}
	a, stop := r.start(t)
	eventually(t, "rejections counted", func() bool { return a.Stats().Rejected >= 2 && a.Stats().AckedSeq >= 10 })
	stop()
	s := a.Stats()
	if s.Rejected != 2 {
		t.Fatalf("Rejected = %d, want 2: each rejected seq counted once", s.Rejected)
	}
	if !strings.Contains(s.LastError, "score out of range") && !strings.Contains(logs.String(), "score out of range") {
		t.Fatalf("reason not reported: last_error %q, log:\n%s", s.LastError, logs)
	}
	if !strings.Contains(logs.String(), "seq=3") || !strings.Contains(logs.String(), "seq=4") {
		t.Fatalf("log does not name each rejected seq:\n%s", logs)
	}
	if h := a.Health(); h.Rejected != s.Rejected {
		t.Fatalf("health rejected %d, stats %d", h.Rejected, s.Rejected)
	}
}

// TestLinkErrorInHealth: the link's standing problem (refused credentials, a refused
// subscription) shows in last_error.
func TestLinkErrorInHealth(t *testing.T) {
	r := newRig()
	r.up.err = errors.New("mqtt authentication refused by tcp://x:1883 for username \"dev-1\"")
	a, _ := r.start(t)
	eventually(t, "link error in health", func() bool { return strings.Contains(a.Health().LastError, "authentication refused") })
}

// TestRolledBackBufferRenewsEpoch: the controller already holds seqs up to 1000 of this
// buffer's epoch (the buffer file went back to an older state). Its ack is beyond the last
// assigned seq; the agent opens a new epoch, renumbers what it holds, and every result reaches
// the controller in the new epoch instead of being taken for a duplicate. The old-epoch ack
// is not looped on.
func TestRolledBackBufferRenewsEpoch(t *testing.T) {
	r := newRig()
	buf, err := boltbuf.Open(filepath.Join(t.TempDir(), "buffer.db"), boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	r.opts.Buffer = buf
	old := buf.Epoch()
	r.up.contiguous = map[uint64]uint64{old: 1000}
	logs := &syncLog{}
	r.opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	a, stop := r.start(t)
	eventually(t, "new epoch", func() bool { return buf.Epoch() != old })
	eventually(t, "results stored in the new epoch", func() bool {
		st := buf.Stats()
		return st.AckedSeq >= 20 && r.up.storedIn(st.Epoch, st.AckedSeq)
	})
	stop()
	st := buf.Stats()
	if st.EpochRenewals != 1 || a.Health().EpochRenewals != 1 {
		t.Fatalf("renewals: buffer %d, health %d; want 1", st.EpochRenewals, a.Health().EpochRenewals)
	}
	if !r.up.storedIn(st.Epoch, st.AckedSeq) || st.AckedSeq < st.LastSeq-st.Len {
		t.Fatalf("new epoch %d: acked %d of %d, held %d; not all stored", st.Epoch, st.AckedSeq, st.LastSeq, st.Len)
	}
	if n := strings.Count(logs.String(), "never assigned"); n != 1 {
		t.Fatalf("%d warnings about the rolled-back buffer, want 1:\n%s", n, logs)
	}
}

// TestQuarantineWarned: damaged records found while uploading are warned about and shown in
// health, and the results after them are delivered.
func TestQuarantineWarned(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	buf, err := boltbuf.Open(path, boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := make([]wire.Result, 10)
	for i := range rs {
		rs[i] = wire.Result{Model: "m@1", Score: 0.1}
	}
	if err := buf.Append(rs); err != nil {
		t.Fatal(err)
	}
	buf.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("results")).Put([]byte{0, 0, 0, 0, 0, 0, 0, 5}, []byte(`{"seq":0,"ts":"2026-`))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	buf, err = boltbuf.Open(path, boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	r := newRig()
	r.opts.Buffer = buf
	logs := &syncLog{}
	r.opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	a, stop := r.start(t)
	eventually(t, "the results after the damaged one acked", func() bool { return buf.Stats().AckedSeq >= 10 })
	stop()
	if h := a.Health(); h.Quarantined != 1 {
		t.Fatalf("health quarantined = %d, want 1", h.Quarantined)
	}
	if !strings.Contains(logs.String(), "damaged records") {
		t.Fatalf("no warning about the damaged record:\n%s", logs)
	}
	if !r.up.storedIn(buf.Epoch(), 4) {
		t.Fatal("seqs 1-4 not stored")
	}
}

// TestRecoveredBufferReported: a buffer file found damaged at start is replaced; the agent
// runs, says so in health and last_error, and publishes one event about it.
func TestRecoveredBufferReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xd5}, 3*4096+17), 0o600); err != nil {
		t.Fatal(err)
	}
	buf, err := boltbuf.Open(path, boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	r := newRig()
	r.opts.Buffer = buf
	a, stop := r.start(t)
	eventually(t, "results acked", func() bool { return a.Stats().AckedSeq >= 5 })
	eventually(t, "event published", func() bool {
		r.up.mu.Lock()
		defer r.up.mu.Unlock()
		return len(r.up.events) > 0
	})
	stop()
	r.up.mu.Lock()
	events := slices.Clone(r.up.events)
	r.up.mu.Unlock()
	if len(events) != 1 || events[0].Kind != wire.EventBufferRecovered || !strings.Contains(events[0].Reason, "buffer.db.corrupt-") {
		t.Fatalf("events = %+v, want one %s naming the moved file", events, wire.EventBufferRecovered)
	}
	if h := a.Health(); !strings.Contains(h.BufferRecovered, "moved aside") {
		t.Fatalf("health buffer_recovered = %q", h.BufferRecovered)
	}
	buf.Close()
	again, err := boltbuf.Open(path, boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if r := again.Stats().Recovered; r != "" {
		t.Fatalf("after the event went out the buffer still holds the note %q", r)
	}
}

// redialingUplink is a fakeUplink that can redial (agent.Redialer); it records when.
type redialingUplink struct {
	*fakeUplink
	at []time.Time
}

func (u *redialingUplink) Redial(string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.connected {
		return false
	}
	u.at = append(u.at, time.Now())
	return true
}

func (u *redialingUplink) redials() []time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.at)
}

// TestAckStallRedials: while publishes go through but acks stay away, an Uplink that can
// redial is asked to, first when the stall is declared (3 ack timeouts), then at intervals
// that double from 3 ack timeouts; the count reaches health. Acks flowing again reset the
// interval, so the next stall redials at once again.
func TestAckStallRedials(t *testing.T) {
	t.Parallel()
	r := newRig()
	r.opts.AckTimeout = 50 * time.Millisecond    // the gaps double from 3 of them
	r.opts.DrainTimeout = 100 * time.Millisecond // acks are dropped when it stops
	up := &redialingUplink{fakeUplink: r.up}
	r.opts.Uplink = up
	setDrop := func(drop bool) {
		r.up.mu.Lock()
		defer r.up.mu.Unlock()
		r.up.dropAck = nil
		if drop {
			r.up.dropAck = func(int) bool { return true }
		}
	}
	setDrop(true)
	start := time.Now()
	a, _ := r.start(t)
	eventually(t, "five redials", func() bool { return len(up.redials()) >= 5 })
	at := up.redials()
	timeout := r.opts.AckTimeout
	if first := at[0].Sub(start); first < 3*timeout {
		t.Fatalf("first redial %v after the start: before the stall was declared (3 × %v)", first, timeout)
	}
	// Lower bounds only: a slow machine may redial later, never sooner.
	for i, want := range []time.Duration{3 * timeout, 6 * timeout, 12 * timeout, 24 * timeout} {
		if gap := at[i+1].Sub(at[i]); gap < want {
			t.Fatalf("redial %d came %v after the one before, want at least %v (gaps double)", i+2, gap, want)
		}
	}
	if n := a.Stats().Redials; n < 5 {
		t.Fatalf("Stats().Redials = %d after %d redials", n, len(at))
	}
	if h := a.Health(); h.LinkRedials < 5 {
		t.Fatalf("health link_redials = %d after %d redials", h.LinkRedials, len(at))
	}

	acked := a.Stats().AckedSeq
	setDrop(false)
	eventually(t, "acks flowing again", func() bool { return a.Stats().AckedSeq > acked })
	before := len(up.redials())
	setDrop(true)
	again := time.Now()
	eventually(t, "a redial in the next stall", func() bool { return len(up.redials()) > before })
	// Without the reset the next redial would wait out the last gap, 48 timeouts or more.
	if d := up.redials()[before].Sub(again); d >= 24*timeout {
		t.Fatalf("first redial of a new stall %v after it began: the interval was not reset by the acks", d)
	}
}
