package rollout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Per-device monitoring settings (fleet/devicepolicy.go). The engine owns every device's
// desired state and its generations, so it is the one that merges the settings in: into each
// desired state a rollout decides, and, when the settings change, into a new desired state
// of its own (no model, so the device keeps what runs) published even with no rollout.
//
// A device whose update a rollout is still following (told, no outcome yet), or which reports
// an update in progress (a rollback the controller ordered, say), gets the change only when
// that update ends: a newer generation would supersede the update in progress on the device
// (agent/update), and the rollout would lose track of it.

// PolicyStore is where per-device settings and the desired states decided for them are kept
// (fleet.Store satisfies it).
type PolicyStore interface {
	DevicePolicies(ctx context.Context) ([]fleet.DevicePolicy, error)
	PutDevicePolicy(ctx context.Context, p fleet.DevicePolicy) error
	PutDesired(ctx context.Context, desired []fleet.DeviceDesired) error
}

// PolicyStatus is a device's monitoring settings and what its desired state carries.
type PolicyStatus struct {
	Device string `json:"device"`
	// Settings are the operator's per-device settings (absent: none).
	Settings *fleet.DevicePolicy `json:"settings,omitempty"`
	// Base is what the device's rollout set, before the settings were merged in.
	Base fleet.MonitorSettings `json:"base"`
	// Effective is what the device's latest desired state carries.
	Effective  fleet.MonitorSettings `json:"effective"`
	Generation uint64                `json:"generation"` // of that desired state; 0: none yet
	Published  bool                  `json:"published"`  // the broker has that desired state
	// Pending names why the settings are not in the desired state yet (the rollout whose
	// update the device is in); empty when they are.
	Pending string `json:"pending,omitempty"`
}

// loadPolicies reads the stored settings (New).
func (e *Engine) loadPolicies(ctx context.Context) error {
	e.policies = map[string]fleet.DevicePolicy{}
	if e.opts.Policies == nil {
		return nil
	}
	ps, err := e.opts.Policies.DevicePolicies(ctx)
	if err != nil {
		return err
	}
	for _, p := range ps {
		e.policies[p.Device] = p
		e.recheck[p.Device] = true
	}
	return nil
}

// baseOf is the rollout's own settings in a stored desired state.
func baseOf(d fleet.DeviceDesired) fleet.MonitorSettings {
	if d.Base != nil {
		return *d.Base
	}
	return fleet.MonitorSettings{Drift: d.Desired.Drift, Capture: d.Desired.Capture}
}

// withPolicyLocked merges device's settings into a desired state the engine decided, whose
// Drift and Capture are the rollout's, remembering those as its base.
func (e *Engine) withPolicyLocked(device string, des wire.Desired) fleet.DeviceDesired {
	base := fleet.MonitorSettings{Drift: des.Drift, Capture: des.Capture}
	p, ok := e.policies[device]
	if !ok {
		return fleet.DeviceDesired{Device: device, Desired: des}
	}
	m := base.Merge(p.MonitorSettings)
	des.Drift, des.Capture = m.Drift, m.Capture
	return fleet.DeviceDesired{Device: device, Desired: des, Base: &base}
}

// updatingLocked names the rollout following an update of device still in progress, or "".
func (e *Engine) updatingLocked(device string) string {
	cur, ok := e.desired[device]
	if !ok || cur.Rollout == "" {
		return ""
	}
	for _, r := range e.rollouts {
		if r.ID != cur.Rollout {
			continue
		}
		for _, w := range r.Waves {
			for _, d := range w.Devices {
				if d.ID == device && d.Generation != 0 && d.Generation == cur.Generation && d.Outcome == fleet.OutcomePending {
					return r.ID
				}
			}
		}
	}
	return ""
}

// inProgress maps each device that reports an update phase that is not final to the phase.
func inProgress(live []fleet.DeviceStatus) map[string]string {
	out := map[string]string{}
	for _, d := range live {
		if d.Health == nil || d.Health.Update == nil {
			continue
		}
		switch p := d.Health.Update.Phase; p {
		case "", wire.PhaseIdle, wire.PhaseCommitted, wire.PhaseRolledBack, wire.PhaseFailed:
		default:
			out[d.ID] = p
		}
	}
	return out
}

// holdLocked says why device's settings must wait, or "" when they may go out now.
func (e *Engine) holdLocked(device string, busy map[string]string) string {
	if r := e.updatingLocked(device); r != "" {
		return "waits for rollout " + r + " to finish with this device"
	}
	if p, ok := busy[device]; ok {
		return "waits for the device's update in progress (" + p + ")"
	}
	return ""
}

// wantLocked is the device's base with its settings merged in.
func (e *Engine) wantLocked(device string) fleet.MonitorSettings {
	base := e.base[device]
	p, ok := e.policies[device]
	if !ok {
		return base
	}
	return base.Merge(p.MonitorSettings)
}

