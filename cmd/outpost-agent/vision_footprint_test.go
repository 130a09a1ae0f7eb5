package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-ml/outpost/agent/sysstat"
	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/models/tflite/synth"
)

// TestVisionFootprint runs the real agent binary with a MobileNet v2-class int8 model (width
// 1.0, 300 classes: 2.6 M weights in a 3.1 MB file (the 1,000-class head makes a manifest
// baseline over the 1 MiB manifest limit); 96×96 input so that three 9,216 Hz simulated channels
// give one inference a second) and reads VmRSS from /proc at 40 s
// (OUTPOST_VISION_SECONDS: another time). Issue 14's target is
// 12 MiB plus the model file plus the tensor arena; the figures go to docs/performance.md.
// A measurement, not a check of the suite: it runs only with OUTPOST_VISION_FOOTPRINT=1 (about
// 42 s); OUTPOST_VISION_THREADS sets --threads (default 1). The agent inherits the test's
// environment, so GOGC and GOMEMLIMIT reach it.
// maxVisionAnon is TestVisionFootprint's budget for the agent's anonymous memory.
const maxVisionAnon = 15 << 20

func TestVisionFootprint(t *testing.T) {
	if os.Getenv("OUTPOST_VISION_FOOTPRINT") != "1" {
		t.Skip("a 40 s measurement: set OUTPOST_VISION_FOOTPRINT=1")
	}
	if runtime.GOOS != "linux" {
		t.Skip("measures through /proc")
	}
	const (
		device  = "vision-1"
		side    = 96
		cpuFrom = 10 * time.Second
		// refWindow is the span over which the working set is measured: ten inferences.
		refWindow = 10 * time.Second
	)
	// The Go heap grows between collections, so a later reading can be higher:
	// OUTPOST_VISION_SECONDS measures at another time than 40 s.
	measureAt := 40 * time.Second
	if s := os.Getenv("OUTPOST_VISION_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= int((cpuFrom+refWindow)/time.Second) {
			t.Fatalf("OUTPOST_VISION_SECONDS=%q: want whole seconds above %v", s, cpuFrom+refWindow)
		}
		measureAt = time.Duration(n) * time.Second
	}
	threads := 1
	if s := os.Getenv("OUTPOST_VISION_THREADS"); s != "" {
		var err error
		if threads, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	data, err := synth.MobileNetV2Int8(synth.MobileNetV2{Input: side, Alpha: 1, Classes: 300, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	man, err := synth.VisionManifest("mobilenet-v2-96", data, side*side, 1)
	if err != nil {
		t.Fatal(err)
	}
	pred, err := tfpredict.New(data, man, "vision")
	if err != nil {
		t.Fatal(err)
	}
	arena := uint64(pred.ArenaBytes())
	pred.Close()
	mdata, err := man.Encode()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model, manifest := filepath.Join(dir, "mobilenet-v2-96.tflite"), filepath.Join(dir, "mobilenet-v2-96.json")
	if err := os.WriteFile(model, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, mdata, 0o644); err != nil {
		t.Fatal(err)
	}
	broker := startBroker(t)
	ack := startAcker(t, broker, device)
	rate := strconv.Itoa(side * side)
	args := []string{"--broker", broker, "--id", device, "--model", model, "--manifest", manifest, "--allow-unsigned",
		"--data-dir", filepath.Join(dir, "data"), "--health-interval", "1s", "--threads", strconv.Itoa(threads), "--drift-window", "0"}
	for i := range 3 {
		args = append(args, "--sensor", "sim:vibration?seed="+strconv.Itoa(i+1)+"&rate="+rate+"&shaft=5")
	}
	// Start from the binary as a device has it: written back to storage and not in the page
	// cache. Just linked, its pages are dirty, and the kernel evicts no dirty page, so the
	// agent could not give back its start-up pages (agent/exepages) the way it does on a device.
	if f, err := os.Open(binary); err == nil {
		f.Sync()
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
	}
	cmd := exec.Command(binary, args...)
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
	waitUntil := func(d time.Duration) {
		select {
		case err := <-done:
			exited = true
			t.Fatalf("agent exited: %v; stderr:\n%s", err, stderr)
		case <-time.After(time.Until(start.Add(d))):
		}
	}
	// CPU over the last 30 s: the model is loaded and the sensor at its rate by then.
	waitUntil(cpuFrom)
	p0, err := proc.Process()
	if err != nil {
		t.Fatal(err)
	}
	ack.mu.Lock()
	n0 := len(ack.seqs)
	ack.mu.Unlock()
	// The working set: what the agent touches in the last refWindow before the reading.
	// Start-up touches code and data that steady state never uses again; those pages count
	// in VmRSS until the kernel needs the memory, but not here.
	waitUntil(measureAt - refWindow)
	clearRefs(t, pid)
	waitUntil(measureAt)
	p1, err := proc.Process()
	if err != nil {
		t.Fatal(err)
	}
	ack.mu.Lock()
	n1 := len(ack.seqs)
	ok := n1 >= 1 && ack.health != nil
	ack.mu.Unlock()
	if !ok {
		t.Fatalf("no results and health in %v; stderr:\n%s", measureAt, stderr)
	}
	if os.Getenv("OUTPOST_VISION_GCTRACE") != "" {
		defer func() { t.Logf("agent's stderr:\n%s", stderr) }()
	}
	rss := statusField(t, pid, "VmRSS") << 10
	hwm := statusField(t, pid, "VmHWM") << 10
	anon, file := statusField(t, pid, "RssAnon")<<10, statusField(t, pid, "RssFile")<<10
	maps := smapsByMapping(t, pid)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		exited = true
	case <-time.After(15 * time.Second):
		t.Fatalf("agent did not stop within 15 s of SIGTERM")
	}
	ack.mu.Lock()
	h := *ack.health
	ack.mu.Unlock()
	cpu := sysstat.CPUPercent(p0, p1)
	t.Logf("MobileNet v2 96x96 int8 (%d-byte file), %d threads: %d results in %v (%.2f/s from %v on, latency p50 %.1f ms), CPU %.1f%% of one core over the same time, VmRSS %.1f MiB, VmHWM %.1f MiB",
		len(data), threads, n1, measureAt, float64(n1-n0)/p1.Time.Sub(p0.Time).Seconds(), cpuFrom, h.LatencyP50Ms, cpu, float64(rss)/(1<<20), float64(hwm)/(1<<20))
	t.Logf("health: samples dropped %d, sensor errors %d, rss_bytes %d; at %v RssAnon %.1f MiB (heap, stacks, runtime), RssFile %.1f MiB (the binary's pages and the mapped buffer files)",
		h.SamplesDropped, h.SensorErrors, h.RSSBytes, measureAt, float64(anon)/(1<<20), float64(file)/(1<<20))
	t.Logf("resident by mapping: %s", formatMappings(maps))
	wsAnon, wsFile := workingSet(maps)
	t.Logf("working set (pages touched in the last %v): %.1f MiB, anonymous %.1f, file-backed %.1f; by mapping: %s",
		refWindow, float64(wsAnon+wsFile)/(1<<20), float64(wsAnon)/(1<<20), float64(wsFile)/(1<<20), formatWorkingSet(maps))
	// Issue 14's target is 12 MiB + the file + the arena in VmRSS; what the agent controls
	// is its anonymous memory (the file-backed rest is the binary's clean pages, see
	// docs/performance.md), so that is what is held to a budget, with room above the
	// 12.3–13.5 MiB measured: weights held twice again would cross it.
	if anon > maxVisionAnon {
		t.Errorf("RssAnon %.1f MiB at %v, budget %.0f MiB", float64(anon)/(1<<20), measureAt, float64(maxVisionAnon)/(1<<20))
	}
	target := 12<<20 + uint64(len(data)) + arena
	t.Logf("issue 14 target: VmRSS %.1f MiB against 12 MiB + %.2f MiB file + %.2f MiB arena (%d bytes) = %.1f MiB: held %v",
		float64(rss)/(1<<20), float64(len(data))/(1<<20), float64(arena)/(1<<20), arena, float64(target)/(1<<20), rss <= target)
	// Idle anonymous pages stay (no swap on most devices); idle file pages are clean cache the
	// kernel takes back. So the memory the device must have is RssAnon plus the file working set.
	t.Logf("RssAnon + file-backed working set: %.1f MiB against the same %.1f MiB: held %v",
		float64(anon+wsFile)/(1<<20), float64(target)/(1<<20), anon+wsFile <= target)
}
