package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// The update domain: the model registry's records, rollouts and each device's desired state.
// fleet/registry and fleet/rollout are the services over it; docs/updates.md has the prose.

// ErrNotFound is wrapped by the update store's lookups for an unknown model or rollout.
var ErrNotFound = errors.New("not found")

// Model is one registered model package (NAME@VERSION), stored by its package digest.
type Model struct {
	Name            string          `json:"name"`
	Version         string          `json:"version"`
	SHA256          string          `json:"sha256"`       // of the .opkg package
	PackageSize     int64           `json:"package_size"` // bytes of the .opkg package
	ModelSHA256     string          `json:"model_sha256"` // of model.tflite inside it
	ModelSize       int64           `json:"model_size"`
	Target          string          `json:"target"`  // TUF target name
	Release         uint64          `json:"release"` // anti-rollback counter: grows with every push of Name
	Ops             []string        `json:"ops"`
	MinAgentVersion string          `json:"min_agent_version"`
	SignedBy        string          `json:"signed_by"` // key id of the package signature
	Pushed          time.Time       `json:"pushed"`
	Published       bool            `json:"published"`          // handed to the TUF repository
	Manifest        json.RawMessage `json:"manifest,omitempty"` // verbatim manifest.json
}

// Ref is the model as devices report it.
func (m Model) Ref() wire.ModelRef {
	return wire.ModelRef{Name: m.Name, Version: m.Version, SHA256: m.ModelSHA256}
}

// Rollout states.
const (
	RolloutRunning   = "running"
	RolloutPaused    = "paused"
	RolloutHalted    = "halted"    // a gate failed; the wave's devices were told to roll back
	RolloutAborted   = "aborted"   // stopped by hand
	RolloutCompleted = "completed" // every wave met its success threshold
)

// Wave states.
const (
	WavePending = "pending"
	WaveRunning = "running"
	WavePassed  = "passed"
	WaveHalted  = "halted"
)

// Device outcomes within a rollout.
const (
	OutcomePending    = ""            // told (or not yet told) and not finished
	OutcomeSucceeded  = "succeeded"   // committed with every gate figure within its limit
	OutcomeFailed     = "failed"      // refused, rolled back by itself, or crossed a gate
	OutcomeRolledBack = "rolled_back" // ordered back by the controller when its wave halted
)

// RolloutSpec is what the operator asked for.
type RolloutSpec struct {
	Model  string    `json:"model"`  // NAME@VERSION
	Select []string  `json:"select"` // KEY=VALUE device tags, all must match; empty selects all
	Canary float64   `json:"canary"` // fraction of the selected devices in the canary wave
	Waves  []float64 `json:"waves"`  // cumulative fractions after the canary; the last is 1
	// SuccessThreshold is the fraction of a wave's devices that must succeed before the next
	// wave starts (the rest keep being watched). 0 means 1: every device.
	SuccessThreshold float64       `json:"success_threshold"`
	Probation        time.Duration `json:"probation"`
	Shadow           time.Duration `json:"shadow"`
	Gates            Gates         `json:"gates"`
	// Drift overrides the drift monitor's thresholds and window on the rollout's devices
	// (wire.Desired.Drift); nil keeps the manifest's.
	Drift *wire.DriftOverrides `json:"drift,omitempty"`
	// Capture, when set, is the data-capture policy sent to the rollout's devices with their
	// desired state (docs/monitoring.md); it stays in force after the rollout ends, until
	// another desired state replaces it.
	Capture *wire.CapturePolicy `json:"capture,omitempty"`
}

// Gates are limits on model behaviour. Zero disables a gate, except MaxFailure: a wave halts
// when its failed devices are more than MaxFailure of it, so 0 tolerates no failure.
type Gates struct {
	MaxFailure         float64 `json:"max_failure"`           // failed devices / wave devices
	MaxP99LatencyRatio float64 `json:"max_p99_latency_ratio"` // candidate p99 / previous p99
	MinShadowAgreement float64 `json:"min_shadow_agreement"`  // fraction of shadow windows agreeing
	MaxDriftPSI        float64 `json:"max_drift_psi"`
	MaxErrorRate       float64 `json:"max_error_rate"` // failed windows / windows in probation, per device
}

