package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
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

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
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
//     With OUTPOST_SCALE_POSTGRES=1 the same load then goes through Debian's Mosquitto into
//     `outpost serve --store postgres://… --broker tcp://…` (phase "postgres");
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
		var extra []string
		if dir := os.Getenv("OUTPOST_SCALE_CPUPROFILE"); dir != "" {
			extra = append(extra, "--cpu-profile", filepath.Join(dir, "load.pprof"))
		}
		ctl := startServe(t, outpost, extra...)
		sum, err := runSim(context.Background(), simConfig{Devices: devices, Broker: ctl.url, Duration: duration, Rate: rate, Prefix: "load", Drain: time.Minute, Wire: true})
		if err != nil {
			t.Fatal(err)
		}
		peak, last := ctl.stop(t)
		t.Logf("load: %d wire devices × %g results/s for %s: produced %d, acked %d, sustained ingest %.0f results/s (last ack after %.1f s, %.1f s after production ended), ack lag p50 %.1f ms p99 %.1f ms max %.1f ms; controller RSS peak %.1f MiB, at end %.1f MiB, CPU %.1f s = %.1f µs per result; load average %s",
			devices, rate, duration, sum.Produced, sum.Acked, sum.Sustained, sum.AckedSeconds, sum.AckedSeconds-duration.Seconds(), sum.LagP50Ms, sum.LagP99Ms, sum.LagMaxMs, mib(peak), mib(last), ctl.cpu.Seconds(), perResultMicros(ctl.cpu, sum.Produced), loadavg())
		if sum.Connected != devices || sum.Unacked != 0 {
			t.Errorf("connected %d of %d, %d results unacked", sum.Connected, devices, sum.Unacked)
		}
		if got := storedResults(t, ctl.dir, "load", devices); got != sum.Produced {
			t.Errorf("store holds %d results, devices produced %d", got, sum.Produced)
		}
	})

	// The PostgreSQL mode, only when asked: it needs Mosquitto and PostgreSQL (pgtest uses
	// 127.0.0.1:5432 when it answers, otherwise a throwaway cluster).
	if os.Getenv("OUTPOST_SCALE_POSTGRES") != "" {
		t.Run("postgres", func(t *testing.T) {
			if devices == 0 {
				t.Skip("OUTPOST_SCALE_DEVICES=0")
			}
			addr := startScaleMosquitto(t, devices)
			dbURL := pgtest.Start(t, pgtest.Options{}).NewDB(t)
			var extra []string
			if dir := os.Getenv("OUTPOST_SCALE_CPUPROFILE"); dir != "" {
				extra = append(extra, "--cpu-profile", filepath.Join(dir, "postgres.pprof"))
			}
			ctl := startServeExternal(t, outpost, "tcp://"+addr, dbURL, extra...)
			sum, err := runSim(context.Background(), simConfig{Devices: devices, Broker: ctl.url, Duration: duration, Rate: rate, Prefix: "pg", Drain: time.Minute, Wire: true})
			if err != nil {
				t.Fatal(err)
			}
			peak, last := ctl.stop(t)
			t.Logf("postgres: %d wire devices × %g results/s for %s through Mosquitto into PostgreSQL: produced %d, acked %d, sustained ingest %.0f results/s (last ack after %.1f s, %.1f s after production ended), ack lag p50 %.1f ms p99 %.1f ms max %.1f ms; controller RSS peak %.1f MiB, at end %.1f MiB, CPU %.1f s = %.1f µs per result (PostgreSQL and Mosquitto not counted); load average %s",
				devices, rate, duration, sum.Produced, sum.Acked, sum.Sustained, sum.AckedSeconds, sum.AckedSeconds-duration.Seconds(), sum.LagP50Ms, sum.LagP99Ms, sum.LagMaxMs, mib(peak), mib(last), ctl.cpu.Seconds(), perResultMicros(ctl.cpu, sum.Produced), loadavg())
			if sum.Connected != devices || sum.Unacked != 0 {
				t.Errorf("connected %d of %d, %d results unacked", sum.Connected, devices, sum.Unacked)
			}
			st, err := pgstore.Open(context.Background(), dbURL, pgstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if got := sumResults(t, st, "pg", devices); got != sum.Produced {
				t.Errorf("store holds %d results, devices produced %d", got, sum.Produced)
			}
		})
	}

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
	peak    uint64        // highest VmRSS sampled
	heldRSS uint64        // VmRSS just before stop
	cpu     time.Duration // user+system CPU time just before stop
	stopped chan struct{}
}

