// Package rollout is the controller's rollout engine: it moves a registered model onto a
// selection of devices in waves (a canary first), publishes each device's desired state,
// follows the update state the devices report in their health, and gates every wave on the
// model's behaviour (failure rate, p99 latency ratio, shadow agreement, drift PSI). A failed
// gate halts the rollout and orders the wave's devices back to their previous model. Every
// decision is persisted in the fleet Store before it is published, so a restarted controller
// continues where it stopped.
package rollout

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Fleet is the live device table the engine reads reported state from: the controller's
// Devices(), whose Health carries each device's UpdateStatus.
type Fleet interface {
	Devices() []fleet.DeviceStatus
}

// Publisher delivers a device's desired state: retained, QoS 1, on c/{device}/desired. It
// returns once the broker has it.
type Publisher interface {
	PublishDesired(ctx context.Context, device string, d wire.Desired) error
}

// Store is what the engine persists through (fleet.Store satisfies it).
type Store interface {
	Model(ctx context.Context, name, version string) (fleet.Model, error)
	PutRollout(ctx context.Context, r fleet.Rollout, desired []fleet.DeviceDesired) error
	Rollouts(ctx context.Context) ([]fleet.Rollout, error)
	Desired(ctx context.Context) ([]fleet.DeviceDesired, error)
	DeviceTags(ctx context.Context) (map[string]map[string]string, error)
}

// DefaultInterval is how often the engine evaluates reports when nothing wakes it.
const DefaultInterval = time.Second

// Errors callers branch on.
var (
	ErrState     = errors.New("not allowed in this state")
	ErrNoDevices = errors.New("no devices selected")
	// ErrUnpublished: the model is registered but not in the TUF repository.
	ErrUnpublished = errors.New("model not published")
)

// Options configure New.
type Options struct {
	Store     Store
	Fleet     Fleet
	Publisher Publisher
	Interval  time.Duration // default DefaultInterval
	// ResendAfter: a device in a rollout that has not reported acting on its desired state
	// this long after it was decided (or last resent) gets it published again. Retained
	// messages can be lost (a broker restart; mochi-mqtt's retained index races a concurrent
	// subscribe, mochi-mqtt/server#200) and a desired state must never be. Generations make a
	// repeat harmless. Default DefaultResendAfter.
	ResendAfter time.Duration
	Now         func() time.Time // default time.Now
	Logger      *slog.Logger     // nil discards
	// Drift, when set, lets the MaxDriftPSI gate also read the controller's stored drift
	// summaries (fleet.ViewStore satisfies it): a device in probation or committed fails the
	// gate when any scored feature of any of its windows of the candidate model since the
	// rollout started has a PSI above the limit, as well as when its own probation PSI is.
	// Nil: the device's probation figure alone (docs/monitoring.md).
	Drift DriftSource
	// Policies, when set, keeps per-device monitoring settings, merged into every desired
	// state and published when they change (policy.go). Nil: none.
	Policies PolicyStore
}

// DriftSource reads stored drift summaries.
type DriftSource interface {
	Drift(ctx context.Context, q fleet.DriftQuery) ([]fleet.DriftRecord, error)
}

// Engine runs rollouts. Its methods are safe for concurrent use.
type Engine struct {
	opts Options
	log  *slog.Logger
	wake chan struct{} // capacity 1: a pending wake-up is enough

	// mu guards the fields below. Store writes happen under it (they are the engine's
	// decisions); publishing does not.
	mu       sync.Mutex
	rollouts []*fleet.Rollout        // in creation order
	desired  map[string]wire.Desired // by device: the last desired state decided
	unsent   map[string]bool         // devices whose desired state the broker may not have yet
	resent   map[string]time.Time    // when a silent device's desired state was last resent
	// ctlPSI is, for the rollout being stepped, each device's highest PSI in the stored
	// drift summaries of the candidate model (see Options.Drift).
	ctlPSI map[string]float64
	// policies are the per-device monitoring settings; base is, per device, the drift and
	// capture values its last desired state had before they were merged in (policy.go).
	policies map[string]fleet.DevicePolicy
	base     map[string]fleet.MonitorSettings
	recheck  map[string]bool // devices whose desired state may not carry their settings yet
}

