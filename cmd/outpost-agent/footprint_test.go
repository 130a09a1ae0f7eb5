package main_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/agent/sysstat"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

// Footprint budgets from issue 5 ("Speed and footprint"). docs/performance.md records the
// figures these tests log.
const (
	maxBinaryBytes = 15 << 20 // stripped linux/arm64 outpost-agent
	maxRSSBytes    = 20 << 20 // VmRSS at steady state
	maxIdleCPU     = 10.0     // % of one core at steady state; the budget says "idle between windows"
)

// TestArm64BinarySize cross-builds the agent the way `make cross` does and holds it to the
// size budget. It takes a cold build's time (about 20 s), so -short skips it.
func TestArm64BinarySize(t *testing.T) {
	if testing.Short() {
		t.Skip("cross build skipped in -short mode")
	}
	holdArm64Size(t, "outpost-agent")
}

// model100Hz copies the sample vibration model beside a manifest that says 100 Hz, so the
// agent accepts a 100 Hz sensor. The network is the same; only the sampling rate, and so the
// work per second, doubles: 100 samples/s and one 64-sample window every 32 samples.
func model100Hz(t *testing.T) (model, manifest string) {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(sampleModel)
	if err != nil {
		t.Fatal(err)
	}
	mdata, err := os.ReadFile(strings.TrimSuffix(sampleModel, ".tflite") + ".json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.DecodeManifest(mdata)
	if err != nil {
		t.Fatal(err)
	}
	m.Input.SampleRateHz = 100
	if mdata, err = m.Encode(); err != nil {
		t.Fatal(err)
	}
	model, manifest = filepath.Join(dir, "vibration-100hz.tflite"), filepath.Join(dir, "vibration-100hz.json")
	if err := os.WriteFile(model, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, mdata, 0o644); err != nil {
		t.Fatal(err)
	}
	return model, manifest
}

// acker stands in for the controller: it acks every result batch of one device and keeps
// the last health report.
type acker struct {
	mu     sync.Mutex
	seqs   map[uint64]int
	health *wire.Health
	bad    []string
}

func startAcker(t *testing.T, broker, device string) *acker {
	t.Helper()
	a := &acker{seqs: map[uint64]int{}}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("acker").SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("acker connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	onBatch := func(c paho.Client, payload []byte) {
		var b wire.ResultBatch
		if err := wire.Decode(payload, &b); err != nil {
			a.fail(err.Error())
			return
		}
		if len(b.Results) == 0 {
			return
		}
		a.mu.Lock()
		for _, r := range b.Results {
			a.seqs[r.Seq]++
		}
		a.mu.Unlock()
		ack, _ := wire.Encode(&wire.Ack{Seq: b.Results[len(b.Results)-1].Seq, Epoch: b.Epoch})
		c.Publish(wire.ControllerTopic(device, wire.LeafAck), 1, false, ack)
	}
	handlers := map[string]paho.MessageHandler{
		wire.DeviceTopic(device, wire.LeafResults): func(c paho.Client, m paho.Message) { onBatch(c, m.Payload()) },
		wire.DeviceTopic(device, wire.LeafResultsZ): func(c paho.Client, m paho.Message) {
			zr, err := gzip.NewReader(bytes.NewReader(m.Payload()))
			if err != nil {
				a.fail("gunzip batch: " + err.Error())
				return
			}
			payload, err := io.ReadAll(io.LimitReader(zr, wire.MaxResultsZ))
			if err != nil {
				a.fail("gunzip batch: " + err.Error())
				return
			}
			onBatch(c, payload)
		},
		wire.DeviceTopic(device, wire.LeafHealth): func(_ paho.Client, m paho.Message) {
			var h wire.Health
			if err := wire.Decode(m.Payload(), &h); err != nil {
				a.fail(err.Error())
				return
			}
			a.mu.Lock()
			a.health = &h
			a.mu.Unlock()
		},
	}
	for topic, h := range handlers {
		if tok := c.Subscribe(topic, 1, h); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", topic, tok.Error())
		}
	}
	return a
}

func (a *acker) fail(msg string) {
	a.mu.Lock()
	a.bad = append(a.bad, msg)
	a.mu.Unlock()
}

