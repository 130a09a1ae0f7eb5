package main_test

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/agent/update"
	"github.com/outpost-ml/outpost/agent/update/updatetest"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

var (
	updateBinaryOnce sync.Once
	updateBinary     string
	updateBinaryErr  error
)

// testUpdateBinary builds the agent with the updatetest wiring (directory repository,
// --test-pause-in) once per test run.
func testUpdateBinary(t *testing.T) string {
	t.Helper()
	updateBinaryOnce.Do(func() {
		updateBinary = filepath.Join(filepath.Dir(binary), "outpost-agent-updatetest")
		out, err := shippedBuild(updateBinary, "-tags", "updatetest").CombinedOutput()
		if err != nil {
			updateBinaryErr = err
			t.Logf("%s", out)
		}
	})
	if updateBinaryErr != nil {
		t.Fatal(updateBinaryErr)
	}
	return updateBinary
}

// killRig is one device directory and an update repository for it.
type killRig struct {
	t       *testing.T
	bin     string
	dataDir string
	repo    *updatetest.Repo
	metaPub string // targets-list public key file
	args    []string
}

func newKillRig(t *testing.T) *killRig {
	dir := t.TempDir()
	_, metaKey, err := bundle.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := updatetest.NewRepo(filepath.Join(dir, "repo"), metaKey)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := bundle.MarshalPublicKey(metaKey.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	metaPub := filepath.Join(dir, "meta.pub")
	if err := os.WriteFile(metaPub, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &killRig{t: t, bin: testUpdateBinary(t), dataDir: filepath.Join(dir, "data"), repo: repo, metaPub: metaPub}
	// No broker listens on port 1: the agent runs, buffers its results and retries.
	r.args = []string{"--broker", "tcp://127.0.0.1:1", "--id", "kill-1", "--model", samplePackage, "--package-key", demoKey,
		"--sensor", "sim:vibration?seed=9", "--data-dir", r.dataDir, "--log-level", "debug",
		"--test-update-repo", repo.Dir, "--test-update-key", metaPub}
	return r
}

// start runs the agent with extra flags.
func (r *killRig) start(extra ...string) (*syncBuffer, func(os.Signal) int) {
	r.t.Helper()
	cmd := exec.Command(r.bin, append(append([]string{}, r.args...), extra...)...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		done <- code
	}()
	var once sync.Once
	code := -1
	stop := func(sig os.Signal) int {
		once.Do(func() {
			cmd.Process.Signal(sig)
			select {
			case code = <-done:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				code = <-done
				r.t.Errorf("agent did not stop within 15s of %v; stderr:\n%s", sig, stderr)
			}
		})
		return code
	}
	r.t.Cleanup(func() { stop(syscall.SIGKILL) })
	return stderr, stop
}

func waitLog(t *testing.T, stderr *syncBuffer, what string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(stderr.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within %v:\n%s", what, timeout, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// state reads the update record and the buffered results' models from the stopped agent's
// data dir.
func (r *killRig) state() (phase string, active string, models map[string]int) {
	r.t.Helper()
	buf, err := boltbuf.Open(filepath.Join(r.dataDir, assemble.BufferFile), boltbuf.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	defer buf.Close()
	raw, err := buf.State().Get(update.RecordName)
	if err != nil {
		r.t.Fatal(err)
	}
	var rec struct {
		Phase  string `json:"phase"`
		Reason string `json:"reason"`
		Active struct {
			Ref wire.ModelRef `json:"ref"`
		} `json:"active"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		r.t.Fatal(err)
	}
	rs, err := buf.Oldest(1 << 20)
	if err != nil {
		r.t.Fatal(err)
	}
	models = map[string]int{}
	for _, res := range rs {
		models[res.Model]++
	}
	r.t.Logf("record: phase %s active %s reason %q; buffered results by model %v", rec.Phase, rec.Active.Ref, rec.Reason, models)
	return rec.Phase, rec.Active.Ref.String(), models
}

const (
	oldModel = "vibration-anomaly-f32@1.0.0"
	newModel = "vibration-anomaly-i8@1.0.0"
)

// The real agent binary, SIGKILLed in each update phase (and mid-download), restarts on a
// working model and finishes the update; killed twice in probation it rolls back.
func TestSIGKILLInEachPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the agent binary twice per phase")
	}
	pkg, err := os.ReadFile("../../models/sample/vibration-anomaly-i8-1.0.0.opkg")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		phase       string
		killTwice   bool   // kill again in the same phase after the restart
		wantPhase   string // after the last restart
		wantActive  string
		wantResults string // a model whose results must be buffered after the restart
	}{
		{phase: wire.PhaseDownloading, wantPhase: wire.PhaseCommitted, wantActive: newModel},
		{phase: wire.PhaseVerifying, wantPhase: wire.PhaseCommitted, wantActive: newModel},
		{phase: wire.PhaseStaging, wantPhase: wire.PhaseCommitted, wantActive: newModel},
		{phase: wire.PhaseShadow, wantPhase: wire.PhaseCommitted, wantActive: newModel},
		{phase: wire.PhaseActivating, wantPhase: wire.PhaseCommitted, wantActive: newModel},
		{phase: wire.PhaseProbation, wantPhase: wire.PhaseCommitted, wantActive: newModel},
		{phase: wire.PhaseProbation, killTwice: true, wantPhase: wire.PhaseRolledBack, wantActive: oldModel},
	}
	for _, tt := range tests {
		name := tt.phase
		if tt.killTwice {
			name += "-twice"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newKillRig(t)
			if _, err := r.repo.Add("vibration-anomaly-i8-1.0.0.opkg", pkg, update.TargetCustom{Name: "vibration-anomaly-i8", Version: "1.0.0", Release: 1}); err != nil {
				t.Fatal(err)
			}
			if err := r.repo.SetDesired(wire.Desired{V: wire.SchemaVersion, Generation: 1, Rollout: "kill", ShadowS: 1, ProbationS: 3,
				Model: &wire.DesiredModel{Name: "vibration-anomaly-i8", Version: "1.0.0", Target: "vibration-anomaly-i8-1.0.0.opkg"}}); err != nil {
				t.Fatal(err)
			}
			var extra []string
			if tt.phase == wire.PhaseDownloading {
				// 8 KiB/s: the 19 KiB package takes over 2 s, killed in the middle of it.
				extra = []string{"--test-download-rate", "8192"}
			} else {
				extra = []string{"--test-pause-in", tt.phase}
			}
			stderr, stop := r.start(extra...)
			waitLog(t, stderr, "outpost-agent starting", 10*time.Second)
			if !strings.Contains(stderr.String(), "model="+oldModel) {
				t.Fatalf("first start not on %s:\n%s", oldModel, stderr)
			}
			if tt.phase == wire.PhaseDownloading {
				waitLog(t, stderr, "phase=downloading", 10*time.Second)
				time.Sleep(time.Second)
			} else {
				waitLog(t, stderr, "TEST: paused in phase "+tt.phase, 20*time.Second)
			}
			stop(syscall.SIGKILL)
			if tt.phase == wire.PhaseDownloading {
				parts, _ := filepath.Glob(filepath.Join(r.dataDir, "downloads", "*.part"))
				if len(parts) != 1 {
					t.Fatalf("partial downloads after the kill: %v", parts)
				}
				if fi, err := os.Stat(parts[0]); err != nil || fi.Size() == 0 || fi.Size() >= int64(len(pkg)) {
					t.Fatalf("partial download %v, want part of %d bytes", fi, len(pkg))
				}
			}
			if tt.killTwice {
				// Probation goes on after the restart without being entered again: kill the
				// agent as soon as it says so, well within the 3 s probation.
				stderr, stop = r.start()
				waitLog(t, stderr, "agent restarted during probation", 10*time.Second)
				stop(syscall.SIGKILL)
				if strings.Contains(stderr.String(), "phase=committed") {
					t.Fatal("probation ended before the second kill")
				}
			}

			// Restart: a working model runs at once and the update ends one way or the other.
			stderr, stop = r.start()
			waitLog(t, stderr, "outpost-agent starting", 10*time.Second)
			waitLog(t, stderr, "phase="+tt.wantPhase, 30*time.Second)
			// Let the model that now runs buffer a few results (a window every 0.64 s).
			time.Sleep(2 * time.Second)
			if code := stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
			}
			phase, active, models := r.state()
			if phase != tt.wantPhase || active != tt.wantActive {
				t.Fatalf("record phase %s active %s, want %s on %s; stderr:\n%s", phase, active, tt.wantPhase, tt.wantActive, stderr)
			}
			if models[tt.wantActive] == 0 {
				t.Errorf("no results of %s buffered: %v", tt.wantActive, models)
			}
		})
	}
}
