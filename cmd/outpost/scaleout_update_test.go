package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestScaleOutUpdateLeaderKilled: two real `outpost serve` replicas on PostgreSQL and Debian
// Mosquitto, the fleet trust created in replica a's data directory only (a copies it into the
// store). A package is pushed through follower b and a rollout started on leader a; then a is
// SIGKILLed while the real agent is paused (SIGSTOP), so every block it fetches afterwards can
// only come from b. The agent downloads, verifies and commits the new model; b takes over the
// rollout engine and drives the rollout to completion.
func TestScaleOutUpdateLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds outpost and starts Mosquitto, PostgreSQL and an agent")
	}
	t.Parallel()
	addr := startMosquitto(t)
	dbURL := pgtest.Start(t, pgtest.Options{}).NewDB(t)
	outpostBin, agentBin := binaries(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(outpostBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("outpost %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	tmp := t.TempDir()
	dataA, dataB, offline := filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), filepath.Join(tmp, "offline-keys")
	run("keys", "init", "--data-dir", dataA, "--out-dir", offline)
	root := filepath.Join(dataA, "tuf", "meta", "1.root.json")
	signing := filepath.Join(tmp, "signing")
	run("keys", "gen", "--out", signing)
	pkgs := map[string]string{}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		man := filepath.Join(tmp, "manifest-"+v+".json")
		writeManifest(t, filepath.Join(sampleDir, "vibration-anomaly-f32.json"), man, func(m map[string]any) { m["version"] = v })
		pkgs[v] = filepath.Join(tmp, "vibration-anomaly-f32-"+v+".opkg")
		run("models", "build", "--tflite", filepath.Join(sampleDir, "vibration-anomaly-f32.tflite"), "--manifest", man, "--key", signing+".key", "--out", pkgs[v])
	}

	type replica struct {
		cmd  *exec.Cmd
		log  *syncBuffer
		api  []string
		http string
	}
	start := func(name, data string) *replica {
		r := &replica{log: &syncBuffer{}, http: "127.0.0.1:" + strconv.Itoa(freePort(t))}
		r.api = []string{"--server", "http://" + r.http, "--token-file", filepath.Join(data, "api-token")}
		r.cmd = exec.Command(outpostBin, "serve", "--broker", "tcp://"+addr, "--store", dbURL, "--data-dir", data,
			"--replica", name, "--log-level", "debug", "--http", r.http,
			"--targets-key", filepath.Join(offline, "targets.key"), "--package-key", signing+".pub")
		r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
		if err := r.cmd.Start(); err != nil {
			t.Fatalf("start replica %s: %v", name, err)
		}
		t.Cleanup(func() {
			stopProcess(t, r.cmd)
			if t.Failed() {
				t.Logf("replica %s log:\n%s", name, r.log.String())
			}
		})
		return r
	}
	waitLog := func(r *replica, what string, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); !strings.Contains(r.log.String(), what); {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log within %v", what, within)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	const leads = "leader election: this replica leads"
	a := start("a", dataA)
	waitLog(a, leads, 20*time.Second)
	b := start("b", dataB) // no trust in its data directory: it serves the store's
	for _, r := range []*replica{a, b} {
		waitLog(r, "blobserve subscribed", 20*time.Second)
		waitDial(t, r.http, 15*time.Second)
	}
	if !strings.Contains(b.log.String(), "shared=true") || strings.Contains(b.log.String(), "copied the fleet trust") {
		t.Fatalf("replica b: want the shared fetch subscription and the store's trust, not a copy")
	}

	obs := newObserver(t, addr)
	const id = "so-agent"
	agent := exec.Command(agentBin, "--broker", "tcp://"+addr, "--id", id, "--model", pkgs["1.0.0"],
		"--package-key", signing+".pub", "--trust-root", root, "--sensor", "sim:vibration",
		"--data-dir", filepath.Join(tmp, id), "--health-interval", "300ms")
	agent.Stdout, agent.Stderr = testWriter(t, id), testWriter(t, id)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGCONT)
		stopProcess(t, agent)
	})
	health := func(check func(h wire.Health) bool) func(o *observer) bool {
		return func(o *observer) bool { h, ok := o.health[id]; return ok && check(h) }
	}
	obs.waitFor(t, "the agent running the signed 1.0.0", 30*time.Second, health(func(h wire.Health) bool { return h.Model.Version == "1.0.0" && !h.Unsigned }))

	// Any replica publishes: the push goes through the follower.
	if out := run(append([]string{"models", "push", pkgs["1.1.0"]}, b.api...)...); !strings.Contains(out, "published") {
		t.Fatalf("models push through replica b: %q", out)
	}
	var rid string
	for deadline := time.Now().Add(20 * time.Second); rid == ""; {
		out := run(append([]string{"rollout", "create", "vibration-anomaly-f32@1.1.0", "--select", "model=vibration-anomaly-f32",
			"--canary", "50%", "--waves", "100%", "--probation", "2s", "--max-failure", "0%", "--json"}, a.api...)...)
		var r rollout.Status
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("rollout create --json: %v\n%s", err, out)
		}
		n := 0
		for _, w := range r.Waves {
			n += len(w.Devices)
		}
		if n == 1 {
			rid = r.ID
			break
		}
		run(append([]string{"rollout", "abort", r.ID}, a.api...)...)
		if time.Now().After(deadline) {
			t.Fatalf("rollout selected %d devices, want 1", n)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Pause the agent, kill the leader, resume: the download happens with b alone.
	if err := agent.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	killedAt := len(b.log.String())
	if err := agent.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("leader a killed with rollout %s started", rid)
	waitLog(b, leads, 20*time.Second)

	var st rollout.Status
	for deadline := time.Now().Add(40 * time.Second); st.State != fleet.RolloutCompleted; {
		out := run(append([]string{"rollout", "status", rid, "--json"}, b.api...)...)
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("rollout status --json: %v\n%s", err, out)
		}
		if st.State == fleet.RolloutHalted || st.State == fleet.RolloutAborted {
			t.Fatalf("rollout %s: %s (%s)", rid, st.State, st.Reason)
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout %s still %s after 40s: %s", rid, st.State, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	obs.waitFor(t, "the agent reporting 1.1.0 committed", 20*time.Second, health(func(h wire.Health) bool {
		return h.Model.Version == "1.1.0" && h.Update != nil && h.Update.Phase == wire.PhaseCommitted
	}))
	after := b.log.String()[killedAt:]
	if !strings.Contains(after, "fetch request") || !strings.Contains(after, "path="+wire.FetchTargetPrefix) {
		t.Errorf("replica b's log shows no target block request answered after a was killed")
	}
	// The keys commands reach the shared repository with --store, replicas running.
	if out := run("keys", "resign-targets", "--store", dbURL, "--targets-key", filepath.Join(offline, "targets.key")); !strings.Contains(out, "vibration-anomaly-f32 1.1.0") {
		t.Errorf("keys resign-targets --store does not list the pushed package:\n%s", out)
	}
	t.Logf("rollout %s completed by replica b; %d fetch requests answered by b after the kill", rid, strings.Count(after, "fetch request"))
}