func startServe(t *testing.T, outpost string, extra ...string) *serveProc {
	t.Helper()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(outpost, append([]string{"serve", "--data-dir", dir, "--listen", addr, "--insecure-open-devices", "--log-level", "warn"}, extra...)...)
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
	go p.sampleRSS()
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

// startServeExternal runs `outpost serve` with no embedded broker: it connects to brokerURL
// and stores into the PostgreSQL database at storeURL (the scale-out mode, one replica). It
// returns once the controller has subscribed, with url the broker the devices use.
func startServeExternal(t *testing.T, outpost, brokerURL, storeURL string, extra ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(outpost, append([]string{"serve", "--broker", brokerURL, "--store", storeURL, "--data-dir", t.TempDir(), "--replica", "scale", "--log-level", "info"}, extra...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, url: brokerURL, stopped: make(chan struct{})}
	subscribed := make(chan struct{})
	go func() { // info lines until subscribed, then warnings only, bounded
		s := bufio.NewScanner(stderr)
		n, ready := 0, false
		for s.Scan() {
			line := s.Text()
			if !ready && strings.Contains(line, "controller connected and subscribed") {
				ready = true
				close(subscribed)
			}
			if (!ready || !strings.Contains(line, "level=INFO")) && n < 20 {
				t.Logf("serve: %s", line)
				n++
			}
		}
	}()
	go p.sampleRSS()
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	select {
	case <-subscribed:
	case <-time.After(30 * time.Second):
		t.Fatal("outpost serve not subscribed to the broker within 30 s")
	}
	return p
}

// startScaleMosquitto runs a private Mosquitto for the PostgreSQL phase, logging errors and
// warnings only. Its per-client queue is raised from the default 1,000 messages: the
// controller's one session receives every device's batches, up to devices × the agent's
// window of 8 unacked batches, and Mosquitto drops QoS 1 messages beyond the queue (the
// devices would resend them only after their 10 s ack timeout). docs/performance.md says so.
func startScaleMosquitto(t *testing.T, devices int) string {
	t.Helper()
	bin := mosquittoPath(t)
	port := freePort(t)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	cfg := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nmax_connections -1\nmax_queued_messages %d\n",
		port, max(1000, devices*simWindow*2))
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = testWriter(t, "mosquitto"), testWriter(t, "mosquitto")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(func() { stopProcess(t, cmd) })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitDial(t, addr, 10*time.Second)
	return addr
}

// sampleRSS records the peak RSS every 250 ms until stop.
func (p *serveProc) sampleRSS() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.stopped:
			return
		case <-tick.C:
		}
		if rss := procRSS(p.cmd.Process.Pid); rss > 0 {
			p.mu.Lock()
			p.peak = max(p.peak, rss)
			p.mu.Unlock()
		}
	}
}

// stop samples RSS a last time, stops the controller with SIGTERM and returns the peak and
// last RSS.
func (p *serveProc) stop(t *testing.T) (peak, last uint64) {
	t.Helper()
	last = procRSS(p.cmd.Process.Pid)
	p.heldRSS = last
	p.cpu = procCPU(p.cmd.Process.Pid)
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
	return sumResults(t, st, prefix, n)
}

// sumResults sums the stored results of PREFIX-0001… in st.
func sumResults(t *testing.T, st interface {
	ResultStats(context.Context, string) (fleet.ResultStats, error)
}, prefix string, n int) uint64 {
	t.Helper()
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

// procCPU is the process's user plus system CPU time from /proc (0 when unreadable), in the
// kernel's clock ticks of 10 ms (USER_HZ is 100 on Linux).
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name in parentheses may hold spaces; the fields after it are fixed.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
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

// perResultMicros is CPU time per result in µs.
func perResultMicros(cpu time.Duration, results uint64) float64 {
	if results == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(results)
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
