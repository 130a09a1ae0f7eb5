package registry

import (
	"fmt"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/models/bundle"
)

// Detail is what `outpost models show` prints: the record plus a summary of the manifest.
type Detail struct {
	fleet.Model
	Description string           `json:"description,omitempty"`
	Sensor      string           `json:"sensor"`
	Window      int              `json:"window"`
	OutputKind  string           `json:"output_kind"`
	Metrics     bundle.Metrics   `json:"metrics"`
	Baseline    []FeatureSummary `json:"baseline"`
	Devices     []string         `json:"devices"` // devices reporting this model as running
	Golden      int              `json:"golden_vectors"`
}

// FeatureSummary is one baseline feature in brief.
type FeatureSummary struct {
	Kind  string  `json:"kind"` // "input" or "output"
	Name  string  `json:"name"`
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	Std   float64 `json:"std"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
}

// Describe decodes m's manifest into a Detail; devices are the ids running it.
func Describe(m fleet.Model, devices []string) (Detail, error) {
	d := Detail{Model: m, Devices: devices}
	d.Manifest = nil // summarised below; the raw manifest stays available from the package
	man, err := bundle.DecodeManifest(m.Manifest)
	if err != nil {
		return d, fmt.Errorf("model %s@%s: stored manifest: %w", m.Name, m.Version, err)
	}
	d.Description, d.Sensor, d.Window = man.Description, man.Input.Sensor, man.Input.Window
	d.OutputKind, d.Metrics, d.Golden = man.Output.Kind, man.Metrics, len(man.Golden.Vectors)
	add := func(kind string, fs []bundle.FeatureBaseline) {
		for _, f := range fs {
			d.Baseline = append(d.Baseline, FeatureSummary{Kind: kind, Name: f.Name, Count: f.Count, Mean: f.Mean, Std: f.Std, Min: f.Min, Max: f.Max})
		}
	}
	add("input", man.Baseline.Inputs)
	add("output", man.Baseline.Outputs)
	if d.Devices == nil {
		d.Devices = []string{}
	}
	return d, nil
}
