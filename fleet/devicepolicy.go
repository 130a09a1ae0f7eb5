package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Per-device monitoring settings (docs/monitoring.md): drift thresholds and a data-capture
// policy an operator sets on one device, outside any rollout. The rollout engine
// (fleet/rollout) owns every device's desired state; it merges these settings into each
// desired state it decides and publishes a new one, with no model change, when they change.
//
// Precedence: the device's settings win over the rollout's. Drift overrides merge field by
// field (a field the device leaves zero keeps the rollout's value, then the manifest's); a
// device capture policy replaces the rollout's whole, because its fields only make sense
// together (a band belongs to its fraction, the cap to all three).

// MonitorSettings are drift overrides and a capture policy; nil fields set nothing.
type MonitorSettings struct {
	Drift   *wire.DriftOverrides `json:"drift,omitempty"`
	Capture *wire.CapturePolicy  `json:"capture,omitempty"`
}

// Empty reports whether m sets nothing.
func (m MonitorSettings) Empty() bool { return m.Drift == nil && m.Capture == nil }

// Validate reports the first out-of-range value in one line.
func (m MonitorSettings) Validate() error {
	if m.Drift != nil {
		if err := m.Drift.Validate(); err != nil {
			return err
		}
	}
	if m.Capture != nil {
		if err := m.Capture.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// DevicePolicy is one device's monitoring settings as the operator set them.
type DevicePolicy struct {
	Device string `json:"device"`
	MonitorSettings
	Updated time.Time `json:"updated"`
}

// Validate checks the device id and the settings.
func (p DevicePolicy) Validate() error {
	if err := wire.ValidDeviceID(p.Device); err != nil {
		return fmt.Errorf("device policy: %w", err)
	}
	if err := p.MonitorSettings.Validate(); err != nil {
		return fmt.Errorf("device policy of %s: %w", p.Device, err)
	}
	return nil
}

// PolicyStore keeps per-device monitoring settings and the desired states decided for them
// outside a rollout; part of Store.
type PolicyStore interface {
	// PutDevicePolicy replaces p.Device's settings; empty settings delete them.
	PutDevicePolicy(ctx context.Context, p DevicePolicy) error
	// DevicePolicies returns every device's settings ordered by device.
	DevicePolicies(ctx context.Context) ([]DevicePolicy, error)
	// PutDesired stores desired states decided outside a rollout (a settings change), in one
	// transaction, replacing each device's last one.
	PutDesired(ctx context.Context, desired []DeviceDesired) error
}

// Merge returns base with the device's settings applied by the precedence above. It shares
// no pointer with its inputs.
func (m MonitorSettings) Merge(device MonitorSettings) MonitorSettings {
	var out MonitorSettings
	if m.Drift != nil || device.Drift != nil {
		d := wire.DriftOverrides{}
		if m.Drift != nil {
			d = *m.Drift
		}
		if o := device.Drift; o != nil {
			setNonZero(&d.PSI, o.PSI)
			setNonZero(&d.KS, o.KS)
			setNonZero(&d.JS, o.JS)
			setNonZero(&d.CUSUMK, o.CUSUMK)
			setNonZero(&d.CUSUMH, o.CUSUMH)
			setNonZero(&d.MinSamples, o.MinSamples)
			setNonZero(&d.Window, o.Window)
		}
		out.Drift = &d
	}
	switch {
	case device.Capture != nil:
		c := *device.Capture
		out.Capture = &c
	case m.Capture != nil:
		c := *m.Capture
		out.Capture = &c
	}
	return out
}

func setNonZero[T int64 | float64](dst *T, v T) {
	if v != 0 {
		*dst = v
	}
}

// SameMonitoring reports whether two desired states carry the same drift overrides and
// capture policy.
func SameMonitoring(a, b MonitorSettings) bool {
	return ptrEqual(a.Drift, b.Drift) && ptrEqual(a.Capture, b.Capture)
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
