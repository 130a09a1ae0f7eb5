package faulttest

// The harness: build the real outpost-agent binary once, give it a fast model, run a real
// controller (fleet.Controller on a boltstore, behind the embedded broker or Mosquitto) whose
// store records every result batch in arrival order, and check the outcome.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

var (
	seedFlag  = flag.Uint64("seed", 0, "seed for the random kill moments and network chaos (0: from the clock, logged)")
	killsFlag = flag.Int("kills", 0, "SIGKILLs in the crash torture (0: 100, or 30 with CI=true)")
)

// Environment passed to a re-executed test binary (see TestDiskFull).
const (
	envAgentBin = "OUTPOST_FAULTTEST_AGENT"
	envInNS     = "OUTPOST_FAULTTEST_IN_NS"
)

var (
	agentBin  string // the outpost-agent binary under test
	modelPath string // fast test model; its manifest is beside it
)

// Model timing: 500 Hz samples and a stride of 4 give 125 results/s per agent, fast enough to
// have commits, publishes and acks in flight at any kill moment, light enough for four agents
// at once on a 2-core machine.
const (
	sampleRate = 500
	stride     = 4
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The long tests mostly wait (outages, chaos, kill moments), so run them all at once
	// even where -test.parallel defaults to a small GOMAXPROCS, unless told otherwise.
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "8")
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "outpost-faulttest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if agentBin = os.Getenv(envAgentBin); agentBin == "" {
		agentBin = filepath.Join(dir, "outpost-agent")
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version=faulttest", "-o", agentBin, "../../cmd/outpost-agent")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build outpost-agent: %v\n%s", err, out)
			return 1
		}
	}
	if modelPath, err = writeFastModel(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// writeFastModel copies the sample vibration model into dir with a manifest that samples at
// sampleRate with the given stride; the model bytes, and so its digest, are unchanged.
func writeFastModel(dir string) (string, error) {
	const src = "../../models/sample/vibration-anomaly-f32"
	model, err := os.ReadFile(src + ".tflite")
	if err != nil {
		return "", fmt.Errorf("read sample model: %w", err)
	}
	var man map[string]any
	data, err := os.ReadFile(src + ".json")
	if err != nil {
		return "", fmt.Errorf("read sample manifest: %w", err)
	}
	if err := json.Unmarshal(data, &man); err != nil {
		return "", fmt.Errorf("decode sample manifest: %w", err)
	}
	in, ok := man["input"].(map[string]any)
	if !ok {
		return "", errors.New("sample manifest has no input object")
	}
	in["sample_rate_hz"], in["stride"] = sampleRate, stride
	man["description"] = "faulttest: the sample vibration model at 500 Hz, stride 4"
	if data, err = json.MarshalIndent(man, "", "  "); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "vibration-anomaly-f32.tflite")
	if err := os.WriteFile(path, model, 0o644); err != nil {
		return "", err
	}
	return path, os.WriteFile(filepath.Join(dir, "vibration-anomaly-f32.json"), data, 0o644)
}

func inCI() bool {
	return os.Getenv("CI") != "" && os.Getenv("CI") != "false" && os.Getenv("CI") != "0"
}

// testSeed returns -seed or a clock seed, logged so a failure can be replayed.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	return seed
}

// waitUntil polls cond every 50ms until it holds or within passes.
func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logBuffer collects process output for the test to search and to print on failure.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tail is the last n lines, for failure messages.
func (l *logBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// ---- the agent process ----

// agentConfig is one outpost-agent command line.
type agentConfig struct {
	Broker  string // host:port
	Device  string
	DataDir string
	Seed    uint64   // sensor seed
	Extra   []string // more flags
}

func (c agentConfig) args() []string {
	return append([]string{
		"--broker", "tcp://" + c.Broker, "--id", c.Device, "--model", modelPath, "--allow-unsigned",
		"--sensor", fmt.Sprintf("sim:vibration?rate=%d&seed=%d", sampleRate, c.Seed%1_000_000),
		"--data-dir", c.DataDir, "--health-interval", "300ms",
	}, c.Extra...)
}

// agentProc is a running outpost-agent.
type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait has returned
	err  error         // Wait's result, valid after done
}

