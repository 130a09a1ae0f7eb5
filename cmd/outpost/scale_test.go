package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/boltstore"
)

// TestScale is `make bench-scale` (figures in docs/performance.md), skipped unless
// OUTPOST_SCALE=1: the real `outpost serve` binary with its embedded broker and bbolt store in
// its own process, so its RSS is the controller's alone, fed by `outpost sim` code in this
// process:
//
//  1. load: OUTPOST_SCALE_DEVICES (1000) --wire devices × OUTPOST_SCALE_RATE (10) results/s
//     for OUTPOST_SCALE_DURATION (60s); every result must be acked, and the store must hold
//     exactly what was produced;
//  2. agents: OUTPOST_SCALE_AGENTS (100) real agents (agent/assemble) × the same rate for
//     OUTPOST_SCALE_AGENT_DURATION (30s) (0 agents skips it);
//  3. idle: OUTPOST_SCALE_IDLE (10000) connected idle devices held for OUTPOST_SCALE_HOLD (30s).
//
// Each phase has a fresh controller. It reports the controller's peak and final RSS, the ack
// lag percentiles and the load average, because the machine may be shared.
func TestScale(t *testing.T) {
	if os.Getenv("OUTPOST_SCALE") == "" {
		t.Skip("OUTPOST_SCALE=1 runs the scale benchmark (make bench-scale)")
	}
	devices, rate := envInt(t, "OUTPOST_SCALE_DEVICES", 1000), envFloat(t, "OUTPOST_SCALE_RATE", 10)
	duration := envDuration(t, "OUTPOST_SCALE_DURATION", 60*time.Second)
	agents := envInt(t, "OUTPOST_SCALE_AGENTS", 100)
	agentDuration := envDuration(t, "OUTPOST_SCALE_AGENT_DURATION", 30*time.Second)
	idle, hold := envInt(t, "OUTPOST_SCALE_IDLE", 10000), envDuration(t, "OUTPOST_SCALE_HOLD", 30*time.Second)
	outpost, _ := binaries(t)
	t.Logf("machine: %d CPUs, load average %s", runtime.NumCPU(), loadavg())

	t.Run("load", func(t *testing.T) {
		if devices == 0 {
			t.Skip("OUTPOST_SCALE_DEVICES=0")
		}
		ctl := startServe(t, outpost)
		sum, err := runSim(context.Background(), simConfig{Devices: devices, Broker: ctl.url, Duration: duration, Rate: rate, Prefix: "load", Drain: time.Minute, Wire: true})
		if err != nil {
			t.Fatal(err)
		}
		peak, last := ctl.stop(t)
		t.Logf("load: %d wire devices × %g results/s for %s: produced %d, acked %d, sustained ingest %.0f results/s (last ack after %.1f s), ack lag p50 %.1f ms p99 %.1f ms max %.1f ms; controller RSS peak %.1f MiB, at end %.1f MiB; load average %s",
			devices, rate, duration, sum.Produced, sum.Acked, sum.Sustained, sum.AckedSeconds, sum.LagP50Ms, sum.LagP99Ms, sum.LagMaxMs, mib(peak), mib(last), loadavg())
		if sum.Connected != devices || sum.Unacked != 0 {
			t.Errorf("connected %d of %d, %d results unacked", sum.Connected, devices, sum.Unacked)
		}
		if got := storedResults(t, ctl.dir, "load", devices); got != sum.Produced {
			t.Errorf("store holds %d results, devices produced %d", got, sum.Produced)
		}
	})

	if agents > 0 {
		t.Run("agents", func(t *testing.T) {
			ctl := startServe(t, outpost)
			sum, err := runSim(context.Background(), simConfig{Devices: agents, Broker: ctl.url, Duration: agentDuration, Rate: rate, Prefix: "agent", Drain: time.Minute, Model: defaultDemoModel})
			if err != nil {
				t.Fatal(err)
			}
			peak, last := ctl.stop(t)
			t.Logf("agents: %d real agents × %g results/s for %s: produced %d, acked %d (%.0f results/s), oldest-unacked age p50 %.1f ms p99 %.1f ms; controller RSS peak %.1f MiB, at end %.1f MiB; load average %s",
				agents, rate, agentDuration, sum.Produced, sum.Acked, sum.PerSecond, sum.LagP50Ms, sum.LagP99Ms, mib(peak), mib(last), loadavg())
			if sum.Connected != agents || sum.Unacked != 0 {
				t.Errorf("connected %d of %d, %d results unacked", sum.Connected, agents, sum.Unacked)
			}
			// The agents keep producing while the last acks come back, so the store holds at
			// least what they had produced by the end.
			if got := storedResults(t, ctl.dir, "agent", agents); got < sum.Produced {
				t.Errorf("store holds %d results, agents produced %d", got, sum.Produced)
			}
		})
	}

	t.Run("idle", func(t *testing.T) {
		if idle == 0 {
			t.Skip("OUTPOST_SCALE_IDLE=0")
		}
		ctl := startServe(t, outpost)
		start := time.Now()
		sum, err := runSim(context.Background(), simConfig{Devices: idle, Broker: ctl.url, Duration: hold, Prefix: "idle", Wire: true})
		if err != nil {
			t.Fatal(err)
		}
		peak, last := ctl.stop(t)
		t.Logf("idle: %d devices connected (%d asked) in %s incl. %s held; controller RSS peak %.1f MiB, with all connected %.1f MiB; load average %s",
			sum.Connected, idle, time.Since(start).Truncate(time.Second), hold, mib(peak), mib(ctl.heldRSS), loadavg())
		_ = last
		if sum.Connected != idle {
			t.Errorf("connected %d of %d", sum.Connected, idle)
		}
	})
}

