package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/registry/registrytest"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestModelsAndRolloutCLI runs `outpost serve --http` in-process with three devices and drives
// the registry and rollout commands through the HTTP API, as an operator would.
func TestModelsAndRolloutCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := newFleetServer(serveConfig{Listen: "127.0.0.1:0", DataDir: dir, updateConfig: updateConfig{
		HTTPAddr: "127.0.0.1:0", PackageKeys: []string{filepath.Join(sampleDir, "demo-signing.pub")}, Publisher: &registrytest.Publisher{},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
	}()
	api := []string{"--server", "http://" + srv.APIAddr, "--token-file", filepath.Join(dir, "api-token")}

	// Three devices running 1.0.0 report health; each records the desired state it is sent.
	old := wire.ModelRef{Name: "vibration-anomaly-f32", Version: "1.0.0"}
	desired := make(chan wire.Desired, 10)
	for _, id := range []string{"dev-a", "dev-b", "dev-c"} {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(srv.BrokerURL).SetClientID(id).SetUsername(id))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("device connect: %v", tok.Error())
		}
		defer c.Disconnect(50)
		c.Subscribe(wire.ControllerTopic(id, wire.LeafDesired), 1, func(_ mqtt.Client, m mqtt.Message) {
			var d wire.Desired
			if wire.Decode(m.Payload(), &d) == nil {
				desired <- d
			}
		}).WaitTimeout(5 * time.Second)
		h, _ := wire.Encode(&wire.Health{Device: id, Time: time.Now(), AgentVersion: "dev", Model: old})
		c.Publish(wire.DeviceTopic(id, wire.LeafHealth), 1, true, h).WaitTimeout(5 * time.Second)
	}

	pkg, err := registrytest.Package("vibration-anomaly-f32", "1.1.0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pkgPath := filepath.Join(t.TempDir(), "vibration-anomaly-f32-1.1.0.opkg")
	os.WriteFile(pkgPath, pkg, 0o644)
	bad := filepath.Join(t.TempDir(), "bad.opkg")
	os.WriteFile(bad, pkg[:len(pkg)/2], 0o644)

	if out := mustCLI(t, append([]string{"models", "push", pkgPath}, api...)...); !strings.Contains(out, "vibration-anomaly-f32@1.1.0 registered: release 1") || !strings.Contains(out, "published") {
		t.Errorf("models push: %q", out)
	}
	if _, err := cli(t, append([]string{"models", "push", bad}, api...)...); err == nil || !strings.Contains(err.Error(), "package refused") || strings.Contains(err.Error(), "\n") {
		t.Errorf("models push of a truncated package: %v", err)
	}
	if out := mustCLI(t, append([]string{"models", "list"}, api...)...); !strings.Contains(out, "vibration-anomaly-f32") || !strings.Contains(out, "1.1.0") {
		t.Errorf("models list: %q", out)
	}
	if out := mustCLI(t, append([]string{"models", "show", "vibration-anomaly-f32@1.1.0"}, api...)...); !strings.Contains(out, "FULLY_CONNECTED") || !strings.Contains(out, "baseline:") {
		t.Errorf("models show: %q", out)
	}
	if _, err := cli(t, "models", "list", "--server", "http://"+srv.APIAddr, "--token-file", filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("models list without a token file: %v", err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for len(srv.Controller.Devices()) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("controller did not see 3 devices")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, args := range [][]string{
		{"--canary", "500"}, {"--waves", "50%,40%"}, {"--min-shadow-agreement", "95%"}, {"--select", "site"},
	} {
		if _, err := cli(t, append(append([]string{"rollout", "create", "vibration-anomaly-f32@1.1.0"}, args...), api...)...); err == nil {
			t.Errorf("rollout create %v: no error", args)
		}
	}
	if out := mustCLI(t, append([]string{"devices", "tag", "dev-c", "site=south", "line=3"}, api...)...); out != "dev-c: line=3 site=south\n" {
		t.Errorf("devices tag: %q", out)
	}
	if out := mustCLI(t, append([]string{"devices", "tags"}, api...)...); !strings.Contains(out, "dev-c   line=3 site=south") {
		t.Errorf("devices tags: %q", out)
	}
	if _, err := cli(t, append([]string{"devices", "tag", "dev-c", "site"}, api...)...); err == nil {
		t.Error("devices tag with a bad KEY=VALUE: no error")
	}
	if out := mustCLI(t, append([]string{"rollout", "create", "vibration-anomaly-f32@1.1.0", "--select", "site=south", "--waves", "100%"}, api...)...); !strings.Contains(out, "1 devices in 1 waves") {
		t.Errorf("rollout create by tag: %q", out)
	}
	mustCLI(t, append([]string{"rollout", "abort", "r1"}, api...)...)
	for _, want := range []bool{false, true} { // dev-c's desired state, then its rollback
		select {
		case d := <-desired:
			if d.Rollout != "r1" || d.Rollback != want {
				t.Errorf("dev-c received %+v, want rollout r1 with rollback %v", d, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("dev-c received no desired state within 10s")
		}
	}
	out := mustCLI(t, append([]string{"rollout", "create", "vibration-anomaly-f32@1.1.0", "--select", "model=vibration-anomaly-f32", "--canary", "30%", "--waves", "100%",
		"--probation", "1m", "--shadow", "30s", "--max-failure", "2%", "--max-p99-latency-ratio", "1.5", "--min-shadow-agreement", "95%", "--max-drift-psi", "0.2"}, api...)...)
	if !strings.Contains(out, "rollout r2 created") || !strings.Contains(out, "3 devices in 2 waves") {
		t.Fatalf("rollout create: %q", out)
	}
	select {
	case d := <-desired:
		if d.Rollout != "r2" || d.Model == nil || d.Model.Target != "vibration-anomaly-f32-1.1.0.opkg" || d.ShadowS != 30 || d.MinShadowAgreement != 0.95 {
			t.Errorf("canary received %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no desired state reached a device within 10s")
	}
	if out := mustCLI(t, append([]string{"rollout", "status", "r2"}, api...)...); !strings.Contains(out, "canary") || !strings.Contains(out, "RUNNING") {
		t.Errorf("rollout status: %q", out)
	}
	var st rollout.Status
	if err := json.Unmarshal([]byte(mustCLI(t, append([]string{"rollout", "status", "r2", "--json"}, api...)...)), &st); err != nil || st.WaveStatus[0].InProgress != 1 {
		t.Errorf("rollout status --json: %+v, %v", st.WaveStatus, err)
	}
	if out := mustCLI(t, append([]string{"rollout", "pause", "r2"}, api...)...); !strings.Contains(out, "paused") {
		t.Errorf("rollout pause: %q", out)
	}
	if _, err := cli(t, append([]string{"rollout", "resume", "r7"}, api...)...); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("rollout resume r7: %v", err)
	}
	if out := mustCLI(t, append([]string{"rollout", "abort", "r2"}, api...)...); !strings.Contains(out, "aborted") {
		t.Errorf("rollout abort: %q", out)
	}
	// --watch ends by itself once nothing can change any more.
	if out := mustCLI(t, append([]string{"rollout", "status", "r2", "--watch", "--interval", "50ms"}, api...)...); !strings.Contains(out, "ABORTED") {
		t.Errorf("rollout status --watch: %q", out)
	}
	if out := mustCLI(t, append([]string{"rollout", "list"}, api...)...); !strings.Contains(out, "r2") || !strings.Contains(out, "aborted") {
		t.Errorf("rollout list: %q", out)
	}
}

// TestRenderStatus pins the status view (progress bars and gate figures) in a golden file.
func TestRenderStatus(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	dev := func(id, outcome string, gen uint64, reason string) fleet.RolloutDevice {
		return fleet.RolloutDevice{ID: id, Outcome: outcome, Generation: gen, Reason: reason}
	}
	r := fleet.Rollout{ID: "r4", State: fleet.RolloutHalted, Reason: "wave 25%: failure rate 10% (2 of 20) is above the 2% gate", Created: t0, Wave: 1,
		Spec: fleet.RolloutSpec{Model: "vibration-anomaly-f32@1.1.0", Canary: 0.05, Waves: []float64{0.25, 0.5, 1}, SuccessThreshold: 1,
			Probation: 10 * time.Minute, Shadow: 5 * time.Minute, Gates: fleet.Gates{MaxFailure: 0.02, MaxP99LatencyRatio: 1.5, MinShadowAgreement: 0.95, MaxDriftPSI: 0.2}},
		Waves: []fleet.Wave{
			{Name: "canary", State: fleet.WavePassed, Devices: []fleet.RolloutDevice{dev("d1", fleet.OutcomeSucceeded, 1, ""), dev("d2", fleet.OutcomeSucceeded, 1, "")}},
			{Name: "25%", State: fleet.WaveHalted, Devices: []fleet.RolloutDevice{
				dev("d3", fleet.OutcomeFailed, 2, "gate: shadow agreement 62% is below 95%"), dev("d4", fleet.OutcomeRolledBack, 2, "rollout halted"),
				dev("d5", fleet.OutcomeRolledBack, 2, "rollout halted"), dev("d6", fleet.OutcomePending, 1, "")}},
			{Name: "100%", State: fleet.WavePending, Devices: []fleet.RolloutDevice{dev("d7", "", 0, ""), dev("d8", "", 0, "")}},
		},
		Skipped: []fleet.Skipped{{ID: "d9", Reason: "agent 0.1.0 is older than the model's minimum 0.2.0"}},
	}
	st := rollout.Summarize(r)
	st.WaveStatus[0].P99LatencyRatio, st.WaveStatus[0].ShadowAgreement, st.WaveStatus[0].DriftPSI = f(1.08), f(0.99), f(0.03)
	st.WaveStatus[1].ShadowAgreement = f(0.62)
	var b strings.Builder
	renderStatus(&b, st)
	golden := filepath.Join("testdata", "rollout-status.golden")
	if *updateGolden {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("status view differs from %s:\n%s\nwant:\n%s", golden, b.String(), want)
	}
}
