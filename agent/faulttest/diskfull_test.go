package faulttest

// A real ENOSPC needs a small filesystem. The test mounts a 4 MiB tmpfs as the agent's data
// dir inside a private mount namespace, so nothing leaks into the host's mount table even if
// the test dies: it re-executes its own test binary in a new mount namespace (as root), or in
// a new user + mount namespace (unprivileged, where the distribution allows unprivileged user
// namespaces, as Debian does), and runs the scenario there. Alternatives and why not:
//   - a loop-mounted ext4 image needs /dev/loop* and mkfs, often missing in containers;
//   - RLIMIT_FSIZE makes writes fail with EFBIG (and SIGXFSZ) at a file size, not ENOSPC at a
//     full filesystem: a different error on a different path, and bbolt's sparse growth makes
//     the limit hit at odd moments;
//   - chmod -w of the data dir does nothing against root, and bbolt writes into an open file.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestDiskFull fills the filesystem under the agent's data dir while results pile up (the
// controller stores nothing): the agent must say so in its log and in its health (last_error),
// keep inferring until the results it holds in memory reach their limit and then shed the
// oldest of them, counted in health dropped, lose nothing it had committed, and resume
// committing and syncing once space returns.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("the disk-full test runs the agent binary in a mount namespace")
	}
	if os.Getenv(envInNS) != "" {
		diskFull(t)
		return
	}
	t.Parallel()
	seed := testSeed(t)
	type attempt struct {
		name string
		attr *syscall.SysProcAttr
	}
	var attempts []attempt
	if os.Geteuid() == 0 {
		attempts = append(attempts, attempt{"private mount namespace", &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}})
	}
	attempts = append(attempts, attempt{"user and mount namespace", &syscall.SysProcAttr{
		Cloneflags:   syscall.CLONE_NEWUSER,
		Unshareflags: syscall.CLONE_NEWNS,
		UidMappings:  []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:  []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}})
	var problems []string
	for _, at := range attempts {
		out := &logBuffer{}
		cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFull$", "-test.v", "-test.count=1",
			"-test.timeout=5m", "-seed", itoa(seed))
		cmd.Env = append(os.Environ(), envInNS+"=1", envAgentBin+"="+agentBin)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = at.attr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			problems = append(problems, at.name+": "+err.Error())
			continue
		}
		s := out.String()
		if err == nil && strings.Contains(s, "--- SKIP: TestDiskFull") {
			problems = append(problems, at.name+": "+skipReason(s))
			continue
		}
		t.Logf("run in a %s:\n%s", at.name, s)
		if err != nil {
			t.Fatalf("disk-full scenario failed: %v", err)
		}
		return
	}
	msg := "cannot mount a small tmpfs in a private namespace: " + strings.Join(problems, "; ")
	if inCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// skipReason digs the t.Skip message out of a child's -test.v output.
func skipReason(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "diskfull_test.go") && strings.Contains(line, "mount") {
			return strings.TrimSpace(line)
		}
	}
	return "skipped"
}

// tmpfsSize is the data dir's filesystem size: room for the buffer, small enough to fill fast.
const tmpfsSize = "4m"

