package main_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/fleet/broker/mochitest"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

const sampleModel = "../../models/sample/vibration-anomaly-f32.tflite"

// samplePackage is sampleModel's signed package, and demoKey the public half of the DEMO
// key that signed it (never trusted outside tests and demos).
const (
	samplePackage = "../../models/sample/vibration-anomaly-f32-1.0.0.opkg"
	demoKey       = "../../models/sample/demo-signing.pub"
)

// foreignKey writes a public key that signed nothing here and returns its file.
func foreignKey(t *testing.T) string {
	t.Helper()
	pub, _, err := bundle.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := bundle.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "foreign.pub")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outpost-agent-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "outpost-agent")
	out, err := shippedBuild(binary).CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testVersion is the version the test binaries report (TestHelpAndVersion and the health
// reports check it).
const testVersion = "1.2.3-test"

// shippedBuild is the go build command of `make build` and `make cross`, the binary users get
// (no cgo, -trimpath, stripped), with the test's version, so that what the footprint tests
// measure is what a device runs. extra goes before the package (e.g. -tags).
func shippedBuild(out string, extra ...string) *exec.Cmd {
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w -X main.version=" + testVersion}, extra...)
	cmd := exec.Command("go", append(args, "-o", out, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runAgent(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestHelpAndVersion(t *testing.T) {
	out, _, code := runAgent(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit code %d", code)
	}
	for _, f := range []string{"broker", "id", "model", "manifest", "sensor", "data-dir", "health-interval", "log-level", "max-buffered", "version"} {
		if !strings.Contains(out, "  -"+f+" ") && !strings.Contains(out, "  -"+f+"\n") {
			t.Errorf("--help does not list -%s:\n%s", f, out)
		}
	}
	if !strings.Contains(out, "sim:vibration") {
		t.Errorf("--help does not list the sensor kinds")
	}
	out, _, code = runAgent(t, "--version")
	if code != 0 || out != "outpost-agent "+testVersion+"\n" {
		t.Fatalf("--version = %q, exit %d", out, code)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.tflite")
	if err := os.WriteFile(garbage, []byte("not a model"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := []string{"--id", "dev-1", "--model", sampleModel, "--allow-unsigned", "--data-dir", filepath.Join(dir, "data")}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"unknown flag", append([]string{"--bogus"}, good...), 2, "flag provided but not defined: -bogus"},
		{"missing id", []string{"--model", sampleModel, "--allow-unsigned", "--data-dir", dir}, 2, "missing --id"},
		{"missing model flag", []string{"--id", "d", "--data-dir", dir}, 2, "missing --model"},
		{"missing data dir", []string{"--id", "d", "--model", sampleModel, "--allow-unsigned"}, 2, "missing --data-dir"},
		{"extra argument", append(good, "extra"), 2, `unexpected argument "extra"`},
		{"bad log level", append(good, "--log-level", "loud"), 2, `--log-level "loud"`},
		{"bad interval", append(good, "--health-interval", "0s"), 2, "--health-interval 0s must be positive"},
		{"bad duration", append(good, "--health-interval", "soon"), 2, "health-interval"},
		{"missing model", []string{"--id", "d", "--model", filepath.Join(dir, "none.tflite"), "--allow-unsigned", "--data-dir", dir}, 1, "none.tflite: no such file"},
		{"malformed model", []string{"--id", "d", "--model", garbage, "--allow-unsigned", "--manifest", strings.TrimSuffix(sampleModel, ".tflite") + ".json", "--data-dir", dir}, 1, "does not match the manifest"},
		{"missing manifest", []string{"--id", "d", "--model", sampleModel, "--allow-unsigned", "--manifest", file + ".json", "--data-dir", dir}, 1, "read manifest"},
		{"bad id", []string{"--id", "a/b", "--model", sampleModel, "--allow-unsigned", "--data-dir", dir}, 1, "device id"},
		{"bad sensor", append(good, "--sensor", "sim:vibration?fault=rust"), 1, `fault "rust"`},
		{"empty sensor", append(good, "--sensor", ""), 2, "empty sensor spec"},
		{"bad second sensor", append(good, "--sensor", "sim:vibration", "--sensor", "sim:nope"), 1, `unknown kind "sim:nope"`},
		{"sensor rates differ", append(good, "--sensor", "sim:vibration", "--sensor", "sim:temperature?rate=10"), 1,
			"sim:vibration samples at 50 Hz but sim:temperature at 10 Hz"},
		{"too many channels", append(good, "--sensor", "sim:vibration", "--sensor", "sim:temperature?rate=50"), 1,
			"gives 2 channels (sim:vibration.0, sim:temperature.0), model wants 1"},
		{"data dir is a file", []string{"--id", "d", "--model", sampleModel, "--allow-unsigned", "--data-dir", file}, 1, "not a directory"},
		{"bad broker", append(good, "--broker", "localhost:1883"), 1, "broker"},
		{"bad buffer bytes", append(good, "--max-buffered-bytes", "0"), 2, "--max-buffered-bytes 0 must be positive"},
		{"bad retention", append(good, "--retention", "drop-random"), 2, `--retention "drop-random"`},
		{"bad upload rate", append(good, "--max-upload-rate", "-1"), 2, "--max-upload-rate -1"},
		{"NaN upload rate", append(good, "--max-upload-rate", "NaN"), 2, "--max-upload-rate NaN"},
		{"bad batch max", append(good, "--batch-max", "0"), 2, "--batch-max 0"},
		{"batch max over the wire limit", append(good, "--batch-max", "5001"), 2, "--batch-max 5001 must be 1 to 5000"},
		{"bad batch delay", append(good, "--batch-delay", "-1s"), 2, "--batch-delay -1s"},
		{"zero commit interval", append(good, "--commit-interval", "0s"), 2, "--commit-interval 0s"},
		{"commit interval over a minute", append(good, "--commit-interval", "2m"), 2, "--commit-interval 2m0s"},
		{"unsigned without the flag", []string{"--id", "d", "--model", sampleModel, "--data-dir", dir}, 1, "not a signed .opkg package"},
		{"package without a key", []string{"--id", "d", "--model", samplePackage, "--data-dir", dir}, 1, "no package key"},
		{"package with a foreign key", []string{"--id", "d", "--model", samplePackage, "--package-key", foreignKey(t), "--data-dir", dir}, 1, "signature does not verify"},
		{"bad package key", append(good, "--package-key", file), 2, "--package-key"},
		{"keep one model", append(good, "--keep-models", "1"), 2, "--keep-models 1"},
		{"no arena", append(good, "--arena-budget", "0"), 2, "--arena-budget 0"},
		{"negative drift window", append(good, "--drift-window", "-1"), 2, "--drift-window -1 must be ≥ 0"},
		{"no threads", append(good, "--threads", "0"), 2, "--threads 0 must be 1 to 64"},
		{"too many threads", append(good, "--threads", "65"), 2, "--threads 65 must be 1 to 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runAgent(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stderr %q", code, tt.wantCode, errOut)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "outpost-agent: ") || !strings.Contains(errOut, tt.want) {
				t.Fatalf("stderr = %q, want one line containing %q", errOut, tt.want)
			}
		})
	}
}

func startBroker(t *testing.T) string {
	t.Helper()
	return mochitest.Start(t, "127.0.0.1:0", nil).URL()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within 20s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startAgent runs the binary in the background; wait sends sig and returns the exit code.
func startAgent(t *testing.T, args ...string) (stderr *syncBuffer, wait func(sig os.Signal) int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	code := -1
	wait = func(sig os.Signal) int {
		once.Do(func() {
			cmd.Process.Signal(sig)
			select {
			case err := <-done:
				code = 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				}
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Errorf("agent did not stop within 15s of %v; stderr:\n%s", sig, stderr)
			}
		})
		return code
	}
	t.Cleanup(func() { wait(syscall.SIGKILL) })
	return stderr, wait
}

func TestRunAgainstBroker(t *testing.T) {
	broker := startBroker(t)
	var mu sync.Mutex
	var results []wire.Result
	var health *wire.Health
	var state string
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("ctl").SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	handlers := map[string]paho.MessageHandler{
		wire.DeviceTopic("dev-1", wire.LeafResults): func(c paho.Client, m paho.Message) {
			var b wire.ResultBatch
			if wire.Decode(m.Payload(), &b) != nil || len(b.Results) == 0 {
				return
			}
			mu.Lock()
			results = append(results, b.Results...)
			mu.Unlock()
			ack, _ := wire.Encode(&wire.Ack{Seq: b.Results[len(b.Results)-1].Seq, Epoch: b.Epoch})
			c.Publish(wire.ControllerTopic("dev-1", wire.LeafAck), 1, false, ack)
		},
		wire.DeviceTopic("dev-1", wire.LeafHealth): func(_ paho.Client, m paho.Message) {
			var h wire.Health
			if wire.Decode(m.Payload(), &h) == nil {
				mu.Lock()
				health = &h
				mu.Unlock()
			}
		},
		wire.DeviceTopic("dev-1", wire.LeafState): func(_ paho.Client, m paho.Message) {
			var s wire.State
			if wire.Decode(m.Payload(), &s) == nil {
				mu.Lock()
				state = s.State
				mu.Unlock()
			}
		},
	}
	for topic, h := range handlers {
		if tok := c.Subscribe(topic, 1, h); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}

	dataDir := filepath.Join(t.TempDir(), "data")
	stderr, wait := startAgent(t, "--broker", broker, "--id", "dev-1", "--model", sampleModel, "--allow-unsigned",
		"--sensor", "sim:vibration?seed=5", "--data-dir", dataDir, "--health-interval", "200ms")
	eventually(t, "online, health and acked results", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return state == wire.StateOnline && health != nil && health.AckedSeq >= 2 && len(results) >= 2
	})
	mu.Lock()
	h := *health
	mu.Unlock()
	if h.AgentVersion != testVersion || h.Model.String() != "vibration-anomaly-f32@1.0.0" || h.SensorStatus != "ok" || h.LatencyP99Ms <= 0 {
		t.Fatalf("health = %+v", h)
	}
	if code := wait(os.Interrupt); code != 0 {
		t.Fatalf("exit code after SIGINT = %d; stderr:\n%s", code, stderr)
	}
	eventually(t, "offline announced", func() bool { mu.Lock(); defer mu.Unlock(); return state == wire.StateOffline })
	if s := stderr.String(); strings.Contains(s, "level=ERROR") {
		t.Fatalf("errors logged:\n%s", s)
	}

	b, err := boltbuf.Open(filepath.Join(dataDir, "buffer.db"), boltbuf.Options{})
	if err != nil {
		t.Fatalf("reopen buffer after stop: %v", err)
	}
	defer b.Close()
	if st := b.Stats(); st.LastSeq < 2 || st.AckedSeq < 2 || st.Len != st.LastSeq-st.AckedSeq {
		t.Fatalf("buffer after stop: %+v", st)
	}
}

// TestSensorFlags runs the binary with a recording replayed as fast as possible, and with
// three --sensor flags feeding the 3-channel activity model; no broker is needed to see the
// results committed.
func TestSensorFlags(t *testing.T) {
	dir := t.TempDir()
	var rec strings.Builder
	rec.WriteString("timestamp,accel\n")
	for i := range 500 { // 10 s at 50 Hz
		fmt.Fprintf(&rec, "%.2f,%.3f\n", float64(i)*0.02, math.Sin(float64(i)/3))
	}
	recPath := filepath.Join(dir, "rec.csv")
	if err := os.WriteFile(recPath, []byte(rec.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		channel string // in the startup log line
		lastSeq int    // results expected, or 0 for "some"
	}{
		// 64-sample windows every 32 samples over 500 rows: 14 results.
		{"replay at max", []string{"--model", sampleModel, "--allow-unsigned", "--sensor", "replay?speed=max&file=" + recPath}, "channels=accel", 14},
		{"three sensors", []string{"--model", "../../models/sample/activity-f32.tflite", "--allow-unsigned",
			"--sensor", "sim:temperature?rate=25&seed=1", "--sensor", "sim:temperature?rate=25&seed=2", "--sensor", "sim:temperature?rate=25&seed=3"},
			"channels=sim:temperature.0,sim:temperature.0#2,sim:temperature.0#3", 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := filepath.Join(dir, fmt.Sprint("data", i))
			args := append([]string{"--broker", "tcp://127.0.0.1:1", "--id", "dev-s", "--data-dir", dataDir, "--log-level", "debug"}, tt.args...)
			start := time.Now()
			stderr, wait := startAgent(t, args...)
			want := "msg=committed"
			if tt.lastSeq > 0 {
				want = fmt.Sprintf("last_seq=%d\n", tt.lastSeq)
			}
			eventually(t, "results committed", func() bool { return strings.Contains(stderr.String(), want) })
			took := time.Since(start)
			if code := wait(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit code after SIGTERM = %d; stderr:\n%s", code, stderr)
			}
			if s := stderr.String(); !strings.Contains(s, tt.channel) {
				t.Fatalf("stderr does not name the channels %q:\n%s", tt.channel, s)
			}
			if tt.lastSeq == 0 {
				return
			}
			if took > 8*time.Second {
				t.Errorf("a 10 s recording at speed=max took %v", took)
			}
			b, err := boltbuf.Open(filepath.Join(dataDir, "buffer.db"), boltbuf.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if st := b.Stats(); st.LastSeq != uint64(tt.lastSeq) {
				t.Fatalf("buffer holds up to seq %d, want %d", st.LastSeq, tt.lastSeq)
			}
		})
	}
}

func TestRunWithoutBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now

	dataDir := t.TempDir()
	stderr, wait := startAgent(t, "--broker", "tcp://"+addr, "--id", "dev-2", "--model", sampleModel, "--allow-unsigned",
		"--data-dir", dataDir, "--log-level", "debug")
	eventually(t, "results committed while the broker is unreachable", func() bool {
		s := stderr.String()
		return strings.Contains(s, "broker unreachable") && strings.Contains(s, "msg=committed")
	})
	if code := wait(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d; stderr:\n%s", code, stderr)
	}
	s := stderr.String()
	if n := strings.Count(s, "broker unreachable"); n > 4 {
		t.Errorf("broker unreachable logged %d times in a few seconds; want it once per backoff step", n)
	}
	b, err := boltbuf.Open(filepath.Join(dataDir, "buffer.db"), boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st := b.Stats(); st.LastSeq < 1 || st.Len != st.LastSeq || st.AckedSeq != 0 {
		t.Fatalf("buffer after running without a broker = %+v, want every result kept", st)
	}
}
