package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/outpost-ml/outpost/fleet"
)

// ErrNotLeader refuses a rollout change on a replica that does not run the rollout engine.
var ErrNotLeader = errors.New("this replica does not run rollouts now (another replica leads); retry, or use the leader's --http")

// Led is the rollouts of a controller replica that runs the engine only while it leads (the
// scale-out mode elects one leader, pgstore.Elector). While it leads, every call goes to its
// engine, built afresh from the store each time leadership is gained, so a new leader takes
// over exactly where the stored state is. While it follows, reads come from the store and
// changes are refused with ErrNotLeader. Safe for concurrent use.
type Led struct {
	opts Options
	cur  atomic.Pointer[Engine]
}

// NewLed checks opts (New's) and returns a Led that leads nothing until Lead runs.
func NewLed(opts Options) (*Led, error) {
	if opts.Store == nil || opts.Fleet == nil || opts.Publisher == nil {
		return nil, errors.New("rollout engine: store, fleet and publisher are required")
	}
	return &Led{opts: opts}, nil
}

// Lead loads an engine from the store and runs it until ctx ends (leadership lost or the
// process stopping), then stops serving calls from it. Call it from the election's lead
// function; it returns the engine's error, nil when ctx ended.
func (l *Led) Lead(ctx context.Context) error {
	e, err := New(ctx, l.opts)
	if err != nil {
		return err
	}
	l.cur.Store(e)
	defer l.cur.CompareAndSwap(e, nil)
	return e.Run(ctx)
}

// Leading reports whether this replica runs the engine now.
func (l *Led) Leading() bool { return l.cur.Load() != nil }

// storeRead bounds a follower's read of the stored rollouts (Get and List take no context).
const storeRead = 10 * time.Second

func (l *Led) stored() ([]fleet.Rollout, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeRead)
	defer cancel()
	return l.opts.Store.Rollouts(ctx)
}

// Create implements the API's rollouts.
func (l *Led) Create(ctx context.Context, spec fleet.RolloutSpec) (fleet.Rollout, error) {
	if e := l.cur.Load(); e != nil {
		return e.Create(ctx, spec)
	}
	return fleet.Rollout{}, ErrNotLeader
}

// Get returns a rollout: the engine's view on the leader, the stored one elsewhere.
func (l *Led) Get(id string) (fleet.Rollout, error) {
	if e := l.cur.Load(); e != nil {
		return e.Get(id)
	}
	rs, err := l.stored()
	if err != nil {
		return fleet.Rollout{}, fmt.Errorf("rollout %s: %w", id, err)
	}
	for _, r := range rs {
		if r.ID == id {
			return r, nil
		}
	}
	return fleet.Rollout{}, fmt.Errorf("rollout %s: %w", id, fleet.ErrNotFound)
}

// List returns every rollout, oldest first (stored ones on a follower; empty when the store
// cannot be read, which the follower's log shows through its other store users).
func (l *Led) List() []fleet.Rollout {
	if e := l.cur.Load(); e != nil {
		return e.List()
	}
	rs, err := l.stored()
	if err != nil {
		return nil
	}
	return rs
}

// Pause implements the API's rollouts.
func (l *Led) Pause(ctx context.Context, id string) (fleet.Rollout, error) {
	if e := l.cur.Load(); e != nil {
		return e.Pause(ctx, id)
	}
	return fleet.Rollout{}, ErrNotLeader
}

// Resume implements the API's rollouts.
func (l *Led) Resume(ctx context.Context, id string) (fleet.Rollout, error) {
	if e := l.cur.Load(); e != nil {
		return e.Resume(ctx, id)
	}
	return fleet.Rollout{}, ErrNotLeader
}

// Abort implements the API's rollouts.
func (l *Led) Abort(ctx context.Context, id string) (fleet.Rollout, error) {
	if e := l.cur.Load(); e != nil {
		return e.Abort(ctx, id)
	}
	return fleet.Rollout{}, ErrNotLeader
}

// SetPolicy implements the API's monitoring settings: only the leader decides desired states.
func (l *Led) SetPolicy(ctx context.Context, device string, s fleet.MonitorSettings) (PolicyStatus, error) {
	if e := l.cur.Load(); e != nil {
		return e.SetPolicy(ctx, device, s)
	}
	return PolicyStatus{}, ErrNotLeader
}

// Policy returns device's monitoring settings: the engine's full status on the leader; on a
// follower only the stored settings (what the desired state carries is the leader's to know).
func (l *Led) Policy(device string) PolicyStatus {
	if e := l.cur.Load(); e != nil {
		return e.Policy(device)
	}
	for _, st := range l.storedPolicies() {
		if st.Device == device {
			return st
		}
	}
	return PolicyStatus{Device: device}
}

// Policies returns every device's settings, ordered by device (stored ones on a follower).
func (l *Led) Policies() []PolicyStatus {
	if e := l.cur.Load(); e != nil {
		return e.Policies()
	}
	return l.storedPolicies()
}

func (l *Led) storedPolicies() []PolicyStatus {
	if l.opts.Policies == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeRead)
	defer cancel()
	ps, err := l.opts.Policies.DevicePolicies(ctx)
	if err != nil {
		return nil
	}
	out := make([]PolicyStatus, 0, len(ps))
	for i := range ps {
		out = append(out, PolicyStatus{Device: ps[i].Device, Settings: &ps[i]})
	}
	return out
}
