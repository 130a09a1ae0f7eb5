package main

// Data capture for retraining, end to end through the real parts: the embedded broker and
// controller of `outpost serve` (bbolt store, HTTP API), a real agent (agent/assemble, the
// sample vibration package, a simulated sensor) whose capture policy comes in its Desired
// state, `outpost capture export`, and models/train retraining on the export into a package
// that verifies.

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/capture"
	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/dataset"
	"github.com/outpost-ml/outpost/models/train"
)

// captureWorld is a controller data directory served on a fixed loopback address, so the
// controller can be restarted under its agents.
type captureWorld struct {
	data, addr string
	srv        *fleetServer
	stop       func() error
}

func (w *captureWorld) start(t *testing.T) {
	t.Helper()
	srv, err := newFleetServer(serveConfig{Listen: w.addr, DataDir: w.data, updateConfig: updateConfig{HTTPAddr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	w.srv, w.stop = srv, runStoppable("controller", srv.Run)
	t.Cleanup(func() {
		if err := w.stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
}

// publishDesired publishes d, retained, as the controller does (c/{device}/desired), with the
// controller's credentials under a client id of its own, so the controller is not taken over.
func publishDesired(t *testing.T, b interface{ ControllerCredentials() (string, string) }, addr, device string, d wire.Desired) {
	t.Helper()
	user, pass := b.ControllerCredentials()
	cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("capture-test-desired").SetUsername(user).SetPassword(pass).SetConnectTimeout(5 * time.Second))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as the controller: %v", tok.Error())
	}
	defer cl.Disconnect(100)
	payload, err := wire.Encode(&d)
	if err != nil {
		t.Fatal(err)
	}
	if tok := cl.Publish(wire.ControllerTopic(device, wire.LeafDesired), 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish desired: %v", tok.Error())
	}
}

// startCaptureAgent runs a real agent on the sample vibration package.
func startCaptureAgent(t *testing.T, id, addr, dir string, cc assemble.CaptureConfig) *simAgent {
	t.Helper()
	d, err := assemble.New(assemble.Config{
		DeviceID: id, Broker: "tcp://" + addr, ModelPath: filepath.Join(sampleDir, "vibration-anomaly-f32-1.0.0.opkg"),
		PackageKey: bundle.DemoKey().Public().(ed25519.PublicKey), Sensors: []string{"sim:vibration?seed=4"}, DataDir: dir,
		HealthInterval: 500 * time.Millisecond, AgentVersion: version,
		Link:    mqttlink.Options{ConnectRetryInterval: 200 * time.Millisecond, MaxReconnectInterval: time.Second},
		Capture: cc,
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &simAgent{id: id, dir: dir, dev: d, stop: runStoppable("agent "+id, d.Run)}
	t.Cleanup(func() {
		if err := a.stop(); err != nil {
			t.Errorf("agent %s: %v", id, err)
		}
	})
	return a
}

// waitFor polls cond every 50 ms for at most within.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCaptureEndToEnd(t *testing.T) {
	t.Parallel()
	w := &captureWorld{data: filepath.Join(t.TempDir(), "controller"), addr: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	w.start(t)
	const dev = "cap-1"
	tokenFile := filepath.Join(w.data, httpapi.TokenFile)
	api := func() []string { return []string{"--server", "http://" + w.srv.APIAddr, "--token-file", tokenFile} }
	// The device's own monitoring settings, with no rollout (`outpost devices monitor`): the
	// rollout engine publishes them in a desired state that orders no model. Capture every
	// window, within the cap (the sensor makes about 1.6 windows a second); drift windows of
	// 10 inferences scored from 5 values on, with a PSI limit every scored window crosses.
	out := mustCLI(t, append([]string{"devices", "monitor", dev, "--capture-random", "100%", "--capture-per-hour", "100000",
		"--drift-window", "10", "--drift-min-samples", "5", "--drift-psi", "1e-9"}, api()...)...)
	if !strings.Contains(out, "psi=1e-09 min_samples=5 window=10; capture random=100% per_hour=100000") {
		t.Fatalf("devices monitor printed:\n%s", out)
	}
	a := startCaptureAgent(t, dev, w.addr, filepath.Join(t.TempDir(), dev), assemble.CaptureConfig{Seed: 1})
	c := a.dev.Capture

	waitFor(t, "the policy from the desired state", 60*time.Second, func() bool { return c.Policy() != nil && c.Policy().Random == 1 })
	waitFor(t, "5 captures acked", 60*time.Second, func() bool { return c.Stats().Buffer.AckedSeq >= 5 })
	// The drift settings reached the running agent's monitor too: windows of 10 inferences,
	// drifted on psi, each with its drift event, stored by the controller.
	waitFor(t, "a drifted window of 10 inferences stored", 60*time.Second, func() bool {
		recs, err := w.srv.Store.Drift(context.Background(), fleet.DriftQuery{Device: dev, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			for _, f := range r.Summary.Features {
				if r.Summary.Inferences == 10 && slices.Contains(f.Drifted, wire.ScorePSI) && r.Summary.Event != nil {
					return true
				}
			}
		}
		return false
	})
	before := w.srv.Controller.CaptureStats()
	if before.Stored < 5 {
		t.Fatalf("controller stored %d captures, want ≥ 5", before.Stored)
	}

	// Controller restart: the agent buffers meanwhile; the new controller stores the rest,
	// and everything acked before is still there.
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	held := c.Stats().Buffer.LastSeq
	waitFor(t, "captures buffered while the controller is down", 60*time.Second, func() bool { return c.Stats().Buffer.LastSeq >= held+3 })
	if st := c.Stats().Buffer; st.Len == 0 {
		t.Fatalf("nothing held while the controller was down: %+v", st)
	}
	w.start(t)
	waitFor(t, "captures after the restart acked", 60*time.Second, func() bool { return c.Stats().Buffer.AckedSeq >= held+3 })

	// Capture off by the device's settings: a new desired state; capture stops, the buffer
	// drains.
	mustCLI(t, append([]string{"devices", "monitor", dev, "--clear-capture"}, api()...)...)
	waitFor(t, "capture off", 60*time.Second, func() bool { return c.Policy().Off() })
	var st capture.BufferStats
	waitFor(t, "the capture buffer drained", 60*time.Second, func() bool {
		st = c.Stats().Buffer
		return st.Len == 0 && st.AckedSeq == st.LastSeq
	})
	if st.Dropped != 0 {
		t.Fatalf("captures dropped without a quota problem: %+v", st)
	}
	t.Logf("agent captured %d windows (lost before the buffer: %d), all acked", st.LastSeq, c.Stats().Lost)

	// Every capture stored exactly once, seqs 1..LastSeq, with its window and result.
	// A late label for the first captured window's result: the export carries it as truth.
	first := filepath.Join(t.TempDir(), "first")
	mustCLI(t, append([]string{"capture", "export", "--model", "vibration-anomaly-f32", "--format", "npy", "--device", dev, "--since", "1h", first}, api()...)...)
	e0, err := dataset.Read(first)
	if err != nil {
		t.Fatal(err)
	}
	truth := "anomaly"
	if e0.Rows[0].Label == "anomaly" {
		truth = "normal" // the label says the model was wrong, whichever way
	}
	mustCLI(t, append([]string{"feedback", dev, fmt.Sprint(e0.Rows[0].ResultSeq), truth}, api()...)...)
	exports := map[string]*dataset.Export{}
	for _, format := range []string{"npy", "csv"} {
		out := filepath.Join(t.TempDir(), format)
		mustCLI(t, append([]string{"capture", "export", "--model", "vibration-anomaly-f32", "--format", format, "--device", dev, "--since", "1h", out}, api()...)...)
		e, err := dataset.Read(out)
		if err != nil {
			t.Fatal(err)
		}
		exports[format] = e
	}
	e := exports["npy"]
	m := e.Manifest
	if m.Count != int(st.LastSeq) || fmt.Sprint(m.Shape) != "[64 1]" || m.Channels[0] == "" || fmt.Sprint(m.Devices) != "["+dev+"]" || fmt.Sprint(m.Models) != "[vibration-anomaly-f32@1.0.0]" {
		t.Fatalf("manifest %+v, want %d windows of [64 1] from %s", m, st.LastSeq, dev)
	}
	for i, r := range e.Rows {
		if r.CaptureSeq != uint64(i+1) || r.ResultSeq == 0 || r.Reason != wire.CaptureRandom || r.Model != "vibration-anomaly-f32@1.0.0" {
			t.Fatalf("row %d: %+v (want capture seq %d)", i, r, i+1)
		}
	}
	if fmt.Sprint(exports["csv"].Windows) != fmt.Sprint(e.Windows) || fmt.Sprint(exports["csv"].Rows) != fmt.Sprint(e.Rows) {
		t.Error("the csv and npy exports differ")
	}
	if m.Labelled != 1 || m.LabelSource != dataset.LabelsMixed || e.Rows[0].Truth != truth || e.Rows[0].Source() != dataset.LabelsFeedback || e.Rows[1].Source() != dataset.LabelsModel {
		t.Errorf("label sources: manifest %q with %d labelled, rows %+v %+v; want row 0's truth %q from feedback", m.LabelSource, m.Labelled, e.Rows[0], e.Rows[1], truth)
	}
	// The windows are the sensor's raw values: the simulated accelerometer swings around 0 g
	// by a fraction of a g, never normalised values of unit variance.
	if v := e.Windows[0][0]; v == 0 || v > 5 || v < -5 {
		t.Errorf("first value %v does not look like a raw sample", v)
	}
	stats := w.srv.Controller.CaptureStats()
	t.Logf("controller (after restart): %+v", stats)

	// The loop closed: retrain on the export, package, verify.
	cfg := train.DefaultConfig()
	cfg.TrainWindows, cfg.TestWindows, cfg.Epochs = 64, 64, 2
	id := train.DefaultIdentity()
	id.Version = train.NextVersion(id.Name, m.Models)
	res, err := train.RunFromCapture(cfg, id, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := bundle.Open(res.Artifacts[0].Package, bundle.DemoKey().Public().(ed25519.PublicKey), bundle.Limits{})
	if err != nil || p.Manifest.Version != "1.0.1" || p.Manifest.Metrics.TrainWindows != 64+m.Count {
		t.Fatalf("retrained package: %v, %+v", err, p)
	}
}

// TestCaptureQuota: with no controller acking, the capture buffer keeps at most its quota,
// drops the oldest and counts them; once a controller runs, what is left arrives and is
// acked past the gap.
func TestCaptureQuota(t *testing.T) {
	t.Parallel()
	w := &captureWorld{data: filepath.Join(t.TempDir(), "controller"), addr: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	w.start(t)
	const dev = "cap-quota"
	publishDesired(t, w.srv.Broker, w.addr, dev, wire.Desired{V: 1, Generation: 1, Capture: &wire.CapturePolicy{Random: 1, MaxPerHour: 100_000}})
	// The controller (and its embedded broker, which held the retained policy) stops before
	// the agent starts, so the agent starts with the same policy configured.
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	a := startCaptureAgent(t, dev, w.addr, filepath.Join(t.TempDir(), dev), assemble.CaptureConfig{
		MaxItems: 4, Policy: &wire.CapturePolicy{Random: 1, MaxPerHour: 100_000}, Seed: 2})
	c := a.dev.Capture
	waitFor(t, "the quota overflowing", 60*time.Second, func() bool { return c.Stats().Buffer.Dropped >= 3 })
	st := c.Stats().Buffer
	if st.Len > 4 || st.DroppedThrough < 3 || st.AckedSeq != 0 {
		t.Fatalf("buffer %+v: want at most 4 held and the oldest dropped", st)
	}
	// Health says so.
	if h := a.dev.Agent.Health(); h.CaptureDropped < 3 || h.CaptureBuffered > 4 {
		t.Errorf("health capture_dropped %d, capture_buffered %d", h.CaptureDropped, h.CaptureBuffered)
	}
	w.start(t)
	waitFor(t, "the rest acked past the dropped ones", 60*time.Second, func() bool {
		s := c.Stats().Buffer
		return s.AckedSeq > st.DroppedThrough
	})
	items, err := w.srvCaptures(dev)
	if err != nil {
		t.Fatal(err)
	}
	// Seqs up to DroppedThrough were deleted before any controller ran: none may arrive.
	if len(items) == 0 || items[0].Seq <= st.DroppedThrough {
		t.Fatalf("%d stored captures, first seq %d; the dropped ones (through %d) must never arrive", len(items), items[0].Seq, st.DroppedThrough)
	}
	for i := 1; i < len(items); i++ {
		if items[i].Seq <= items[i-1].Seq {
			t.Fatalf("stored seqs not increasing: %d after %d", items[i].Seq, items[i-1].Seq)
		}
	}
	t.Logf("quota 4: dropped %d through seq %d; controller stored %d, first seq %d", c.Stats().Buffer.Dropped, st.DroppedThrough, len(items), items[0].Seq)
}

// srvCaptures reads the device's stored captures from the running controller's API.
func (w *captureWorld) srvCaptures(device string) ([]fleet.CapturedItem, error) {
	cl := &apiClient{base: "http://" + w.srv.APIAddr, token: w.srv.APIToken, http: &http.Client{Timeout: 10 * time.Second}}
	var page fleet.CapturePage
	err := cl.do(context.Background(), "GET", "/v1/captures?device="+device, "", nil, &page)
	return page.Items, err
}