// serveProc is a running `outpost serve` child.
type serveProc struct {
	cmd     *exec.Cmd
	dir     string
	url     string
	mu      sync.Mutex
	peak    uint64 // highest VmRSS sampled
	heldRSS uint64 // VmRSS just before stop
	stopped chan struct{}
}

func startServe(t *testing.T, outpost string) *serveProc {
	t.Helper()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(outpost, "serve", "--data-dir", dir, "--listen", addr, "--insecure-open-devices", "--log-level", "warn")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, dir: dir, url: "tcp://" + addr, stopped: make(chan struct{})}
	go func() { // the controller's warnings go to the test log, bounded
		s := bufio.NewScanner(stderr)
		for n := 0; s.Scan(); n++ {
			if n < 20 {
				t.Logf("serve: %s", s.Text())
			}
		}
	}()
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stopped:
				return
			case <-tick.C:
			}
			if rss := procRSS(cmd.Process.Pid); rss > 0 {
				p.mu.Lock()
				p.peak = max(p.peak, rss)
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	waitUntil(t, "outpost serve accepting connections", 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p
}

// stop samples RSS a last time, stops the controller with SIGTERM and returns the peak and
// last RSS.
func (p *serveProc) stop(t *testing.T) (peak, last uint64) {
	t.Helper()
	last = procRSS(p.cmd.Process.Pid)
	p.heldRSS = last
	close(p.stopped)
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("outpost serve: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("outpost serve did not stop within 60 s of SIGTERM")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.peak, last), last
}

// storedResults opens the stopped controller's store and sums the results of PREFIX-0001…
func storedResults(t *testing.T, dir, prefix string, n int) uint64 {
	t.Helper()
	st, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var total uint64
	for i := 1; i <= n; i++ {
		rs, err := st.ResultStats(context.Background(), fmt.Sprintf("%s-%04d", prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		total += rs.Stored
	}
	return total
}

// procRSS is the process's resident set size in bytes from /proc (0 when unreadable).
func procRSS(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func envInt(t *testing.T, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		return n
	}
	return def
}

func envFloat(t *testing.T, name string, def float64) float64 {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		return n
	}
	return def
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		return d
	}
	return def
}