// DefaultResendAfter is Options.ResendAfter's default.
const DefaultResendAfter = 30 * time.Second

// New loads the engine's state from the store. It starts no goroutines; Run does the work.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Store == nil || opts.Fleet == nil || opts.Publisher == nil {
		return nil, errors.New("rollout engine: store, fleet and publisher are required")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{opts: opts, log: log, wake: make(chan struct{}, 1), desired: map[string]wire.Desired{}, unsent: map[string]bool{}, resent: map[string]time.Time{}, base: map[string]fleet.MonitorSettings{}, recheck: map[string]bool{}}
	if e.opts.ResendAfter <= 0 {
		e.opts.ResendAfter = DefaultResendAfter
	}
	rs, err := opts.Store.Rollouts(ctx)
	if err != nil {
		return nil, fmt.Errorf("rollout engine: %w", err)
	}
	for i := range rs {
		e.rollouts = append(e.rollouts, &rs[i])
	}
	ds, err := opts.Store.Desired(ctx)
	if err != nil {
		return nil, fmt.Errorf("rollout engine: %w", err)
	}
	for _, d := range ds {
		e.desired[d.Device] = d.Desired
		e.base[d.Device] = baseOf(d)
		if d.Base != nil {
			e.recheck[d.Device] = true // settings were merged in; they may since be gone
		}
		// The broker may have lost retained messages (the embedded one keeps none across a
		// restart): publish every desired state again. Generations make that harmless.
		e.unsent[d.Device] = true
	}
	if err := e.loadPolicies(ctx); err != nil {
		return nil, fmt.Errorf("rollout engine: %w", err)
	}
	return e, nil
}

// Run evaluates rollouts every Interval (and whenever a change wakes it) until ctx ends.
// Store errors end it; publish errors are retried on the next round.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.opts.Interval)
	defer t.Stop()
	for {
		if err := e.Step(ctx); err != nil {
			return err
		}
		e.reconcilePolicies(ctx)
		e.publish(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-e.wake:
		}
	}
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// publish sends every unsent desired state; failures stay unsent for the next round.
func (e *Engine) publish(ctx context.Context) {
	e.mu.Lock()
	todo := make([]fleet.DeviceDesired, 0, len(e.unsent))
	for dev := range e.unsent {
		todo = append(todo, fleet.DeviceDesired{Device: dev, Desired: e.desired[dev]})
	}
	e.mu.Unlock()
	slices.SortFunc(todo, func(a, b fleet.DeviceDesired) int { return cmp.Compare(a.Device, b.Device) })
	var failed int
	var first error
	for _, d := range todo {
		if ctx.Err() != nil {
			return
		}
		if err := e.opts.Publisher.PublishDesired(ctx, d.Device, d.Desired); err != nil {
			failed++
			first = cmp.Or(first, err)
			continue
		}
		e.mu.Lock()
		if e.desired[d.Device].Generation == d.Desired.Generation {
			delete(e.unsent, d.Device)
		}
		e.mu.Unlock()
	}
	if failed > 0 {
		e.log.Warn("desired state not published; retrying", "devices", failed, "first", first)
	}
}

// resendIfSilentLocked marks device's desired state for publishing again when the device has
// said nothing about it for ResendAfter since it was decided (at decided) or last resent.
func (e *Engine) resendIfSilentLocked(device string, decided, now time.Time) {
	last := decided
	if t, ok := e.resent[device]; ok && t.After(last) {
		last = t
	}
	if now.Sub(last) >= e.opts.ResendAfter && !e.unsent[device] {
		e.unsent[device] = true
		e.resent[device] = now
	}
}

// Unsent is the number of devices whose latest desired state is not yet published.
func (e *Engine) Unsent() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.unsent)
}

