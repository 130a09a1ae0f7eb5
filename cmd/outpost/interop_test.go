package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// binaries compiles the two real binaries once per test binary run. TestMain starts the build
// as the package's tests begin, when they all run, so that the minutes `go build` takes on a
// cold cache overlap the in-process tests instead of stalling the first test that needs it.
var (
	buildOnce    sync.Once
	buildStarted atomic.Bool
	buildDone    = make(chan struct{})
	buildDir     string
	buildErr     error
)

// startBuild starts the build in the background, once.
func startBuild() {
	buildOnce.Do(func() {
		buildStarted.Store(true)
		go func() {
			defer close(buildDone)
			buildDir, buildErr = os.MkdirTemp("", "outpost-bin-")
			if buildErr != nil {
				return
			}
			cmd := exec.Command("go", "build", "-o", buildDir+"/", "./cmd/outpost", "./cmd/outpost-agent")
			cmd.Dir = "../.."
			out, err := cmd.CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			}
		}()
	})
}

func binaries(t testing.TB) (outpost, agent string) {
	t.Helper()
	startBuild()
	<-buildDone
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "outpost"), filepath.Join(buildDir, "outpost-agent")
}

func TestMain(m *testing.M) {
	flag.Parse()
	// Only a full run (no -run, -list or -short) is sure to need the binaries; a run of a few
	// tests builds them when one of those asks.
	if flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.list").Value.String() == "" && !testing.Short() {
		startBuild()
	}
	code := m.Run()
	if buildStarted.Load() {
		// A started build is waited for, even when no test ended up using it, so that its
		// directory is removed rather than left behind half-written.
		<-buildDone
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
	}
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitDial(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not accepting connections after %v", addr, within)
}

// mosquittoPath finds Debian's mosquitto. In CI its absence is a failure: `make test` installs it.
func mosquittoPath(t *testing.T) string {
	for _, p := range []string{"mosquitto", "/usr/sbin/mosquitto"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("mosquitto not found; `make test` installs it with scripts/ensure-deps")
	}
	t.Skip("mosquitto not installed (run `make deps`); skipping the interop test")
	return ""
}

// startMosquitto runs a private Mosquitto on a free loopback port and stops it at cleanup.
func startMosquitto(t *testing.T) string {
	t.Helper()
	bin := mosquittoPath(t)
	port := freePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	cfg := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n", port)
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

// stopProcess sends SIGTERM and waits; SIGKILL after 10 s.
func stopProcess(t *testing.T, cmd *exec.Cmd) error {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not stop within 10s of SIGTERM", cmd.Path)
	}
}

type tw struct {
	t      *testing.T
	prefix string
}

func (w tw) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.prefix, p)
	return len(p), nil
}

func testWriter(t *testing.T, prefix string) tw { return tw{t, prefix} }

// observer is a plain MQTT client, like `mosquitto_sub -t 'outpost/#'`, that records what the
// devices and the controller publish.
type observer struct {
	mu     sync.Mutex
	health map[string]wire.Health
	state  map[string]string
	acks   map[string]uint64
}

func newObserver(t *testing.T, addr string) *observer {
	t.Helper()
	o := &observer{health: map[string]wire.Health{}, state: map[string]string{}, acks: map[string]uint64{}}
	// The client id is not a device id, so the broker takes it for an anonymous observer
	// (allowed with --allow-observers), never for a device without its secret.
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("interop:observer").
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(true)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		c.Subscribe(wire.Root+"/#", 1, o.handle)
	})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return o
}

func (o *observer) handle(_ mqtt.Client, m mqtt.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if dev, leaf, ok := wire.ParseDeviceTopic(m.Topic()); ok {
		switch leaf {
		case wire.LeafHealth:
			var h wire.Health
			if wire.Decode(m.Payload(), &h) == nil {
				o.health[dev] = h
			}
		case wire.LeafState:
			var s wire.State
			if wire.Decode(m.Payload(), &s) == nil {
				o.state[dev] = s.State
			}
		}
		return
	}
	rest, ok := strings.CutPrefix(m.Topic(), wire.Root+"/c/")
	if !ok {
		return
	}
	if dev, leaf, _ := strings.Cut(rest, "/"); leaf == wire.LeafAck {
		var a wire.Ack
		if wire.Decode(m.Payload(), &a) == nil {
			o.acks[dev] = a.Seq
		}
	}
}

func (o *observer) waitFor(t *testing.T, what string, within time.Duration, cond func(o *observer) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		ok := cond(o)
		o.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", within, what)
}

// TestMosquittoInterop runs the real controller (external-broker mode) and a real agent through
// Debian's Mosquitto: results reach the controller and are acked, health is readable by any MQTT
// client, and a killed agent is announced offline through its last-will.
func TestMosquittoInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("interop test builds binaries and starts Mosquitto")
	}
	t.Parallel()
	addr := startMosquitto(t)
	outpostBin, agentBin := binaries(t)
	obs := newObserver(t, addr)

	ctrl := exec.Command(outpostBin, "serve", "--broker", "tcp://"+addr, "--data-dir", t.TempDir())
	ctrl.Stdout, ctrl.Stderr = testWriter(t, "controller"), testWriter(t, "controller")
	if err := ctrl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(t, ctrl) })

	const dev = "interop-1"
	model, err := filepath.Abs("../../models/sample/vibration-anomaly-f32.tflite")
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(agentBin, "--broker", "tcp://"+addr, "--id", dev, "--model", model, "--allow-unsigned",
		"--sensor", "sim:vibration", "--data-dir", t.TempDir(), "--health-interval", "1s")
	agent.Stdout, agent.Stderr = testWriter(t, "agent"), testWriter(t, "agent")
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(t, agent) })

	obs.waitFor(t, "agent online", 20*time.Second, func(o *observer) bool { return o.state[dev] == wire.StateOnline })
	obs.waitFor(t, "readable health with inferences", 30*time.Second, func(o *observer) bool {
		h, ok := o.health[dev]
		return ok && h.Inferences > 0 && h.Model.Name != ""
	})
	obs.waitFor(t, "controller acks for 20 results", 30*time.Second, func(o *observer) bool { return o.acks[dev] >= 20 })

	// SIGKILL: no DISCONNECT is sent, so only the broker's last-will can say offline.
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	obs.waitFor(t, "offline state from the last-will", 30*time.Second, func(o *observer) bool { return o.state[dev] == wire.StateOffline })

	if err := stopProcess(t, ctrl); err != nil {
		t.Errorf("controller did not stop cleanly on SIGTERM: %v", err)
	}
}