// reconcileLocked decides a new desired state for every given device whose desired state
// does not carry its settings and no rollout is updating. The new state keeps the rollout
// named (its values are the base) but orders no model: the device keeps what runs.
func (e *Engine) reconcileLocked(devices []string, now time.Time, busy map[string]string) []fleet.DeviceDesired {
	var out []fleet.DeviceDesired
	for _, dev := range devices {
		cur, had := e.desired[dev]
		if !had && e.policies[dev].Empty() {
			continue
		}
		want := e.wantLocked(dev)
		if had && fleet.SameMonitoring(want, fleet.MonitorSettings{Drift: cur.Drift, Capture: cur.Capture}) {
			continue
		}
		if e.holdLocked(dev, busy) != "" {
			continue
		}
		base := e.base[dev]
		out = append(out, fleet.DeviceDesired{Device: dev, Base: &base, Desired: wire.Desired{
			V: wire.SchemaVersion, Generation: cur.Generation + 1, Rollout: cur.Rollout,
			Drift: want.Drift, Capture: want.Capture, Time: now,
		}})
	}
	return out
}

// reconcilePolicies publishes, for every device to recheck, the desired state its settings
// call for, and forgets the device once its desired state carries them (Run calls it each
// round: a rollout or update ending releases a held change). Devices to recheck are those
// whose settings changed or were held, and at start every device with settings. A store error
// is logged and the change retried next round.
func (e *Engine) reconcilePolicies(ctx context.Context) {
	if e.opts.Policies == nil {
		return
	}
	e.mu.Lock()
	empty := len(e.recheck) == 0
	e.mu.Unlock()
	if empty {
		return
	}
	busy := inProgress(e.opts.Fleet.Devices())
	e.mu.Lock()
	defer e.mu.Unlock()
	devs := slices.Sorted(maps.Keys(e.recheck))
	if err := e.commitPoliciesLocked(ctx, e.reconcileLocked(devs, e.opts.Now().UTC(), busy)); err != nil {
		e.log.Warn("monitoring settings not applied; retrying", "err", err)
		return
	}
	for _, d := range devs {
		if e.holdLocked(d, busy) == "" {
			delete(e.recheck, d)
		}
	}
}

func (e *Engine) commitPoliciesLocked(ctx context.Context, ds []fleet.DeviceDesired) error {
	if len(ds) == 0 {
		return nil
	}
	if err := e.opts.Policies.PutDesired(ctx, ds); err != nil {
		return err
	}
	e.commitDesiredLocked(ds)
	return nil
}

// SetPolicy replaces device's monitoring settings (empty settings remove them), stores them
// and decides the desired state that carries them, published on the next round (which it
// triggers). It returns the device's status after the change.
func (e *Engine) SetPolicy(ctx context.Context, device string, s fleet.MonitorSettings) (PolicyStatus, error) {
	if e.opts.Policies == nil {
		return PolicyStatus{}, fmt.Errorf("monitoring settings: %w", ErrState)
	}
	p := fleet.DevicePolicy{Device: device, MonitorSettings: s, Updated: e.opts.Now().UTC()}
	if err := p.Validate(); err != nil {
		return PolicyStatus{}, fmt.Errorf("%w: %w", errBadPolicy, err)
	}
	busy := inProgress(e.opts.Fleet.Devices())
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.opts.Policies.PutDevicePolicy(ctx, p); err != nil {
		return PolicyStatus{}, err
	}
	if p.Empty() {
		delete(e.policies, device)
	} else {
		e.policies[device] = p
	}
	e.recheck[device] = true
	if err := e.commitPoliciesLocked(ctx, e.reconcileLocked([]string{device}, p.Updated, busy)); err != nil {
		// Stored: the next round retries the desired state.
		e.log.Warn("monitoring settings stored but not yet applied", "device", device, "err", err)
	} else if e.holdLocked(device, busy) == "" {
		delete(e.recheck, device)
	}
	e.poke()
	return e.policyStatusLocked(device, busy), nil
}

// errBadPolicy marks settings refused as invalid (the API answers 400).
var errBadPolicy = errors.New("invalid monitoring settings")

// IsBadPolicy reports whether err is SetPolicy refusing invalid settings.
func IsBadPolicy(err error) bool { return err != nil && errors.Is(err, errBadPolicy) }

// Policy returns device's monitoring settings and what its desired state carries.
func (e *Engine) Policy(device string) PolicyStatus {
	busy := inProgress(e.opts.Fleet.Devices())
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.policyStatusLocked(device, busy)
}

// Policies returns the status of every device that has settings, ordered by device.
func (e *Engine) Policies() []PolicyStatus {
	busy := inProgress(e.opts.Fleet.Devices())
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]PolicyStatus, 0, len(e.policies))
	for d := range e.policies {
		out = append(out, e.policyStatusLocked(d, busy))
	}
	slices.SortFunc(out, func(a, b PolicyStatus) int { return cmp.Compare(a.Device, b.Device) })
	return out
}

func (e *Engine) policyStatusLocked(device string, busy map[string]string) PolicyStatus {
	cur := e.desired[device]
	st := PolicyStatus{Device: device, Base: e.base[device], Generation: cur.Generation,
		Effective: fleet.MonitorSettings{Drift: cur.Drift, Capture: cur.Capture},
		Published: cur.Generation != 0 && !e.unsent[device]}
	if p, ok := e.policies[device]; ok {
		st.Settings = &p
	}
	if !fleet.SameMonitoring(e.wantLocked(device), st.Effective) {
		st.Pending = cmp.Or(e.holdLocked(device, busy), "not yet stored; retrying")
	}
	return st
}