// Desired returns the desired state last decided for device (Generation 0 if none).
func (e *Engine) Desired(device string) wire.Desired {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.desired[device]
}

// Create validates spec, selects the devices, splits them into waves and starts the canary
// (its desired states go out on the next round, which Create triggers).
func (e *Engine) Create(ctx context.Context, spec fleet.RolloutSpec) (fleet.Rollout, error) {
	if err := Normalize(&spec); err != nil {
		return fleet.Rollout{}, err
	}
	name, version, _ := registry.ParseRef(spec.Model)
	m, err := e.opts.Store.Model(ctx, name, version)
	if err != nil {
		return fleet.Rollout{}, err
	}
	if !m.Published {
		return fleet.Rollout{}, fmt.Errorf("%w: %s is registered but not in the TUF repository, so devices could not fetch it", ErrUnpublished, spec.Model)
	}
	tags, err := e.opts.Store.DeviceTags(ctx)
	if err != nil {
		return fleet.Rollout{}, err
	}
	live := e.opts.Fleet.Devices()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now().UTC()
	r := fleet.Rollout{
		ID: "r" + strconv.Itoa(len(e.rollouts)+1), Spec: spec, Model: m.Ref(), Target: m.Target,
		State: fleet.RolloutRunning, Created: now, Updated: now,
	}
	busy := e.busyLocked()
	minAgent, _ := registry.ParseVersion(m.MinAgentVersion)
	var chosen []string
	for _, d := range live {
		if !matches(d, tags[d.ID], spec.Select) {
			continue
		}
		var why string
		switch {
		case busy[d.ID] != "":
			why = "in rollout " + busy[d.ID]
		case d.Model.Name == m.Name && d.Model.Version == m.Version:
			why = "already runs " + m.Name + "@" + m.Version
		case d.Health != nil:
			if v, err := registry.ParseVersion(d.Health.AgentVersion); err == nil && v.Compare(minAgent) < 0 {
				why = "agent " + d.Health.AgentVersion + " is older than the model's minimum " + m.MinAgentVersion
			}
		}
		if why != "" {
			r.Skipped = append(r.Skipped, fleet.Skipped{ID: d.ID, Reason: why})
			continue
		}
		chosen = append(chosen, d.ID)
	}
	if len(chosen) == 0 {
		return fleet.Rollout{}, fmt.Errorf("%w (of %d devices, %d skipped)", ErrNoDevices, len(live), len(r.Skipped))
	}
	r.Waves = plan(r.ID, chosen, spec)
	desired := e.startWaveLocked(&r, live)
	if err := e.opts.Store.PutRollout(ctx, r, desired); err != nil {
		return fleet.Rollout{}, err
	}
	e.commitDesiredLocked(desired)
	e.rollouts = append(e.rollouts, &r)
	e.log.Info("rollout created", "id", r.ID, "model", spec.Model, "devices", len(chosen), "waves", len(r.Waves), "skipped", len(r.Skipped))
	e.poke()
	return clone(r), nil
}

// matches reports whether a device fits every selector.
func matches(d fleet.DeviceStatus, tags map[string]string, sel []string) bool {
	for _, s := range sel {
		k, v, _ := ParseSelector(s)
		var got string
		switch k {
		case "id":
			got = d.ID
		case "model":
			got = d.Model.Name
		default:
			got = tags[k]
		}
		if got != v {
			return false
		}
	}
	return true
}

// plan orders the devices by a hash of rollout and device id (so the canary is not always
// the same devices) and cuts them into waves by the spec's cumulative fractions. Wave sizes
// round up, so a non-zero fraction always gets a device; empty waves are dropped.
func plan(id string, devices []string, spec fleet.RolloutSpec) []fleet.Wave {
	key := func(d string) [32]byte { return sha256.Sum256([]byte(id + "\x00" + d)) }
	slices.SortFunc(devices, func(a, b string) int {
		ka, kb := key(a), key(b)
		return cmp.Or(slices.Compare(ka[:], kb[:]), cmp.Compare(a, b))
	})
	n := len(devices)
	var waves []fleet.Wave
	done := 0
	cuts := append([]float64{spec.Canary}, spec.Waves...)
	for i, p := range cuts {
		upto := min(n, ceilFrac(p, n))
		if i == 0 && p > 0 {
			upto = max(upto, 1)
		}
		if upto <= done {
			continue
		}
		name := Percent(p)
		if i == 0 {
			name = "canary"
		}
		w := fleet.Wave{Name: name, Percent: p, State: fleet.WavePending}
		for _, d := range devices[done:upto] {
			w.Devices = append(w.Devices, fleet.RolloutDevice{ID: d})
		}
		waves = append(waves, w)
		done = upto
	}
	return waves
}