// startAgent starts the binary with its stderr going to log; the test's cleanup kills it.
func startAgent(t *testing.T, c agentConfig, log *logBuffer) *agentProc {
	t.Helper()
	cmd := exec.Command(agentBin, c.args()...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start outpost-agent: %v", err)
	}
	a := &agentProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			t.Logf("agent log (last 40 lines):\n%s", log.tail(40))
		}
	})
	return a
}

// exited reports whether the process has ended (on its own or by a signal we sent).
func (a *agentProc) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits; it reports whether the process was still running, i.e. it
// died by our signal rather than on its own.
func (a *agentProc) kill() bool {
	if a.exited() {
		return false
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	var ee *exec.ExitError
	if errors.As(a.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	return false
}

// stop sends SIGTERM and returns the exit code, or an error if it takes longer than within
// (the process is then killed).
func (a *agentProc) stop(within time.Duration) (int, error) {
	if !a.exited() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-a.done:
	case <-time.After(within):
		a.kill()
		return -1, fmt.Errorf("agent did not stop within %v of SIGTERM", within)
	}
	var ee *exec.ExitError
	if errors.As(a.err, &ee) {
		return ee.ExitCode(), nil
	}
	if a.err != nil {
		return -1, a.err
	}
	return 0, nil
}

// ---- the controller side ----

// recorder sees every result batch the controller stores, in the order it stores them, across
// controller restarts.
type recorder struct {
	gate    atomic.Pointer[chan struct{}] // non-nil: stores wait until it is closed
	mu      sync.Mutex
	devices map[string]*deviceRecord
}

// pause holds every store call until resume.
func (r *recorder) pause() {
	ch := make(chan struct{})
	r.gate.Store(&ch)
}

// resume releases the store calls held by pause.
func (r *recorder) resume() {
	if ch := r.gate.Swap(nil); ch != nil {
		close(*ch)
	}
}

type deviceRecord struct {
	first      map[uint64]wire.Result // first copy of each seq received
	order      []uint64               // seqs in order of first arrival
	duplicates int                    // results received again
	mismatches []string               // a seq received again with different content
	storeDiffs []string               // the store's own new/duplicate counts disagree with ours
}

func newRecorder() *recorder { return &recorder{devices: map[string]*deviceRecord{}} }

func (r *recorder) record(batches []fleet.Batch, appended []fleet.Appended) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, b := range batches {
		d := r.devices[b.Device]
		if d == nil {
			d = &deviceRecord{first: map[uint64]wire.Result{}}
			r.devices[b.Device] = d
		}
		fresh := 0
		for _, res := range b.Results {
			prev, seen := d.first[res.Seq]
			if !seen {
				d.first[res.Seq] = res
				d.order = append(d.order, res.Seq)
				fresh++
				continue
			}
			d.duplicates++
			if !sameResult(prev, res) {
				d.mismatches = append(d.mismatches, fmt.Sprintf("seq %d first %s, again %s", res.Seq, brief(prev), brief(res)))
			}
		}
		if i < len(appended) && appended[i].Stored != fresh {
			d.storeDiffs = append(d.storeDiffs, fmt.Sprintf("batch of %d from seq %d: store says %d new, recorder %d",
				len(b.Results), b.Results[0].Seq, appended[i].Stored, fresh))
		}
	}
}

// device returns a copy of what was recorded for id.
func (r *recorder) device(id string) deviceRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.devices[id]
	if d == nil {
		return deviceRecord{first: map[uint64]wire.Result{}}
	}
	return deviceRecord{
		first: d.first, order: slices.Clone(d.order), duplicates: d.duplicates,
		mismatches: slices.Clone(d.mismatches), storeDiffs: slices.Clone(d.storeDiffs),
	}
}

func sameResult(a, b wire.Result) bool {
	return a.Seq == b.Seq && a.Time.Equal(b.Time) && a.Model == b.Model && a.Score == b.Score &&
		a.Label == b.Label && a.Event == b.Event && a.LatencyUs == b.LatencyUs && slices.Equal(a.Outputs, b.Outputs)
}

func brief(r wire.Result) string {
	return fmt.Sprintf("{ts %s score %v latency %dus}", r.Time.Format(time.RFC3339Nano), r.Score, r.LatencyUs)
}

