package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/monitor"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/sim"
)

// TestMonitoringEndToEnd: a real agent (the sample package, a replayed simulated machine
// with a 2-unit mean shift injected) and `outpost serve` in-process (embedded broker, bbolt
// store, HTTP API, monitor service). Drift summaries arrive and are stored, a drift alert is
// published on outpost/v1/alerts, labels arrive over MQTT (the labeller user) and over
// HTTP (outpost feedback), a device cannot label, and accuracy matches the labels given.
func TestMonitoringEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	labPass := filepath.Join(dir, "labeller.secret")
	if err := os.WriteFile(labPass, []byte("labeller-secret-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := newFleetServer(serveConfig{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "ctl"),
		updateConfig: updateConfig{HTTPAddr: "127.0.0.1:0"}, LabellerPasswordFile: labPass})
	if err != nil {
		t.Fatal(err)
	}
	stop := runStoppable("controller", srv.Run)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	api := []string{"--server", "http://" + srv.APIAddr, "--token-file", filepath.Join(dir, "ctl", httpapi.TokenFile)}

	var mu sync.Mutex
	var alerts []wire.DriftAlert
	obs := mqttClient(t, srv.BrokerURL, "observer-test", "", "")
	if tok := obs.Subscribe(wire.TopicAlerts, 1, func(_ paho.Client, m paho.Message) {
		var a wire.DriftAlert
		if err := wire.Decode(m.Payload(), &a); err != nil {
			t.Errorf("alert %s: %v", m.Payload(), err)
			return
		}
		mu.Lock()
		alerts = append(alerts, a)
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	csv := filepath.Join(dir, "vibration.csv")
	writeTimedVibrationCSV(t, csv, 3000)
	replay := "replay?" + url.Values{"file": {csv}, "speed": {"50"}, "loop": {"true"}, "rate": {"50"}}.Encode()
	spec := "drift?" + url.Values{"source": {replay}, "drift": {"meanshift:2@0s"}}.Encode()
	d, err := assemble.New(assemble.Config{DeviceID: "pump-1", Broker: srv.BrokerURL, Sensors: []string{spec},
		ModelPath: filepath.Join(sampleDir, "vibration-anomaly-f32-1.0.0.opkg"), PackageKey: bundle.DemoKey().Public().(ed25519.PublicKey), DataDir: filepath.Join(dir, "pump-1"), HealthInterval: 500 * time.Millisecond, AgentVersion: version,
		DriftWindow: 100, Link: mqttlink.Options{ConnectRetryInterval: 200 * time.Millisecond, MaxReconnectInterval: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	stopAgent := runStoppable("agent", d.Run)
	t.Cleanup(func() {
		if err := stopAgent(); err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	const model = "vibration-anomaly-f32@1.0.0"
	ctx := context.Background()

	// Drift: stored summaries, the fleet view, and one alert (not one per window).
	waitUntil(t, "a drift alert for pump-1", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(alerts) > 0
	})
	mu.Lock()
	a := alerts[0]
	mu.Unlock()
	if a.Device != "pump-1" || a.Model.String() != model || a.State != wire.AlertDrifting || len(a.Features) == 0 || !strings.HasPrefix(a.Features[0], "accel: ") {
		t.Fatalf("alert %+v", a)
	}
	recs, err := srv.Store.Drift(ctx, fleet.DriftQuery{Device: "pump-1"})
	if err != nil || len(recs) == 0 {
		t.Fatalf("stored drift records: %d, %v", len(recs), err)
	}
	var view []monitor.ModelDrift
	if err := json.Unmarshal([]byte(mustCLI(t, append([]string{"drift", "--json", "--since="}, api...)...)), &view); err != nil {
		t.Fatal(err)
	}
	if len(view) != 1 || view[0].Model != model || view[0].Drifting != 1 || !view[0].Rows[0].Drifting || view[0].Rows[0].Since.IsZero() {
		t.Fatalf("drift view %+v", view)
	}
	if out := mustCLI(t, append([]string{"drift", "--model", "vibration-anomaly-f32", "--since="}, api...)...); !strings.Contains(out, "DRIFTING") || !strings.Contains(out, "1 of 1 devices drifting") {
		t.Errorf("outpost drift printed:\n%s", out)
	}
	// --watch redraws until interrupted.
	wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	root := newRootCmd()
	var wout strings.Builder
	root.SetOut(&wout)
	root.SetArgs(append([]string{"drift", "--watch", "--interval", "200ms", "--since="}, api...))
	if err := root.ExecuteContext(wctx); err != nil {
		t.Errorf("drift --watch: %v", err)
	}
	cancel()
	if n := strings.Count(wout.String(), "outpost drift  "); n < 2 || !strings.Contains(wout.String(), "DRIFTING") {
		t.Errorf("drift --watch drew %d times:\n%s", n, wout.String())
	}
	// Further drifted windows keep the device drifting without new alerts.
	n := len(recs)
	waitUntil(t, "two more drift windows", 30*time.Second, func() bool {
		r, _ := srv.Store.Drift(ctx, fleet.DriftQuery{Device: "pump-1"})
		return len(r) >= n+2
	})
	mu.Lock()
	if len(alerts) != 1 {
		t.Errorf("%d alerts for one continuing drift: %+v", len(alerts), alerts)
	}
	mu.Unlock()

	// Labels for 20 stored results: truth "normal" for every third, "anomaly" otherwise.
	var rs []fleet.StoredResult
	waitUntil(t, "21 stored results", 30*time.Second, func() bool {
		rs, _ = srv.Store.QueryResults(ctx, fleet.ResultQuery{Device: "pump-1", Limit: 21})
		return len(rs) == 21
	})
	spare := rs[20] // the one a device tries to label
	rs = rs[:20]
	truth := func(i int) string {
		if i%3 == 0 {
			return "normal"
		}
		return "anomaly"
	}
	var tp, fp, fn, tn int
	for i, r := range rs {
		switch pos := truth(i) == "anomaly"; {
		case pos && r.Result.Event:
			tp++
		case !pos && r.Result.Event:
			fp++
		case pos:
			fn++
		default:
			tn++
		}
	}
	// A device may not label: the broker refuses its publish on the feedback topic.
	hostile := mqttClient(t, srv.BrokerURL, "pump-9", "", "")
	bad, _ := wire.Encode(&wire.FeedbackBatch{Labels: []wire.FeedbackLabel{{Device: "pump-1", Seq: spare.Result.Seq, Label: "hostile"}}})
	hostile.Publish(wire.TopicFeedback, 1, false, bad).WaitTimeout(2 * time.Second)
	// The first ten over MQTT as the labeller (--labeller-password-file)...
	labeller := mqttClient(t, srv.BrokerURL, "labeller-test", broker.DefaultLabellerUser, "labeller-secret-123")
	var batch wire.FeedbackBatch
	for i, r := range rs[:10] {
		batch.Labels = append(batch.Labels, wire.FeedbackLabel{Device: "pump-1", Seq: r.Result.Seq, Label: truth(i), Source: "line-check"})
	}
	payload, _ := wire.Encode(&batch)
	if tok := labeller.Publish(wire.TopicFeedback, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish labels: %v", tok.Error())
	}
	// ...the other ten over HTTP with the CLI.
	for i, r := range rs[10:] {
		mustCLI(t, append([]string{"feedback", "pump-1", strconv.FormatUint(r.Result.Seq, 10), truth(i + 10)}, api...)...)
	}
	waitUntil(t, "20 labelled results", 20*time.Second, func() bool {
		fb, _ := srv.Store.FeedbackResults(ctx, "pump-1", time.Time{}, 0)
		return len(fb) == 20
	})
	fb, _ := srv.Store.FeedbackResults(ctx, "pump-1", time.Time{}, 0)
	sources := map[string]int{}
	for _, r := range fb {
		sources[r.Feedback.Source]++
		if r.Result.Seq == spare.Result.Seq || r.Feedback.Label == "hostile" {
			t.Errorf("a device's label was stored: %+v", r.Feedback)
		}
	}
	if sources["line-check"] != 10 || sources["cli"] != 10 {
		t.Errorf("label sources %v, want 10 line-check (MQTT) and 10 cli (HTTP)", sources)
	}

	var rep monitor.AccuracyReport
	if err := json.Unmarshal([]byte(mustCLI(t, append([]string{"accuracy", "--device", "pump-1", "--json", "--since="}, api...)...)), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Totals) != 1 || rep.Totals[0].Model != model || rep.Totals[0].Anomaly == nil {
		t.Fatalf("accuracy %+v", rep)
	}
	got := rep.Totals[0]
	if ga := got.Anomaly; got.Labelled != 20 || got.Correct != tp+tn || ga.TP != tp || ga.FP != fp || ga.FN != fn || ga.TN != tn {
		t.Fatalf("accuracy %d labelled %d correct, confusion %+v; want 20, %d, tp %d fp %d fn %d tn %d", got.Labelled, got.Correct, *ga, tp+tn, tp, fp, fn, tn)
	}
	t.Logf("20 labels: tp %d fp %d fn %d tn %d, accuracy %.2f; %d drift windows, %d alert", tp, fp, fn, tn, got.Accuracy, n+2, 1)
	if out := mustCLI(t, append([]string{"accuracy", "--since="}, api...)...); !strings.Contains(out, "pump-1") || !strings.Contains(out, "anomaly ") {
		t.Errorf("outpost accuracy printed:\n%s", out)
	}
	if st := srv.Monitor.Stats(); st.LabelsStored != 10 || st.Alerts != 1 || st.DriftSeen == 0 {
		t.Errorf("monitor stats %+v", st)
	}
}

// mqttClient connects a paho client to the broker, disconnected at cleanup.
func mqttClient(t *testing.T, broker, id, user, pass string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetUsername(user).SetPassword(pass).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// writeTimedVibrationCSV records n samples of the simulated machine at its sample rate, so
// a replay can run it faster than real time.
func writeTimedVibrationCSV(t *testing.T, path string, n int) {
	t.Helper()
	v := sim.NewVibration(sim.VibrationConfig{Seed: 5, SampleRateHz: sim.DefaultSampleRateHz, ShaftHz: sim.DefaultShaftHz})
	var b strings.Builder
	b.WriteString("timestamp,accel\n")
	for i := range n {
		fmt.Fprintf(&b, "%.4f,%g\n", float64(i)/sim.DefaultSampleRateHz, v.Next())
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDriftSummariesSurviveOutage: the controller (and its embedded broker) stops while a
// drifting agent keeps closing windows; after it restarts on the same data directory every
// window of the agent's run is stored, none missing, none twice.
func TestDriftSummariesSurviveOutage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	start := func() (*fleetServer, func() error) {
		srv, err := newFleetServer(serveConfig{Listen: addr, DataDir: filepath.Join(dir, "ctl")})
		if err != nil {
			t.Fatal(err)
		}
		return srv, runStoppable("controller", srv.Run)
	}
	srv, stop := start()
	csv := filepath.Join(dir, "vibration.csv")
	writeTimedVibrationCSV(t, csv, 3000)
	replay := "replay?" + url.Values{"file": {csv}, "speed": {"50"}, "loop": {"true"}, "rate": {"50"}}.Encode()
	spec := "drift?" + url.Values{"source": {replay}, "drift": {"meanshift:2@0s"}}.Encode()
	d, err := assemble.New(assemble.Config{DeviceID: "pump-1", Broker: "tcp://" + addr, Sensors: []string{spec},
		ModelPath: filepath.Join(sampleDir, "vibration-anomaly-f32-1.0.0.opkg"), PackageKey: bundle.DemoKey().Public().(ed25519.PublicKey),
		DataDir: filepath.Join(dir, "pump-1"), HealthInterval: 500 * time.Millisecond, AgentVersion: version, DriftWindow: 50,
		Link: mqttlink.Options{ConnectRetryInterval: 200 * time.Millisecond, MaxReconnectInterval: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	stopAgent := runStoppable("agent", d.Run)
	t.Cleanup(func() {
		if err := stopAgent(); err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	ctx := context.Background()
	windows := func(st fleet.Store) (n int, top uint64) {
		recs, err := st.Drift(ctx, fleet.DriftQuery{Device: "pump-1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			top = max(top, r.Summary.Window)
		}
		return len(recs), top
	}
	waitUntil(t, "two stored windows", 30*time.Second, func() bool { n, _ := windows(srv.Store); return n >= 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Windows close with nobody listening: they wait in the agent's queue.
	queued := filepath.Join(dir, "pump-1", assemble.DriftQueueDir)
	var ents []os.DirEntry
	waitUntil(t, "three queued summaries", 30*time.Second, func() bool {
		ents, _ = os.ReadDir(queued)
		return len(ents) >= 3
	})
	srv, stop = start()
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	outage := uint64(0)
	waitUntil(t, "every window of the run stored, the outage's included", 40*time.Second, func() bool {
		n, top := windows(srv.Store)
		if outage == 0 {
			outage = top // the highest window seen right after the restart
		}
		return top >= outage+2 && n == int(top)
	})
	n, top := windows(srv.Store)
	t.Logf("%d windows stored for windows 1..%d; %d summaries were queued during the outage", n, top, len(ents))
}