// busyLocked maps each device in an unfinished wave of a running or paused rollout to that
// rollout's id.
func (e *Engine) busyLocked() map[string]string {
	out := map[string]string{}
	for _, r := range e.rollouts {
		if r.State != fleet.RolloutRunning && r.State != fleet.RolloutPaused {
			continue
		}
		for _, w := range r.Waves {
			for _, d := range w.Devices {
				if d.Outcome == fleet.OutcomePending {
					out[d.ID] = r.ID
				}
			}
		}
	}
	return out
}

// startWaveLocked marks r's current wave running and returns the desired states that tell
// its devices to update.
func (e *Engine) startWaveLocked(r *fleet.Rollout, live []fleet.DeviceStatus) []fleet.DeviceDesired {
	w := &r.Waves[r.Wave]
	now := e.opts.Now().UTC()
	w.State, w.Started = fleet.WaveRunning, now
	running := map[string]wire.ModelRef{}
	for _, d := range live {
		running[d.ID] = d.Model
	}
	out := make([]fleet.DeviceDesired, 0, len(w.Devices))
	g := r.Spec.Gates
	for i := range w.Devices {
		d := &w.Devices[i]
		des := wire.Desired{
			V: wire.SchemaVersion, Generation: e.desired[d.ID].Generation + 1, Rollout: r.ID,
			Model:              &wire.DesiredModel{Name: r.Model.Name, Version: r.Model.Version, Target: r.Target, SHA256: r.Model.SHA256},
			ShadowS:            r.Spec.Shadow.Seconds(),
			ProbationS:         r.Spec.Probation.Seconds(),
			MaxErrorRate:       g.MaxErrorRate,
			MaxLatencyRatio:    g.MaxP99LatencyRatio,
			MinShadowAgreement: g.MinShadowAgreement,
			MaxDriftPSI:        g.MaxDriftPSI,
			Drift:              r.Spec.Drift,
			Capture:            r.Spec.Capture,
			Time:               now,
		}
		d.Generation, d.Previous, d.Updated = des.Generation, running[d.ID], now
		out = append(out, e.withPolicyLocked(d.ID, des))
	}
	return out
}

// rollbackLocked orders device d of r back to its previous model.
func (e *Engine) rollbackLocked(r *fleet.Rollout, d *fleet.RolloutDevice, why string) fleet.DeviceDesired {
	now := e.opts.Now().UTC()
	// A rollback keeps the capture policy in force: data about the failure is the most useful.
	des := wire.Desired{V: wire.SchemaVersion, Generation: e.desired[d.ID].Generation + 1, Rollout: r.ID, Rollback: true, Time: now, Capture: e.base[d.ID].Capture}
	if d.Previous.Name != "" {
		des.Model = &wire.DesiredModel{Name: d.Previous.Name, Version: d.Previous.Version, Target: registry.TargetName(d.Previous.Name, d.Previous.Version), SHA256: d.Previous.SHA256}
	}
	d.Generation, d.Outcome, d.Updated = des.Generation, fleet.OutcomeRolledBack, now
	d.Phase = ""
	if d.Reason == "" {
		d.Reason = why
	}
	return e.withPolicyLocked(d.ID, des)
}

