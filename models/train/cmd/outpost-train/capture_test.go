package main

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/dataset"
	"github.com/outpost-ml/outpost/models/sim"
	"github.com/outpost-ml/outpost/models/train"
)

// TestFromCapture: -from-capture reads a CSV export and writes verified packages with the next
// version of the exported model.
func TestFromCapture(t *testing.T) {
	cfg := train.DefaultConfig()
	e := &dataset.Export{Manifest: dataset.Manifest{
		Model: "vibration-anomaly-f32", Models: []string{"vibration-anomaly-f32@1.0.0"}, Windows: dataset.FormatCSV,
		Shape: []int{cfg.Window, 1}, Channels: []string{"accel"}, Devices: []string{"d1"},
		From: time.Unix(0, 0).UTC(), To: time.Unix(60, 0).UTC(),
	}}
	for _, x := range train.Windows(5, train.SplitTest, 64, cfg.Window, cfg.SampleRateHz) {
		w := make([]float32, len(x.X))
		for i, v := range x.X {
			w[i] = float32(v)
		}
		label := "normal"
		if x.Fault != sim.FaultNone {
			label = "anomaly"
		}
		e.Windows = append(e.Windows, w)
		e.Rows = append(e.Rows, dataset.Row{Device: "d1", Model: "vibration-anomaly-f32@1.0.0", Label: label, Time: time.Unix(0, 0)})
	}
	in, out := t.TempDir(), t.TempDir()
	if err := dataset.Write(in, e); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if err := run([]string{"-q", "-from-capture", in, "-out", out, "-sim-windows", "100", "-epochs", "2"}, &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "retrained on 64 captured windows") {
		t.Errorf("output %q", log.String())
	}
	pub := bundle.DemoKey().Public().(ed25519.PublicKey)
	for _, name := range []string{"vibration-anomaly-f32-1.0.1.opkg", "vibration-anomaly-i8-1.0.1.opkg"} {
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bundle.Open(data, pub, bundle.Limits{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := run([]string{"-q", "-from-capture", t.TempDir(), "-out", out}, &log); err == nil {
		t.Error("an empty directory was taken for an export")
	}
}
