package rollout

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Simulated devices for the engine's tests: each reacts to a Desired the way an agent's
// update state machine reports it (wire.UpdateStatus in its health), with a scripted
// behaviour for the candidate model.

type behaviour int

const (
	good          behaviour = iota
	failProbation           // the device's own probation check rolls it back
	slowCommit              // commits, but its p99 latency ratio breaks the gate
	disagree                // shadow agreement far below the gate; the device does not catch it
	drifting                // commits with a drift PSI above the gate
	silent                  // never answers (offline)
)

var oldModel = wire.ModelRef{Name: "vib", Version: "1.0.0", SHA256: "aa"}

type simDevice struct {
	id    string
	b     behaviour
	agent string

	mu     sync.Mutex
	model  wire.ModelRef
	update *wire.UpdateStatus
	seen   uint64 // highest generation acted on
}

func newSimDevice(id string, b behaviour) *simDevice {
	return &simDevice{id: id, b: b, agent: "0.9.0", model: oldModel}
}

// phases returns the reports the device makes, in order, for desired state d; each is what
// its health carries after the previous one.
func (s *simDevice) phases(d wire.Desired) []wire.UpdateStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.Generation <= s.seen || s.b == silent {
		return nil
	}
	s.seen = d.Generation
	base := wire.UpdateStatus{Generation: d.Generation, Rollout: d.Rollout, Previous: s.model}
	at := func(phase string, mod func(*wire.UpdateStatus)) wire.UpdateStatus {
		u := base
		u.Phase = phase
		if mod != nil {
			mod(&u)
		}
		return u
	}
	if d.Rollback {
		base.Target = oldModel
		return []wire.UpdateStatus{at(wire.PhaseRolledBack, func(u *wire.UpdateStatus) { u.Reason = "ordered back by the controller" })}
	}
	if d.Model == nil {
		return nil // settings only (policy.go): the device keeps what runs
	}
	base.Target = wire.ModelRef{Name: d.Model.Name, Version: d.Model.Version, SHA256: d.Model.SHA256}
	out := []wire.UpdateStatus{
		at(wire.PhaseDownloading, func(u *wire.UpdateStatus) { u.Progress = 0.5 }),
		at(wire.PhaseVerifying, nil), at(wire.PhaseStaging, nil),
	}
	shadow := &wire.ShadowStats{Windows: 40, Agreement: 0.99, OutputJS: 0.01, LatencyRatio: 1.05}
	if s.b == disagree {
		shadow.Agreement = 0.62
	}
	if d.ShadowS > 0 {
		out = append(out, at(wire.PhaseShadow, func(u *wire.UpdateStatus) { u.Shadow = shadow }))
	} else {
		shadow = nil
	}
	prob := &wire.ProbationStats{Windows: 100, LatencyRatio: 1.1, DriftPSI: 0.02}
	with := func(u *wire.UpdateStatus) { u.Shadow, u.Probation = shadow, prob }
	out = append(out, at(wire.PhaseActivating, func(u *wire.UpdateStatus) { u.Shadow = shadow }), at(wire.PhaseProbation, with))
	switch s.b {
	case failProbation:
		prob.Errors = 30
		out = append(out, at(wire.PhaseRolledBack, func(u *wire.UpdateStatus) { with(u); u.Reason = "probation: error rate 30% above 2%" }))
	case slowCommit:
		prob.LatencyRatio = 2.5
		out = append(out, at(wire.PhaseCommitted, with))
	case drifting:
		prob.DriftPSI = 0.6
		out = append(out, at(wire.PhaseCommitted, with))
	default:
		out = append(out, at(wire.PhaseCommitted, with))
	}
	return out
}

// set changes the device's behaviour for the desired states it receives from now on.
func (s *simDevice) set(b behaviour) {
	s.mu.Lock()
	s.b = b
	s.mu.Unlock()
}

func (s *simDevice) behaviour() behaviour {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b
}

// apply makes u the device's reported state.
func (s *simDevice) apply(u wire.UpdateStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.update = &u
	switch u.Phase {
	case wire.PhaseActivating, wire.PhaseProbation, wire.PhaseCommitted:
		s.model = u.Target
	case wire.PhaseRolledBack:
		s.model = u.Previous
		if u.Target == oldModel {
			s.model = oldModel
		}
	}
}

func (s *simDevice) health() *wire.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &wire.Health{V: 1, Device: s.id, Time: time.Now(), AgentVersion: s.agent, Model: s.model}
	if s.update != nil {
		u := *s.update
		h.Update = &u
	}
	return h
}

// simFleet is an in-memory Fleet and Publisher: publishing a desired state queues the
// device's reports, and deliver applies the next one of every device.
type simFleet struct {
	mu      sync.Mutex
	devices []*simDevice
	queued  map[string][]wire.UpdateStatus
	sent    map[string][]wire.Desired
	failPub bool
}

func newSimFleet(n int, script func(i int) behaviour) *simFleet {
	f := &simFleet{queued: map[string][]wire.UpdateStatus{}, sent: map[string][]wire.Desired{}}
	for i := range n {
		f.devices = append(f.devices, newSimDevice(fmt.Sprintf("dev-%03d", i), script(i)))
	}
	return f
}

func (f *simFleet) device(id string) *simDevice {
	for _, d := range f.devices {
		if d.id == id {
			return d
		}
	}
	return nil
}

func (f *simFleet) Devices() []fleet.DeviceStatus {
	out := make([]fleet.DeviceStatus, 0, len(f.devices))
	for _, d := range f.devices {
		h := d.health()
		out = append(out, fleet.DeviceStatus{ID: d.id, Online: d.behaviour() != silent, Model: h.Model, Health: h})
	}
	return out
}

func (f *simFleet) PublishDesired(_ context.Context, device string, d wire.Desired) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failPub {
		return fmt.Errorf("broker unreachable")
	}
	f.sent[device] = append(f.sent[device], d)
	if dev := f.device(device); dev != nil {
		if ph := dev.phases(d); ph != nil {
			f.queued[device] = ph // a newer desired state replaces what was left of an older one
		}
	}
	return nil
}

// deliver applies the next queued report of every device; it says whether any was left.
func (f *simFleet) deliver() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	any := false
	for id, q := range f.queued {
		if len(q) == 0 {
			continue
		}
		f.device(id).apply(q[0])
		f.queued[id] = q[1:]
		any = true
	}
	return any
}

func (f *simFleet) lastSent(device string) (wire.Desired, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sent[device]
	if len(s) == 0 {
		return wire.Desired{}, false
	}
	return s[len(s)-1], true
}

func (f *simFleet) ids(b behaviour) []string {
	var out []string
	for _, d := range f.devices {
		if d.behaviour() == b {
			out = append(out, d.id)
		}
	}
	slices.Sort(out)
	return out
}