// commitDesiredLocked records desired states the store now holds, for publishing.
func (e *Engine) commitDesiredLocked(ds []fleet.DeviceDesired) {
	for _, d := range ds {
		e.desired[d.Device] = d.Desired
		e.base[d.Device] = baseOf(d)
		e.unsent[d.Device] = true
	}
}

// Step applies the devices' latest reports to every rollout and takes the decisions that
// follow (next wave, halt, completion), persisting each changed rollout before its desired
// states are published. Run calls it every round; tests may call it directly.
func (e *Engine) Step(ctx context.Context) error {
	live := e.opts.Fleet.Devices()
	byID := make(map[string]*wire.UpdateStatus, len(live))
	for _, d := range live {
		if d.Health != nil && d.Health.Update != nil {
			byID[d.ID] = d.Health.Update
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.rollouts {
		psi, err := e.controllerPSI(ctx, r)
		if err != nil {
			return fmt.Errorf("rollout %s: %w", r.ID, err)
		}
		e.ctlPSI = psi
		next := clone(*r)
		desired, changed := e.stepLocked(&next, byID, live)
		if !changed {
			continue
		}
		next.Updated = e.opts.Now().UTC()
		if err := e.opts.Store.PutRollout(ctx, next, desired); err != nil {
			return fmt.Errorf("rollout %s: %w", r.ID, err)
		}
		*r = next
		e.commitDesiredLocked(desired)
	}
	return nil
}

// stepLocked advances one rollout (a copy the caller persists when changed).
func (e *Engine) stepLocked(r *fleet.Rollout, reports map[string]*wire.UpdateStatus, live []fleet.DeviceStatus) (desired []fleet.DeviceDesired, changed bool) {
	now := e.opts.Now().UTC()
	online := make(map[string]bool, len(live))
	for _, d := range live {
		online[d.ID] = d.Online
	}
	// 1. Reports: every device told something by this rollout, whatever the rollout's state,
	// so late and offline devices are still followed.
	for wi := range r.Waves {
		w := &r.Waves[wi]
		for i := range w.Devices {
			d := &w.Devices[i]
			u := reports[d.ID]
			if d.Generation != 0 && online[d.ID] && (u == nil || u.Generation < d.Generation) && e.desired[d.ID].Generation == d.Generation {
				e.resendIfSilentLocked(d.ID, d.Updated, now)
			}
			if d.Generation == 0 || u == nil || u.Generation != d.Generation || u.Rollout != r.ID {
				continue
			}
			if applyReport(d, u) {
				d.Updated, changed = now, true
			}
			if d.Outcome != fleet.OutcomePending {
				continue
			}
			if why := deviceGate(r.Spec, d, e.ctlPSI[d.ID]); why != "" {
				d.Outcome, d.Reason, changed = fleet.OutcomeFailed, why, true
				// The device did not catch it itself (it may run an older agent or the gate is
				// the controller's own): order it back.
				if d.Phase != wire.PhaseRolledBack && d.Phase != wire.PhaseFailed {
					desired = append(desired, e.rollbackLocked(r, d, why))
					d.Outcome = fleet.OutcomeFailed
				}
				continue
			}
			switch d.Phase {
			case wire.PhaseCommitted:
				d.Outcome, changed = fleet.OutcomeSucceeded, true
			case wire.PhaseRolledBack, wire.PhaseFailed:
				d.Outcome, changed = fleet.OutcomeFailed, true
				d.Reason = cmp.Or(u.Reason, "device reported "+u.Phase)
			}
		}
	}
	if r.State != fleet.RolloutRunning && r.State != fleet.RolloutPaused {
		return desired, changed
	}
	// 2. The current wave's gates. They hold while paused too: pausing stops progress, not
	// protection.
	w := &r.Waves[r.Wave]
	if w.State != fleet.WaveRunning {
		if r.State == fleet.RolloutRunning && w.State == fleet.WavePending {
			desired = append(desired, e.startWaveLocked(r, live)...)
			changed = true
		}
		return desired, changed
	}
	n := len(w.Devices)
	var failed, succeeded int
	for _, d := range w.Devices {
		switch d.Outcome {
		case fleet.OutcomeFailed:
			failed++
		case fleet.OutcomeSucceeded:
			succeeded++
		}
	}
	need := ceilFrac(r.Spec.SuccessThreshold, n)
	rate := float64(failed) / float64(n)
	var halt string
	switch {
	case failed > 0 && rate > r.Spec.Gates.MaxFailure:
		halt = fmt.Sprintf("wave %s: failure rate %s (%d of %d) is above the %s gate", w.Name, Percent(rate), failed, n, Percent(r.Spec.Gates.MaxFailure))
	case n-failed < need:
		halt = fmt.Sprintf("wave %s: %d of %d failed; the %s success threshold cannot be met", w.Name, failed, n, Percent(r.Spec.SuccessThreshold))
	}
	if halt != "" {
		r.State, r.Reason, w.State, w.Finished = fleet.RolloutHalted, halt, fleet.WaveHalted, now
		for i := range w.Devices {
			d := &w.Devices[i]
			if d.Outcome == fleet.OutcomePending || d.Outcome == fleet.OutcomeSucceeded {
				desired = append(desired, e.rollbackLocked(r, d, "rollout halted: "+halt))
			}
		}
		e.log.Warn("rollout halted", "id", r.ID, "reason", halt, "rolled_back", len(desired))
		return desired, true
	}
	if succeeded < need || r.State != fleet.RolloutRunning {
		return desired, changed
	}
	w.State, w.Finished = fleet.WavePassed, now
	if r.Wave == len(r.Waves)-1 {
		r.State = fleet.RolloutCompleted
		e.log.Info("rollout completed", "id", r.ID)
		return desired, true
	}
	r.Wave++
	desired = append(desired, e.startWaveLocked(r, live)...)
	e.log.Info("rollout wave started", "id", r.ID, "wave", r.Waves[r.Wave].Name, "devices", len(r.Waves[r.Wave].Devices))
	return desired, true
}

// phaseRank orders the phases of one generation; a report ranking below what was already
// seen for the same generation is stale (a broker can replay an older health report after a
// newer one, e.g. a persistent session's backlog after the retained message) and is ignored.
var phaseRank = map[string]int{
	wire.PhaseIdle: 0, wire.PhaseDownloading: 1, wire.PhaseVerifying: 2, wire.PhaseStaging: 3, wire.PhaseShadow: 4,
	wire.PhaseActivating: 5, wire.PhaseProbation: 6, wire.PhaseCommitted: 7, wire.PhaseRolledBack: 7, wire.PhaseFailed: 7,
}

// applyReport copies a report into d; it says whether anything changed.
func applyReport(d *fleet.RolloutDevice, u *wire.UpdateStatus) bool {
	if d.Phase != "" && phaseRank[u.Phase] < phaseRank[d.Phase] {
		return false
	}
	if phaseRank[d.Phase] == phaseRank[wire.PhaseCommitted] && u.Phase != d.Phase {
		return false // a finished generation does not change
	}
	before := *d
	d.Phase, d.Progress = u.Phase, u.Progress
	if u.Shadow != nil {
		s := *u.Shadow
		d.Shadow = &s
	}
	if u.Probation != nil {
		p := *u.Probation
		d.Probation = &p
	}
	if u.Reason != "" && d.Outcome == fleet.OutcomePending {
		d.Reason = u.Reason
	}
	return before.Phase != d.Phase || before.Progress != d.Progress || before.Reason != d.Reason ||
		!ptrEqual(before.Shadow, d.Shadow) || !ptrEqual(before.Probation, d.Probation)
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// controllerPSI reads the stored drift summaries of r's candidate model since r started, for
// a running or paused rollout with a drift gate; nil otherwise.
func (e *Engine) controllerPSI(ctx context.Context, r *fleet.Rollout) (map[string]float64, error) {
	if e.opts.Drift == nil || r.Spec.Gates.MaxDriftPSI <= 0 || (r.State != fleet.RolloutRunning && r.State != fleet.RolloutPaused) {
		return nil, nil
	}
	recs, err := e.opts.Drift.Drift(ctx, fleet.DriftQuery{Model: r.Model.String(), Since: r.Created, Limit: fleet.MaxResultLimit})
	if err != nil {
		return nil, fmt.Errorf("drift summaries: %w", err)
	}
	return WorstPSI(recs, r.Model), nil
}

// WorstPSI is, per device, the highest PSI of a scored feature in recs' windows of model.
func WorstPSI(recs []fleet.DriftRecord, model wire.ModelRef) map[string]float64 {
	out := map[string]float64{}
	for i := range recs {
		s := &recs[i].Summary
		if s.Model.Name != model.Name || s.Model.Version != model.Version {
			continue
		}
		for j := range s.Features {
			if f := &s.Features[j]; f.Scored && f.PSI > out[s.Device] {
				out[s.Device] = f.PSI
			}
		}
	}
	return out
}

// deviceGate checks a device's reported figures against the gates once they are final: shadow
// figures when the device has left shadow, probation figures when it has committed. ctlPSI is
// the device's worst PSI in the controller's drift summaries of the candidate (0: none); it
// counts from probation on, when the candidate is the model being watched. It returns why the
// device fails, or "".
func deviceGate(s fleet.RolloutSpec, d *fleet.RolloutDevice, ctlPSI float64) string {
	g := s.Gates
	if g.MaxDriftPSI > 0 && ctlPSI > g.MaxDriftPSI && (d.Phase == wire.PhaseProbation || d.Phase == wire.PhaseCommitted) {
		return fmt.Sprintf("gate: drift PSI %.3f in the controller's drift summaries is above %.3f", ctlPSI, g.MaxDriftPSI)
	}
	switch d.Phase {
	case wire.PhaseActivating, wire.PhaseProbation, wire.PhaseCommitted, wire.PhaseRolledBack, wire.PhaseFailed:
		if sh := d.Shadow; sh != nil && sh.Windows > 0 {
			if g.MinShadowAgreement > 0 && sh.Agreement < g.MinShadowAgreement {
				return fmt.Sprintf("gate: shadow agreement %s is below %s", Percent(sh.Agreement), Percent(g.MinShadowAgreement))
			}
			if g.MaxP99LatencyRatio > 0 && sh.LatencyRatio > g.MaxP99LatencyRatio {
				return fmt.Sprintf("gate: shadow p99 latency ratio %.2f is above %.2f", sh.LatencyRatio, g.MaxP99LatencyRatio)
			}
		}
	}
	if p := d.Probation; p != nil && d.Phase == wire.PhaseCommitted && p.Windows > 0 {
		switch {
		case g.MaxP99LatencyRatio > 0 && p.LatencyRatio > g.MaxP99LatencyRatio:
			return fmt.Sprintf("gate: probation p99 latency ratio %.2f is above %.2f", p.LatencyRatio, g.MaxP99LatencyRatio)
		case g.MaxDriftPSI > 0 && p.DriftPSI > g.MaxDriftPSI:
			return fmt.Sprintf("gate: drift PSI %.3f is above %.3f", p.DriftPSI, g.MaxDriftPSI)
		case g.MaxErrorRate > 0 && float64(p.Errors)/float64(p.Windows) > g.MaxErrorRate:
			return fmt.Sprintf("gate: error rate %s is above %s", Percent(float64(p.Errors)/float64(p.Windows)), Percent(g.MaxErrorRate))
		}
	}
	return ""
}

// Get returns rollout id.
func (e *Engine) Get(id string) (fleet.Rollout, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.rollouts {
		if r.ID == id {
			return clone(*r), nil
		}
	}
	return fleet.Rollout{}, fmt.Errorf("rollout %s: %w", id, fleet.ErrNotFound)
}

// List returns every rollout, oldest first.
func (e *Engine) List() []fleet.Rollout {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]fleet.Rollout, len(e.rollouts))
	for i, r := range e.rollouts {
		out[i] = clone(*r)
	}
	return out
}

// Pause stops a running rollout from starting further waves; devices already told go on and
// gates keep watching them.
func (e *Engine) Pause(ctx context.Context, id string) (fleet.Rollout, error) {
	return e.change(ctx, id, func(r *fleet.Rollout) ([]fleet.DeviceDesired, error) {
		if r.State != fleet.RolloutRunning {
			return nil, fmt.Errorf("pause rollout %s: %w (%s)", id, ErrState, r.State)
		}
		r.State = fleet.RolloutPaused
		return nil, nil
	})
}

// Resume continues a paused rollout.
func (e *Engine) Resume(ctx context.Context, id string) (fleet.Rollout, error) {
	return e.change(ctx, id, func(r *fleet.Rollout) ([]fleet.DeviceDesired, error) {
		if r.State != fleet.RolloutPaused {
			return nil, fmt.Errorf("resume rollout %s: %w (%s)", id, ErrState, r.State)
		}
		r.State = fleet.RolloutRunning
		return nil, nil
	})
}

// Abort stops a running or paused rollout for good: devices of the current wave that have
// not finished are ordered back to their previous model; devices that committed keep the
// new one, and later waves are never started.
func (e *Engine) Abort(ctx context.Context, id string) (fleet.Rollout, error) {
	return e.change(ctx, id, func(r *fleet.Rollout) ([]fleet.DeviceDesired, error) {
		if r.State != fleet.RolloutRunning && r.State != fleet.RolloutPaused {
			return nil, fmt.Errorf("abort rollout %s: %w (%s)", id, ErrState, r.State)
		}
		r.State, r.Reason = fleet.RolloutAborted, "aborted by hand"
		var out []fleet.DeviceDesired
		w := &r.Waves[r.Wave]
		for i := range w.Devices {
			if d := &w.Devices[i]; d.Generation > 0 && d.Outcome == fleet.OutcomePending {
				out = append(out, e.rollbackLocked(r, d, "rollout aborted"))
			}
		}
		if w.State == fleet.WaveRunning {
			w.State, w.Finished = fleet.WaveHalted, e.opts.Now().UTC()
		}
		return out, nil
	})
}

// change applies f to a copy of rollout id, persists it and wakes Run.
func (e *Engine) change(ctx context.Context, id string, f func(*fleet.Rollout) ([]fleet.DeviceDesired, error)) (fleet.Rollout, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.rollouts {
		if r.ID != id {
			continue
		}
		next := clone(*r)
		desired, err := f(&next)
		if err != nil {
			return fleet.Rollout{}, err
		}
		next.Updated = e.opts.Now().UTC()
		if err := e.opts.Store.PutRollout(ctx, next, desired); err != nil {
			return fleet.Rollout{}, err
		}
		*r = next
		e.commitDesiredLocked(desired)
		e.log.Info("rollout changed by hand", "id", id, "state", next.State)
		e.poke()
		return clone(next), nil
	}
	return fleet.Rollout{}, fmt.Errorf("rollout %s: %w", id, fleet.ErrNotFound)
}

// clone deep-copies a rollout so callers never share the engine's slices.
func clone(r fleet.Rollout) fleet.Rollout {
	r.Spec.Select = slices.Clone(r.Spec.Select)
	r.Spec.Waves = slices.Clone(r.Spec.Waves)
	r.Skipped = slices.Clone(r.Skipped)
	r.Waves = slices.Clone(r.Waves)
	for i := range r.Waves {
		r.Waves[i].Devices = slices.Clone(r.Waves[i].Devices)
		for j := range r.Waves[i].Devices {
			d := &r.Waves[i].Devices[j]
			if d.Shadow != nil {
				s := *d.Shadow
				d.Shadow = &s
			}
			if d.Probation != nil {
				p := *d.Probation
				d.Probation = &p
			}
		}
	}
	return r
}

// ceilFrac is ⌈f·n⌉, robust to fractions like 0.29 that are a hair above their decimal.
func ceilFrac(f float64, n int) int { return int(math.Ceil(f*float64(n) - 1e-9)) }