// TestSteadyStateFootprint runs the real agent binary with a simulated 100 Hz sensor and one
// model, syncing to an in-process broker, and measures it from outside through /proc: CPU time
// over the 10 s from 10 s to 20 s after start, then VmRSS at 20 s. About 22 s; -short skips it.
func TestSteadyStateFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s measurement skipped in -short mode")
	}
	if runtime.GOOS != "linux" {
		t.Skip("measures through /proc")
	}
	const device = "foot-1"
	broker := startBroker(t)
	ack := startAcker(t, broker, device)
	model, manifest := model100Hz(t)
	dataDir := filepath.Join(t.TempDir(), "data")

	cmd := exec.Command(binary, "--broker", broker, "--id", device, "--model", model, "--manifest", manifest, "--allow-unsigned",
		"--sensor", "sim:vibration?seed=7&rate=100", "--data-dir", dataDir, "--health-interval", "1s")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			<-done
		}
	})
	pid := cmd.Process.Pid
	proc := sysstat.New(sysstat.Options{PID: pid})

	eventually(t, "results acked and a health report", func() bool {
		ack.mu.Lock()
		defer ack.mu.Unlock()
		return len(ack.seqs) >= 2 && ack.health != nil && ack.health.AckedSeq >= 2
	})
	waitUntil := func(d time.Duration) {
		select {
		case err := <-done:
			exited = true
			t.Fatalf("agent exited at %v: %v; stderr:\n%s", time.Since(start).Round(time.Millisecond), err, stderr)
		case <-time.After(time.Until(start.Add(d))):
		}
	}
	// Measuring takes wall time by nature: these waits are the measurement windows.
	waitUntil(10 * time.Second)
	p0, err := proc.Process()
	if err != nil {
		t.Fatal(err)
	}
	cs0 := contextSwitches(t, pid)
	clearRefs(t, pid) // the working set: what the loop touches from 10 to 20 s
	waitUntil(20 * time.Second)
	p1, err := proc.Process()
	if err != nil {
		t.Fatal(err)
	}
	cs1 := contextSwitches(t, pid)
	rss := statusField(t, pid, "VmRSS") << 10
	hwm := statusField(t, pid, "VmHWM") << 10
	anon, file := statusField(t, pid, "RssAnon")<<10, statusField(t, pid, "RssFile")<<10
	maps := smapsByMapping(t, pid)
	cpu := sysstat.CPUPercent(p0, p1)
	wakeups := float64(cs1-cs0) / p1.Time.Sub(p0.Time).Seconds()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		exited = true
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Errorf("exit code %d after SIGTERM; stderr:\n%s", ee.ExitCode(), stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("agent did not stop within 15s of SIGTERM; stderr:\n%s", stderr)
	}

	ack.mu.Lock()
	defer ack.mu.Unlock()
	n := uint64(len(ack.seqs))
	for seq := uint64(1); seq <= n; seq++ {
		if ack.seqs[seq] == 0 {
			t.Errorf("seq %d of 1..%d never arrived", seq, n)
			break
		}
	}
	h := *ack.health
	t.Logf("steady state (100 Hz sensor, %.1f inferences/s, %d results synced): CPU %.2f%% of one core over %v (%.2f s CPU), VmRSS %.1f MiB (peak %.1f MiB), %.0f voluntary wake-ups/s",
		h.InferencesPerS, n, cpu, p1.Time.Sub(p0.Time).Round(time.Millisecond), (p1.CPU - p0.CPU).Seconds(),
		float64(rss)/(1<<20), float64(hwm)/(1<<20), wakeups)
	t.Logf("agent's own health: cpu_percent %.2f, rss_bytes %d, disk_free_bytes %v, soc_temp_c %v, latency p50 %.3f ms p99 %.3f ms",
		h.CPUPercent, h.RSSBytes, deref(h.DiskFreeBytes), deref(h.SoCTempC), h.LatencyP50Ms, h.LatencyP99Ms)
	t.Logf("at 20 s RssAnon %.1f MiB, RssFile %.1f MiB; resident by mapping: %s", float64(anon)/(1<<20), float64(file)/(1<<20), formatMappings(maps))
	wsAnon, wsFile := workingSet(maps)
	t.Logf("working set (pages touched from 10 to 20 s): %.1f MiB, anonymous %.1f, file-backed %.1f; by mapping: %s",
		float64(wsAnon+wsFile)/(1<<20), float64(wsAnon)/(1<<20), float64(wsFile)/(1<<20), formatWorkingSet(maps))

	// 100 Hz with a stride of 32 is 3.125 windows/s; 20 s must have produced well over 40.
	if n < 40 {
		t.Errorf("only %d results synced in 20 s, want at least 40", n)
	}
	if len(ack.bad) > 0 {
		t.Errorf("malformed messages from the agent: %q", ack.bad)
	}
	if rss > maxRSSBytes {
		t.Errorf("VmRSS %d bytes after 20 s, over the %d byte budget", rss, maxRSSBytes)
	}
	if cpu >= maxIdleCPU {
		t.Errorf("CPU %.2f%% of one core at steady state, budget %.0f%%", cpu, maxIdleCPU)
	}
	// The agent's own report must agree with what /proc says from outside.
	if h.RSSBytes == 0 || h.RSSBytes > 2*rss || 2*h.RSSBytes < rss {
		t.Errorf("health rss_bytes %d, /proc says %d", h.RSSBytes, rss)
	}
	if h.DiskFreeBytes == nil || *h.DiskFreeBytes == 0 {
		t.Errorf("health disk_free_bytes = %v, want the data dir's free space", deref(h.DiskFreeBytes))
	}
	if h.CPUPercent < 0 || h.CPUPercent >= 100*float64(runtime.NumCPU()) {
		t.Errorf("health cpu_percent %v out of range", h.CPUPercent)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return "absent"
	}
	return *p
}

// contextSwitches sums voluntary context switches over the process's threads: each is a
// thread going to sleep, so their rate is how often the agent wakes up. Threads that exit
// between two readings take their count with them, so this can undercount slightly.
func contextSwitches(t *testing.T, pid int) uint64 {
	t.Helper()
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "status"))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	var n uint64
	for _, path := range tasks {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // the thread exited
		}
		n += field(t, path, data, "voluntary_ctxt_switches")
	}
	return n
}

// statusField reads a numeric field of /proc/PID/status (kB for the Vm* fields).
func statusField(t *testing.T, pid int, name string) uint64 {
	t.Helper()
	path := filepath.Join("/proc", strconv.Itoa(pid), "status")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return field(t, path, data, name)
}

// field parses "name:   value [kB]" out of a /proc status file.
func field(t *testing.T, path string, data []byte, name string) uint64 {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %s %q: %v", path, name, v, err)
			}
			return n
		}
	}
	t.Fatalf("%s has no %s", path, name)
	return 0
}