// Rollout is a rollout's persisted state: the engine (fleet/rollout) writes it before it
// publishes what it decided, so a restarted controller continues from it.
type Rollout struct {
	ID      string        `json:"id"`
	Spec    RolloutSpec   `json:"spec"`
	Model   wire.ModelRef `json:"model"`
	Target  string        `json:"target"`
	State   string        `json:"state"`
	Reason  string        `json:"reason,omitempty"` // why it halted or was aborted
	Created time.Time     `json:"created"`
	Updated time.Time     `json:"updated"`
	Wave    int           `json:"wave"` // index of the current (or last) wave
	Waves   []Wave        `json:"waves"`
	Skipped []Skipped     `json:"skipped,omitempty"` // selected devices left out, with why
}

// Wave is one batch of a rollout; wave 0 is the canary.
type Wave struct {
	Name     string          `json:"name"`    // "canary", "25%", ...
	Percent  float64         `json:"percent"` // cumulative fraction of the selection
	State    string          `json:"state"`
	Started  time.Time       `json:"started,omitzero"`
	Finished time.Time       `json:"finished,omitzero"`
	Devices  []RolloutDevice `json:"devices"`
}

// RolloutDevice is one device's progress in a rollout, from its reported UpdateStatus.
type RolloutDevice struct {
	ID         string               `json:"id"`
	Generation uint64               `json:"generation,omitempty"` // of the Desired sent; 0 before
	Previous   wire.ModelRef        `json:"previous,omitzero"`    // what it ran when told
	Phase      string               `json:"phase,omitempty"`      // last reported for Generation
	Outcome    string               `json:"outcome,omitempty"`
	Reason     string               `json:"reason,omitempty"`
	Progress   float64              `json:"progress,omitempty"`
	Shadow     *wire.ShadowStats    `json:"shadow,omitempty"`
	Probation  *wire.ProbationStats `json:"probation,omitempty"`
	Updated    time.Time            `json:"updated,omitzero"`
}

// Skipped is a selected device the rollout leaves out.
type Skipped struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// DeviceDesired is one device's desired state as last published.
type DeviceDesired struct {
	Device  string       `json:"device"`
	Desired wire.Desired `json:"desired"`
	// Base is the drift overrides and capture policy the rollout decided, before the device's
	// own monitoring settings (DevicePolicy) were merged into Desired; nil when none were,
	// Desired's then being the base (devicepolicy.go).
	Base *MonitorSettings `json:"base,omitempty"`
}

// UpdateStore is the durable state of model updates, part of Store.
type UpdateStore interface {
	// PutModel stores the package bytes under m.SHA256 and the model record under
	// NAME@VERSION in one transaction, replacing a record of the same name and version.
	PutModel(ctx context.Context, m Model, pkg []byte) error
	// Models returns every model record ordered by name, then release.
	Models(ctx context.Context) ([]Model, error)
	// Model returns NAME@VERSION's record or an error wrapping ErrNotFound.
	Model(ctx context.Context, name, version string) (Model, error)
	// Package returns the package bytes with the given sha256 or an error wrapping ErrNotFound.
	Package(ctx context.Context, sha256 string) ([]byte, error)
	// PutRollout stores r and the given desired states in one transaction.
	PutRollout(ctx context.Context, r Rollout, desired []DeviceDesired) error
	// Rollouts returns every rollout ordered by creation time.
	Rollouts(ctx context.Context) ([]Rollout, error)
	// Rollout returns one rollout or an error wrapping ErrNotFound.
	Rollout(ctx context.Context, id string) (Rollout, error)
	// Desired returns every device's last desired state ordered by device.
	Desired(ctx context.Context) ([]DeviceDesired, error)
	// SetDeviceTags replaces a device's tags (an empty map removes them).
	SetDeviceTags(ctx context.Context, device string, tags map[string]string) error
	// DeviceTags returns every device's tags.
	DeviceTags(ctx context.Context) (map[string]map[string]string, error)
}