// recordingStore is the real boltstore with the recorder watching its appends.
type recordingStore struct {
	fleet.Store
	rec *recorder
}

func (s recordingStore) AppendResults(ctx context.Context, batches []fleet.Batch) ([]fleet.Appended, error) {
	// While the recorder is paused the controller cannot store, so it sends no acks: the
	// devices' buffers grow as they would with the controller down, without restarting it.
	if gate := s.rec.gate.Load(); gate != nil {
		select {
		case <-*gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out, err := s.Store.AppendResults(ctx, batches)
	if err == nil {
		s.rec.record(batches, out)
	}
	return out, err
}

// embeddedBroker is the controller's own broker (fleet/broker) on a fixed loopback address,
// which can be stopped and started again on the same port.
type embeddedBroker struct {
	addr     string
	password string

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

func startEmbeddedBroker(t *testing.T) *embeddedBroker {
	t.Helper()
	b := &embeddedBroker{addr: "127.0.0.1:0", password: "faulttest-controller-secret"}
	b.start(t)
	t.Cleanup(b.stop)
	return b
}

// start serves on b.addr (the port bound first is kept for restarts).
func (b *embeddedBroker) start(t *testing.T) {
	t.Helper()
	br, err := broker.New(broker.Options{Addr: b.addr, ExactAddr: true, ControllerPassword: b.password})
	if err != nil {
		t.Fatalf("start embedded broker: %v", err)
	}
	b.addr = br.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	b.mu.Lock()
	b.cancel, b.done = cancel, done
	b.mu.Unlock()
	waitDial(t, b.addr, 10*time.Second)
}

func (b *embeddedBroker) stop() {
	b.mu.Lock()
	cancel, done := b.cancel, b.done
	b.cancel, b.done = nil, nil
	b.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func waitDial(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	waitUntil(t, "dial "+addr, within, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// controller runs fleet.Controller on a boltstore in dir; it can be stopped and started again
// on the same store.
type controller struct {
	dir                string
	url                string // broker the controller connects to
	username, password string
	rec                *recorder

	mu     sync.Mutex
	c      *fleet.Controller
	cancel context.CancelFunc
	done   chan error
}

func newController(t *testing.T, brokerAddr, username, password string) *controller {
	t.Helper()
	c := &controller{dir: t.TempDir(), url: "tcp://" + brokerAddr, username: username, password: password, rec: newRecorder()}
	c.start(t)
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	return c
}

func (c *controller) start(t *testing.T) {
	t.Helper()
	st, err := boltstore.Open(c.dir, boltstore.Options{})
	if err != nil {
		t.Fatalf("open controller store: %v", err)
	}
	ctl, err := fleet.New(fleet.Options{
		Store: recordingStore{Store: st, rec: c.rec}, BrokerURL: c.url,
		Username: c.username, Password: c.password, RetryInterval: 200 * time.Millisecond,
	})
	if err != nil {
		st.Close()
		t.Fatalf("new controller: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctl.Run(ctx) }()
	c.mu.Lock()
	c.c, c.cancel, c.done = ctl, cancel, done
	c.mu.Unlock()
	// A restarted controller resumes its session and may take a while under a backlog.
	waitUntil(t, "controller connected", 60*time.Second, ctl.Connected)
}

// stop stops the controller (it closes its store) and returns Run's error.
func (c *controller) stop() error {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.cancel, c.done = nil, nil
	c.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		return errors.New("controller did not stop within 20s")
	}
}

// status is the controller's live row for device (zero before it has heard of it).
func (c *controller) status(device string) fleet.DeviceStatus {
	c.mu.Lock()
	ctl := c.c
	c.mu.Unlock()
	for _, d := range ctl.Devices() {
		if d.ID == device {
			return d
		}
	}
	return fleet.DeviceStatus{}
}

// acked is the controller's contiguous watermark for device.
func (c *controller) acked(device string) uint64 { return c.status(device).Acked }

// health is device's latest health report as the controller has it, nil before the first.
func (c *controller) health(device string) *wire.Health { return c.status(device).Health }

// waitCaughtUp waits until the agent has reported health taken after since and the
// controller has acked every result that report counted as produced.
func (c *controller) waitCaughtUp(t *testing.T, device string, since time.Time, within time.Duration) {
	t.Helper()
	var target uint64
	waitUntil(t, "a health report from the current agent", within, func() bool {
		h := c.health(device)
		if h != nil && h.Time.After(since) && h.LastSeq > 0 {
			target = h.LastSeq
			return true
		}
		return false
	})
	waitUntil(t, fmt.Sprintf("controller acks through seq %d", target), within, func() bool { return c.acked(device) >= target })
}

// ---- the verdict ----

// outcome is what verify found, for the test's log.
type outcome struct {
	lastSeq, dropped uint64
	duplicates       int
	restarts         int // agent starts seen in the content (window 0 again)
	resyncs          int // forward skips of the content (samples or results lost before a seq)
}

// verifyOpts say what a test allows.
type verifyOpts struct {
	seed    uint64 // the agent's agentConfig.Seed: results are recomputed from it
	ordered bool   // results first reached the controller in seq order (needs a recorder)
	// dropping: the agent ran with drop-oldest retention and may have dropped results; the
	// controller must then have skipped exactly the seqs it never stored, no more.
	dropping bool
	// resync is how many windows the content check may skip forward (default maxResync).
	resync int
	// restarts: the agent was restarted, so the content may start again at the first window.
	restarts bool
}

// verify checks, after the agent and the controller have stopped: the controller's store
// (controller.db in ctlDir) holds every seq from 1 to its watermark exactly once, or, where the
// agent dropped results by retention, every seq it did not drop; the watermark is at least the
// agent's ack; the agent's buffer holds exactly the seqs after its ack and its drops (a clean
// stop drains for a bounded time); so every seq produced is in one place, once. Every stored
// result carries the outputs recomputed here from the seeded simulated sensor and the model,
// independently of anything stored. With a recorder (rec not nil): no seq ever carried two
// different results and, if ordered, results first reached the controller in seq order.
func verify(t *testing.T, ctlDir string, rec *recorder, device, dataDir string, o verifyOpts) outcome {
	t.Helper()
	buf, err := boltbuf.Open(filepath.Join(dataDir, "buffer.db"), boltbuf.Options{})
	if err != nil {
		t.Fatalf("reopen agent buffer: %v", err)
	}
	bs := buf.Stats()
	left, err := buf.Oldest(int(min(bs.Len, 1_000_000)))
	buf.Close()
	if err != nil {
		t.Fatalf("read agent buffer: %v", err)
	}
	t.Logf("agent buffer after stop: %+v", bs)
	if bs.LastSeq == 0 {
		t.Fatal("the agent produced no results")
	}
	// A clean stop drains for a bounded time only, so the agent may keep a tail of results
	// it could not get acked: those must be exactly the seqs after its ack and its drops up to
	// LastSeq, and together with the controller's store they must cover every seq once.
	firstLeft := max(bs.AckedSeq, bs.DroppedThrough) + 1
	for i, r := range left {
		if want := firstLeft + uint64(i); r.Seq != want {
			t.Fatalf("agent buffer holds seq %d where %d belongs: a result between the ack and the last seq is missing", r.Seq, want)
		}
	}
	if uint64(len(left)) != bs.LastSeq+1-firstLeft {
		t.Fatalf("agent buffer holds %d results, want the %d after its ack %d and drops through %d", len(left), bs.LastSeq+1-firstLeft, bs.AckedSeq, bs.DroppedThrough)
	}
	if len(left) > 0 {
		t.Logf("note: the agent stopped with %d results unacked (seq %d..%d); it keeps them and re-sends them on its next start",
			len(left), left[0].Seq, bs.LastSeq)
	}

	st, err := boltstore.Open(ctlDir, boltstore.Options{})
	if err != nil {
		t.Fatalf("reopen controller store: %v", err)
	}
	defer st.Close()
	ctx := context.Background()
	rs, err := st.ResultStats(ctx, device)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("controller result stats: %+v", rs)
	if !o.dropping && bs.Dropped != 0 {
		t.Errorf("agent dropped %d results by retention (through seq %d); the buffer is large enough for none", bs.Dropped, bs.DroppedThrough)
	}
	if rs.Contiguous < bs.AckedSeq || rs.Contiguous > bs.LastSeq || rs.Stored+rs.Dropped+rs.Rejected != rs.Contiguous {
		t.Errorf("controller contiguous %d, stored %d + dropped %d + rejected %d; want all of 1..%d and at least the agent's ack %d",
			rs.Contiguous, rs.Stored, rs.Dropped, rs.Rejected, rs.Contiguous, bs.AckedSeq)
	}
	if rs.Rejected != 0 {
		t.Errorf("controller rejected %d of the agent's results", rs.Rejected)
	}

	var r0 deviceRecord
	if rec != nil {
		r0 = rec.device(device)
	}
	cc := &contentCheck{e: newExpected(t, o.seed), maxSkip: o.resync, allowRestart: o.restarts}
	if cc.maxSkip == 0 {
		cc.maxSkip = maxResync
	}
	var next uint64 = 1
	var stored, missing uint64
	var contentErr error
	for after := uint64(0); ; {
		page, err := st.Results(ctx, device, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if r.Seq != next {
				// A gap is only allowed where the agent dropped: below its DroppedThrough.
				if !o.dropping || r.Seq-1 > bs.DroppedThrough || r.Seq < next {
					t.Fatalf("controller store: seq %d follows %d; every seq from 1 to %d the agent did not drop must be there once", r.Seq, next-1, rs.Contiguous)
				}
				missing += r.Seq - next
				// The dropped seqs were windows too: the next stored one is that many further.
				cc.skip(int(r.Seq - next))
			}
			// The first content error is reported after the recorder's findings below, which
			// tell a reused seq from a wrong computation.
			if contentErr == nil { // the readings are lost after the first error
				contentErr = cc.check(t, r)
			}
			if rec != nil {
				if first, ok := r0.first[r.Seq]; !ok || !sameResult(first, r) {
					t.Fatalf("controller store: seq %d is %s, first received as %s", r.Seq, brief(r), brief(first))
				}
			}
			next = r.Seq + 1
			stored++
		}
		after = page[len(page)-1].Seq
	}
	if stored+missing < bs.AckedSeq || stored+missing > bs.LastSeq {
		t.Errorf("controller store covers seqs 1..%d (%d stored, %d dropped); the agent produced 1..%d and had 1..%d acked", stored+missing, stored, missing, bs.LastSeq, bs.AckedSeq)
	}
	if missing != rs.Dropped || missing > bs.Dropped {
		t.Errorf("%d seqs missing from the store; the controller counted %d dropped, the agent %d", missing, rs.Dropped, bs.Dropped)
	}
	if len(r0.mismatches) > 0 {
		t.Errorf("%d seqs arrived twice with different content (a seq was reused), first: %s", len(r0.mismatches), r0.mismatches[0])
	}
	if len(r0.storeDiffs) > 0 {
		t.Errorf("store and recorder disagree on what was new %d times, first: %s", len(r0.storeDiffs), r0.storeDiffs[0])
	}
	if contentErr != nil {
		t.Errorf("controller store: %v", contentErr)
	}
	if cc.restarts > 0 && !o.restarts {
		t.Errorf("the agent ran once, yet %d times a stored result carries the content of its first window again: old results uploaded under new seqs", cc.restarts)
	}
	if o.ordered && rec != nil {
		for i := 1; i < len(r0.order); i++ {
			if r0.order[i] <= r0.order[i-1] {
				t.Errorf("results out of order at the controller: seq %d first arrived after seq %d", r0.order[i], r0.order[i-1])
				break
			}
		}
	}
	t.Logf("content of %d stored results recomputed from the seeded sensor: %d agent starts, %d gaps of dropped samples, %d forward skips", stored, cc.restarts, cc.gaps, cc.resyncs)
	return outcome{lastSeq: bs.LastSeq, dropped: bs.Dropped, duplicates: r0.duplicates, restarts: cc.restarts, resyncs: cc.resyncs}
}

// stopAgent stops the agent cleanly and fails the test unless it exits 0.
func stopAgent(t *testing.T, a *agentProc, log *logBuffer) {
	t.Helper()
	code, err := a.stop(30 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("agent stop: exit %d, %v; log:\n%s", code, err, log.tail(40))
	}
}

// noErrorsLogged fails the test if the agent logged at ERROR level.
func noErrorsLogged(t *testing.T, log *logBuffer) {
	t.Helper()
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("agent logged an error: %s", line)
			return
		}
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