// diskFull is the scenario, run inside the private mount namespace.
func diskFull(t *testing.T) {
	seed := testSeed(t)
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+tmpfsSize+",mode=0700"); err != nil {
		t.Skipf("mount tmpfs on %s: %v", mnt, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })

	b := startEmbeddedBroker(t)
	c := newController(t, b.addr, broker.DefaultControllerUser, b.password)
	const device = "diskfull-1"
	obs := newHealthObserver(t, b.addr, device)
	cfg := agentConfig{Broker: b.addr, Device: device, DataDir: filepath.Join(mnt, "agent"), Seed: seed}
	log := &logBuffer{}
	a := startAgent(t, cfg, log)
	waitUntil(t, "controller acks the first 100 results", 30*time.Second, func() bool { return c.acked(device) >= 100 })

	// With the controller unable to store, nothing is acked, so the buffer file has to grow.
	c.rec.pause()
	t.Cleanup(c.rec.resume)
	filler := filepath.Join(mnt, "filler")
	fillFS(t, filler)
	full := time.Now()
	h1 := obs.waitFor(t, "health reporting the full disk in last_error", 30*time.Second, func(h wire.Health) bool {
		return h.Time.After(full) && strings.Contains(h.LastError, "no space left on device")
	})
	t.Logf("health while full: last_error %q, inferences %d, last_seq %d, buffered %d", h1.LastError, h1.Inferences, h1.LastSeq, h1.Buffered)
	if !strings.Contains(h1.LastError, "buffer append") {
		t.Errorf("last_error %q does not say which operation failed", h1.LastError)
	}
	waitUntil(t, "an ERROR log line about the full disk", 10*time.Second, func() bool {
		for _, line := range strings.Split(log.String(), "\n") {
			if strings.Contains(line, "level=ERROR") && strings.Contains(line, "no space left on device") {
				return true
			}
		}
		return false
	})
	// Two seconds' worth of windows more: inference goes on while nothing can be committed.
	h2 := obs.waitFor(t, "inference continuing on the full disk", 20*time.Second, func(h wire.Health) bool {
		return h.Inferences >= h1.Inferences+2*sampleRate/stride
	})
	t.Logf("health still full: inferences %d, last_seq %d", h2.Inferences, h2.LastSeq)
	if a.exited() {
		t.Fatalf("agent exited on the full disk: %v; log:\n%s", a.err, log.tail(30))
	}
	if n := strings.Count(log.String(), "no space left on device"); n > 5 {
		t.Errorf("the full disk was logged %d times in a few seconds; want once, not once per retry", n)
	}
	// The agent holds uncommitted results in memory up to 16 × its commit size (4096 results,
	// about 33 s at 125 results/s), then sheds the oldest: they never got a seq, so no gap
	// appears, and health counts them as dropped.
	limitWait := time.Now()
	h2 = obs.waitFor(t, "the in-memory limit reached: results shed and counted", 150*time.Second, func(h wire.Health) bool {
		return h.Dropped > 0
	})
	t.Logf("the in-memory limit took %v to reach", time.Since(limitWait).Round(time.Second))
	t.Logf("health at the in-memory limit: inferences %d, last_seq %d, dropped %d", h2.Inferences, h2.LastSeq, h2.Dropped)
	if a.exited() {
		t.Fatalf("agent exited at the in-memory limit: %v; log:\n%s", a.err, log.tail(30))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the agent resumes committing", 20*time.Second, func() bool {
		return strings.Contains(log.String(), "buffer append recovered")
	})
	back := time.Now()
	c.rec.resume()
	c.waitCaughtUp(t, device, back, 60*time.Second)
	h3 := obs.latest()
	// Samples dropped while inference was late leave gaps inside windows, which the content
	// check follows (see contentCheck).
	t.Logf("after recovery: last_seq %d, acked %d, dropped %d, samples dropped %d, last_error %q", h3.LastSeq, h3.AckedSeq, h3.Dropped, h3.SamplesDropped, h3.LastError)
	if h3.Dropped < h2.Dropped {
		t.Errorf("health dropped went from %d to %d", h2.Dropped, h3.Dropped)
	}
	if h3.LastSeq <= h2.LastSeq {
		t.Errorf("last_seq %d did not advance past %d after space returned", h3.LastSeq, h2.LastSeq)
	}
	stopAgent(t, a, log)
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	// Order is not checked here: while the store was held the controller's ingest queue
	// overflowed and dropped batches, which the agent re-sent later, so a later batch can have
	// reached the controller before an earlier one. The shed results leave a stretch of
	// windows that never got a seq: the content check may skip up to all of them.
	got := verify(t, c.dir, c.rec, device, cfg.DataDir, verifyOpts{seed: cfg.Seed, resync: int(h3.Dropped) + maxResync})
	t.Logf("%d results, each stored once; %d re-sent duplicates ignored; %d shed before they got a seq", got.lastSeq, got.duplicates, h3.Dropped)
}

// fillFS writes path until the filesystem is full (bounded by the tmpfs size).
func fillFS(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 16<<10)
	for range 4<<20/len(chunk) + 64 {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("fill %s: %v", path, err)
		}
	}
	t.Fatalf("wrote more than %s to %s without ENOSPC", tmpfsSize, path)
}

// healthObserver is a read-only MQTT client (an anonymous observer, which the embedded broker
// admits) that records one device's health reports and the acks it is sent, while the
// controller is down or in another process. It reconnects and resubscribes after the broker
// dies.
type healthObserver struct {
	mu      sync.Mutex
	reports []wire.Health
	acked   uint64 // highest ack seen (one epoch: the tests keep the agent's data dir)
}

func newHealthObserver(t *testing.T, addr, device string) *healthObserver {
	t.Helper()
	o := &healthObserver{}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).
		SetClientID("faulttest:observer"). // not a device id, so the broker treats it as an observer
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(true).SetMaxReconnectInterval(500 * time.Millisecond).
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe(wire.DeviceTopic(device, wire.LeafHealth), 1, func(_ paho.Client, m paho.Message) {
				var h wire.Health
				if wire.Decode(m.Payload(), &h) == nil {
					o.mu.Lock()
					o.reports = append(o.reports, h)
					o.mu.Unlock()
				}
			})
			c.Subscribe(wire.ControllerTopic(device, wire.LeafAck), 1, func(_ paho.Client, m paho.Message) {
				var a wire.Ack
				if wire.Decode(m.Payload(), &a) == nil {
					o.mu.Lock()
					o.acked = max(o.acked, a.Seq)
					o.mu.Unlock()
				}
			})
		})
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return o
}

// waitFor returns the first report (oldest first) that satisfies cond, waiting up to within.
func (o *healthObserver) waitFor(t *testing.T, what string, within time.Duration, cond func(wire.Health) bool) wire.Health {
	t.Helper()
	var got wire.Health
	waitUntil(t, what, within, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, h := range o.reports {
			if cond(h) {
				got = h
				return true
			}
		}
		return false
	})
	return got
}

func (o *healthObserver) latest() wire.Health {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.reports) == 0 {
		return wire.Health{}
	}
	return o.reports[len(o.reports)-1]
}

// ack is the highest ack seen.
func (o *healthObserver) ack() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.acked
}

// caughtUp waits for a health report made after since and an ack covering its last seq.
func (o *healthObserver) caughtUp(t *testing.T, since time.Time, within time.Duration) {
	t.Helper()
	h := o.waitFor(t, "a health report after "+since.Format(time.StampMilli), within, func(h wire.Health) bool {
		return h.Time.After(since) && h.LastSeq > 0
	})
	waitUntil(t, fmt.Sprintf("acks through seq %d", h.LastSeq), within, func() bool { return o.ack() >= h.LastSeq })
}
