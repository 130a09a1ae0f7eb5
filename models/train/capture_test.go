package train

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/dataset"
	"github.com/outpost-ml/outpost/models/sim"
)

// smallExport is an export of n simulated windows labelled by their true fault, as a
// feedback-corrected capture would be.
func smallExport(n int) *dataset.Export {
	cfg := DefaultConfig()
	e := &dataset.Export{Manifest: dataset.Manifest{
		Model: "vibration-anomaly-f32", Models: []string{"vibration-anomaly-f32@1.0.0", "vibration-anomaly-f32@1.0.3", "other@9.9.9"},
		Windows: dataset.FormatNPY, Shape: []int{cfg.Window, 1}, Channels: []string{"accel"},
		Devices: []string{"d1", "d2"}, From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
	}}
	for i, x := range Windows(99, SplitTest, n, cfg.Window, cfg.SampleRateHz) {
		w := make([]float32, len(x.X))
		for j, v := range x.X {
			w[j] = float32(v)
		}
		label := "normal"
		if x.Fault != sim.FaultNone {
			label = "anomaly"
		}
		e.Windows = append(e.Windows, w)
		e.Rows = append(e.Rows, dataset.Row{Device: "d1", CaptureSeq: uint64(i + 1), Model: "vibration-anomaly-f32@1.0.0", Label: label, Time: e.Manifest.From})
	}
	return e
}

// TestRunFromCapture: captured windows alone retrain a model that packages, verifies, learns
// the faults (held-out accuracy well above chance) and is byte-identical on a second run.
func TestRunFromCapture(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TrainWindows, cfg.TestWindows, cfg.Epochs = 0, 400, 15
	id := DefaultIdentity()
	id.Version = NextVersion(id.Name, smallExport(0).Manifest.Models)
	if id.Version != "1.0.4" {
		t.Fatalf("NextVersion = %s, want 1.0.4", id.Version)
	}
	dir := t.TempDir()
	if err := dataset.Write(dir, smallExport(400)); err != nil {
		t.Fatal(err)
	}
	e, err := dataset.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := RunFromCapture(cfg, id, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := bundle.DemoKey().Public().(ed25519.PublicKey)
	for _, a := range res.Artifacts {
		p, err := bundle.Open(a.Package, pub, bundle.Limits{})
		if err != nil {
			t.Fatalf("retrained package does not verify: %v", err)
		}
		if p.Manifest.Version != "1.0.4" || p.Manifest.Baseline == nil {
			t.Errorf("manifest version %s, baseline %v", p.Manifest.Version, p.Manifest.Baseline != nil)
		}
	}
	m := res.Manifest.Metrics
	t.Logf("retrained on %d captured windows: accuracy %.4f, false positives %.4f, recall %v", len(e.Windows), m.Accuracy, m.FalsePositiveRate, m.Recall)
	if m.Accuracy < 0.8 || m.TrainWindows != 400 {
		t.Errorf("held-out accuracy %.4f on %d training windows; want ≥ 0.8 on 400", m.Accuracy, m.TrainWindows)
	}
	again, err := RunFromCapture(cfg, id, e, nil)
	if err != nil || !bytes.Equal(again.Artifacts[0].Package, res.Artifacts[0].Package) {
		t.Errorf("second run differs (err %v)", err)
	}
	// A window of the wrong shape is refused with a clear error.
	bad := smallExport(8)
	bad.Manifest.Shape = []int{32, 2}
	if _, err := RunFromCapture(cfg, id, bad, nil); err == nil {
		t.Error("an export of shape [32 2] was accepted")
	}
}

// TestCapturedExamplesPreferTruth: a ground-truth label from feedback decides a window's
// class over the model's own label and event flag; without one the model's output does.
func TestCapturedExamplesPreferTruth(t *testing.T) {
	e := smallExport(4)
	e.Rows[0].Label, e.Rows[0].Event, e.Rows[0].Truth = "anomaly", true, "normal" // the model was wrong
	e.Rows[1].Label, e.Rows[1].Event, e.Rows[1].Truth = "normal", false, "anomaly"
	e.Rows[2].Label, e.Rows[2].Event, e.Rows[2].Truth = "normal", true, ""
	e.Rows[3].Label, e.Rows[3].Event, e.Rows[3].Truth = "normal", false, ""
	xs, err := CapturedExamples(e, DefaultConfig().Window, "anomaly")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, true, false} {
		if xs[i].Anomalous != want {
			t.Errorf("row %d (%+v): anomalous %v, want %v", i, e.Rows[i], xs[i].Anomalous, want)
		}
	}
}
