package train

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/outpost-ml/outpost/models/dataset"
)

// Retraining from captured field data (`outpost capture export`, models/dataset): the loop
// from the devices back to a new signed package. The captured windows join the simulator's
// training set (so the model keeps what it knew and learns the field's conditions) and the
// held-out test set stays the simulator's, so the manifest's metrics compare with the model
// it replaces. Training stays deterministic: the same export and Config give the same bytes.

// CapturedExamples turns an export into labelled examples for the vibration model: windows
// must be [cfg.Window, 1]. A row with a ground-truth label (feedback) is faulty when that
// label is anomalyLabel, whatever the model said; a row without one is faulty when the
// model labelled it anomalyLabel or flagged it as an event.
func CapturedExamples(e *dataset.Export, window int, anomalyLabel string) ([]Example, error) {
	m := e.Manifest
	if len(m.Shape) != 2 || m.Shape[0] != window || m.Shape[1] != 1 {
		return nil, fmt.Errorf("capture export: windows of shape %v do not fit the vibration model's input [%d 1]", m.Shape, window)
	}
	out := make([]Example, len(e.Windows))
	for i, w := range e.Windows {
		x := make([]float64, len(w))
		for j, v := range w {
			x[j] = float64(v)
		}
		r := e.Rows[i]
		anomalous := r.Label == anomalyLabel || r.Event
		if r.Truth != "" {
			anomalous = r.Truth == anomalyLabel
		}
		out[i] = Example{X: x, Anomalous: anomalous}
	}
	return out, nil
}

// RunFromCapture retrains the vibration model on the captured examples of e plus
// cfg.TrainWindows simulated ones (0 is allowed here: captured data alone), and serialises
// it as Run does. It needs at least 8 training windows.
func RunFromCapture(cfg Config, id Identity, e *dataset.Export, progress io.Writer) (*Result, error) {
	captured, err := CapturedExamples(e, cfg.Window, "anomaly")
	if err != nil {
		return nil, err
	}
	sim := cfg.TrainWindows
	if cfg.TrainWindows < 8 {
		cfg.TrainWindows = 8 // validate's floor; the real count is checked below
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("train config: %w", err)
	}
	train := append(Windows(cfg.Seed, SplitTrain, sim, cfg.Window, cfg.SampleRateHz), captured...)
	if len(train) < 8 {
		return nil, fmt.Errorf("capture export: %d training windows (at least 8)", len(train))
	}
	faulty := 0
	for _, x := range captured {
		if x.Label() != 0 {
			faulty++
		}
	}
	test := Windows(cfg.Seed, SplitTest, cfg.TestWindows, cfg.Window, cfg.SampleRateHz)
	source := fmt.Sprintf("%d captured windows (%d anomalous) of %s from %d devices, %s to %s, plus %d models/sim windows, seed %d",
		len(captured), faulty, strings.Join(e.Manifest.Models, ", "), len(e.Manifest.Devices),
		e.Manifest.From.Format("2006-01-02T15:04:05Z07:00"), e.Manifest.To.Format("2006-01-02T15:04:05Z07:00"), sim, cfg.Seed)
	return runVibration(cfg, id, train, test, source, progress)
}

// NextVersion is the version a model retrained from an export gets: the highest version of
// name among the export's models with its patch number raised by one ("1.0.0" when none).
func NextVersion(name string, models []string) string {
	best := []int{1, 0, -1}
	for _, m := range models {
		n, v, ok := strings.Cut(m, "@")
		if !ok || n != name {
			continue
		}
		parts := strings.Split(v, ".")
		if len(parts) != 3 {
			continue
		}
		var p []int
		for _, s := range parts {
			x, err := strconv.Atoi(s)
			if err != nil || x < 0 {
				p = nil
				break
			}
			p = append(p, x)
		}
		if p != nil && slices.Compare(p, best) > 0 {
			best = p
		}
	}
	return fmt.Sprintf("%d.%d.%d", best[0], best[1], best[2]+1)
}
