package update

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// Options configures a Manager. State and DataDir are required. Without Trust, Downloader
// or PackageKey the Manager still runs the model it booted with, and refuses every update
// with a one-line reason.
type Options struct {
	State        agent.StateStore  // where the record lives (the buffer's bbolt file)
	DataDir      string            // the model store is DataDir/models
	PackageKey   ed25519.PublicKey // every package's ed25519 signature must verify with it
	Trust        Trust
	Downloader   Downloader
	Events       Publisher // nil sends no events
	DeviceID     string    // names the device in events
	AgentVersion string    // checked against a target's min_agent_version when both are versions
	Keep         int       // packages kept in the store; 0 means DefaultKeep
	// ArenaBudget is the largest tensor arena, in bytes, a candidate may plan; 0 means
	// DefaultArenaBudget.
	ArenaBudget int
	// Resolver supplies the kernels candidates run with; nil means every builtin.
	Resolver tflite.OpResolver
	// Threads is tfpredict.Options.Threads for every model loaded; 0 means 1.
	Threads    int
	CheckEvery time.Duration // between probation limit checks; 0 means DefaultCheckEvery
	Logger     *slog.Logger  // nil logs nothing
	Now        func() time.Time
	// OnPhase, if set, is called with each phase right after it is written and before its
	// work or side effect starts (tests stop the process there).
	OnPhase func(phase string)
}

// Defaults for zero Options fields.
const (
	DefaultKeep        = 3
	DefaultArenaBudget = 16 << 20
	DefaultCheckEvery  = time.Second
	// minLimitWindows is how many windows probation sees before a rate limit can trip, so
	// that one early error is not a 100 % error rate.
	minLimitWindows = 20
	// eventQueue bounds events waiting for the link; the oldest is dropped when full (the
	// retained health report carries the current phase anyway).
	eventQueue = 64
)

// Manager runs the update state machine for one agent. Open it before the agent (it decides
// which model the agent starts with), hand Swap() to the agent as its Predictor, then Run it.
type Manager struct {
	opts    Options
	store   *Store
	swap    *agent.Swap
	factory agent.Predictor // the command-line model, always loadable
	log     *slog.Logger
	events  chan wire.Event

	// mu guards the fields below.
	mu       sync.Mutex
	rec      record
	progress float64 // downloading: fraction held

	// drift mirrors rec.Desired.Drift for the infer loop, which reads it every inference
	// and must not take mu.
	drift atomic.Pointer[wire.DriftOverrides]
}

// DriftOverrides are the drift settings of the latest Desired state acted on (nil: none);
// the agent's drift monitor applies them.
func (m *Manager) DriftOverrides() *wire.DriftOverrides { return m.drift.Load() }

// Open reads the persisted state, applies resume to a phase a restart interrupted, loads
// the model that must run now (falling back to the previous one and then to factory if it
// cannot be loaded) and returns a Manager whose Swap runs it. factory is the model given on
// the command line.
func Open(opts Options, factory agent.Predictor) (*Manager, error) {
	if opts.State == nil || opts.DataDir == "" || factory == nil {
		return nil, errors.New("update: State, DataDir and a model are required")
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if opts.ArenaBudget <= 0 {
		opts.ArenaBudget = DefaultArenaBudget
	}
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = DefaultCheckEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Resolver == nil {
		opts.Resolver = kernels.Builtins()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st, err := OpenStore(opts.DataDir)
	if err != nil {
		return nil, err
	}
	rec, err := loadRecord(opts.State)
	if err != nil {
		return nil, err
	}
	m := &Manager{opts: opts, store: st, factory: factory, log: log, events: make(chan wire.Event, eventQueue), rec: rec}
	m.drift.Store(rec.Desired.Drift)
	if m.rec.Active.File == "" {
		m.rec.Active = Entry{Ref: factory.Model()} // the command line may name another model now
	}
	if err := m.resume(); err != nil {
		return nil, err
	}
	p, err := m.bootPredictor()
	if err != nil {
		return nil, err
	}
	m.swap = agent.NewSwap(p)
	if m.rec.Phase == Probation && m.rec.Active.File != "" {
		// Probation goes on: watch the candidate's output drift again. Its previous model
		// did not run in this process, so the latency ratio stays unknown.
		if pkg, err := m.store.Read(m.rec.Active.File, m.opts.PackageKey); err == nil {
			if _, err := m.swap.Activate(p, driftBaseline(pkg.Manifest)); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// resume applies the pure resume rule to the record a restart found.
func (m *Manager) resume() error {
	r := &m.rec
	to := resume(r.Phase, r.Restarts)
	switch {
	case r.Phase == Probation && to == Probation:
		r.Restarts++
		if err := saveRecord(m.opts.State, r); err != nil {
			return err
		}
		m.log.Warn("agent restarted during probation; probation starts again", "model", r.Active.Ref.String(), "restarts", r.Restarts)
		return nil
	case to == RolledBack && r.Phase != RolledBack:
		reason := fmt.Sprintf("agent restarted %d times during probation", r.Restarts+1)
		if r.Phase != Probation {
			reason = fmt.Sprintf("unknown phase %q in the update record", r.Phase)
		}
		_, err := m.enter(RolledBack, reason, nil)
		return err
	}
	if !Terminal(r.Phase) {
		m.log.Info("resuming model update", "phase", r.Phase, "generation", r.Generation)
	}
	return nil
}

// bootPredictor loads the active model; if it cannot be loaded it runs the previous one or
// the command-line model, and records the fall-back as a rollback.
func (m *Manager) bootPredictor() (agent.Predictor, error) {
	a := m.rec.Active
	p, err := m.load(a)
	if err == nil {
		return p, nil
	}
	m.log.Error("active model does not load; falling back", "model", a.Ref.String(), "file", a.File, "err", err)
	reason := fmt.Sprintf("active model %s does not load: %v", a.Ref, err)
	fallback, p := Entry{Ref: m.factory.Model()}, agent.Predictor(nil)
	if prev := m.rec.Previous; prev != nil && prev.File != a.File {
		if pp, perr := m.load(*prev); perr == nil {
			fallback, p = *prev, pp
		}
	}
	if p == nil {
		p = m.factory
	}
	if _, err := m.enter(RolledBack, reason, func(r *record) { r.Active, r.Previous = fallback, nil }); err != nil {
		return nil, err
	}
	return p, nil
}

// load makes a Predictor of e.
func (m *Manager) load(e Entry) (agent.Predictor, error) {
	if e.File == "" {
		return m.factory, nil
	}
	p, _, err := m.store.LoadPredictor(e.File, m.opts.PackageKey, m.tfOptions())
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return p, nil
}

func (m *Manager) tfOptions() tfpredict.Options {
	return tfpredict.Options{Resolver: m.resolver(), Threads: m.opts.Threads}
}

// resolver is the kernels candidates run with.
func (m *Manager) resolver() tflite.OpResolver { return m.opts.Resolver }

// Swap is the Predictor the agent must run: it holds the active model and changes it
// between windows.
func (m *Manager) Swap() *agent.Swap { return m.swap }

// Store is the model store.
func (m *Manager) Store() *Store { return m.store }

// Run acts on Desired messages until ctx ends, first finishing an update a restart
// interrupted. A Desired with a newer Generation supersedes an update in progress (a
// candidate already active is rolled back first). It returns nil when ctx ends; the record
// then holds the phase to resume.
func (m *Manager) Run(ctx context.Context, desired <-chan wire.Desired) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { m.runEvents(gctx); return nil })
	g.Go(func() error { m.runDesired(gctx, desired); return nil })
	return g.Wait()
}

func (m *Manager) runDesired(ctx context.Context, desired <-chan wire.Desired) {
	var (
		cancel context.CancelFunc = func() {}
		done   chan struct{}
	)
	start := func() {
		var wctx context.Context
		wctx, cancel = context.WithCancel(ctx)
		done = make(chan struct{})
		go func(done chan struct{}) { defer close(done); m.drive(wctx) }(done)
	}
	if !Terminal(m.phase()) {
		start()
	}
	for {
		select {
		case <-ctx.Done():
			cancel()
			if done != nil {
				<-done
			}
			return
		case <-done:
			cancel()
			done = nil
		case d := <-desired:
			if !m.newer(d) {
				continue
			}
			if done != nil {
				cancel()
				<-done
				done = nil
				if ctx.Err() != nil {
					return
				}
				why := fmt.Sprintf("superseded by generation %d", d.Generation)
				if d.Rollback {
					why = "rollback ordered by the controller"
				}
				m.abandon(why)
			}
			m.accept(d)
			if !Terminal(m.phase()) {
				start()
			}
		}
	}
}

func (m *Manager) phase() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rec.Phase
}

// newer reports whether d is a Generation not yet acted on.
func (m *Manager) newer(d wire.Desired) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return d.Generation > m.rec.Generation
}

// abandon ends the update in progress: Failed before activation, rolled back after.
func (m *Manager) abandon(reason string) {
	p := m.phase()
	if Terminal(p) {
		return
	}
	m.transition(next(p, Rollback, false), reason, nil)
}

// accept starts acting on d.
func (m *Manager) accept(d wire.Desired) {
	m.mu.Lock()
	r := m.rec.clone()
	m.mu.Unlock()
	switch {
	case d.Rollback:
		if r.Previous == nil || r.Candidate == nil || r.Active.File != r.Candidate.File {
			// Nothing of an update is active (or abandon just rolled it back): the order
			// holds as it stands.
			reason := r.Reason
			if r.Phase != RolledBack && r.Phase != Failed {
				reason = "rollback ordered: no update of this agent to roll back"
			}
			m.start(d, r.Phase, reason)
			return
		}
		m.start(d, RolledBack, "rollback ordered by the controller")
	case d.Model == nil:
		m.start(d, r.Phase, "") // keep what runs; remember the generation
	case d.Model.Name == r.Active.Ref.Name && d.Model.Version == r.Active.Ref.Version:
		m.start(d, Committed, "already running "+r.Active.Ref.String())
	default:
		m.start(d, Downloading, "")
	}
}

// start records generation d with phase p, clearing the previous update's working fields.
func (m *Manager) start(d wire.Desired, p, reason string) {
	m.transition(p, reason, func(r *record) {
		r.Generation, r.Desired = d.Generation, d
		r.Target, r.Download, r.Shadow, r.Probation, r.Restarts = nil, "", nil, nil, 0
		if p == Downloading {
			r.Candidate = nil
		}
	})
}

// transition is enter for the running Manager: it logs a failed write instead of returning
// it, since the update then simply stops where the record says.
func (m *Manager) transition(p, reason string, mut func(*record)) {
	flip, err := m.enter(p, reason, mut)
	if err != nil {
		m.log.Error("update record not written; the update stops here", "phase", p, "err", err)
		return
	}
	if flip != nil {
		m.swapTo(*flip)
	}
}

// enter writes phase p (with mut applied) to the record, then reports it. Entering
// RolledBack while the candidate is active points the record back at the previous model and
// returns it: the caller swaps to it after the write, so a crash in between restarts on it.
func (m *Manager) enter(p, reason string, mut func(*record)) (flip *Entry, err error) {
	m.mu.Lock()
	r := m.rec.clone()
	if mut != nil {
		mut(&r)
	}
	if p == RolledBack && r.Previous != nil && r.Candidate != nil && r.Active.File == r.Candidate.File {
		prev := *r.Previous
		r.Active, r.Previous, flip = prev, r.Candidate, &prev
	}
	changed := r.Phase != p
	r.Phase, r.Reason = p, reason
	if changed || mut != nil {
		r.Since = m.opts.Now().UTC()
	}
	if err := saveRecord(m.opts.State, &r); err != nil {
		m.mu.Unlock()
		return nil, err
	}
	m.rec = r
	m.drift.Store(r.Desired.Drift)
	m.progress = 0
	m.mu.Unlock()
	if m.opts.OnPhase != nil {
		m.opts.OnPhase(p)
	}

	ev := wire.Event{
		V: wire.SchemaVersion, Device: m.opts.DeviceID, Time: r.Since, Kind: wire.EventUpdate,
		Phase: p, Model: m.targetRef(&r), Rollout: r.Desired.Rollout, Reason: reason,
	}
	switch p {
	case Failed, RolledBack:
		m.log.Warn("model update "+p, "phase", p, "generation", r.Generation, "model", ev.Model.String(), "reason", reason)
	default:
		m.log.Info("model update", "phase", p, "generation", r.Generation, "model", ev.Model.String(), "reason", reason)
	}
	m.emit(ev)
	return flip, nil
}

// swapTo makes e the running model; if it cannot be loaded the command-line model runs.
func (m *Manager) swapTo(e Entry) {
	p, err := m.load(e)
	if err != nil {
		m.log.Error("previous model does not load; running the command-line model", "model", e.Ref.String(), "err", err)
		p = m.factory
	}
	if _, err := m.swap.Activate(p, nil); err != nil {
		m.log.Error("cannot swap back; the current model keeps running", "model", e.Ref.String(), "err", err)
	}
}

// targetRef is the candidate as far as it is known.
func (m *Manager) targetRef(r *record) wire.ModelRef {
	if r.Candidate != nil {
		return r.Candidate.Ref
	}
	if d := r.Desired.Model; d != nil {
		return wire.ModelRef{Name: d.Name, Version: d.Version}
	}
	return wire.ModelRef{}
}

// emit queues ev for the controller, dropping the oldest queued event when full.
func (m *Manager) emit(ev wire.Event) {
	for {
		select {
		case m.events <- ev:
			return
		default:
		}
		select {
		case <-m.events:
		default:
		}
	}
}

// runEvents publishes queued events in order, retrying each until it is sent or ctx ends.
func (m *Manager) runEvents(ctx context.Context) {
	if m.opts.Events == nil {
		return
	}
	for {
		var ev wire.Event
		select {
		case <-ctx.Done():
			return
		case ev = <-m.events:
		}
		payload, err := wire.Encode(&ev)
		if err != nil {
			m.log.Error("encode event", "err", err)
			continue
		}
		for {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := m.opts.Events.Publish(pctx, wire.LeafEvents, payload, false)
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// Status is the update state for health, derived from the record and the live figures;
// nil before any update.
func (m *Manager) Status() *wire.UpdateStatus {
	m.mu.Lock()
	r, progress := m.rec.clone(), m.progress
	m.mu.Unlock()
	if r.Generation == 0 && r.Phase == Idle {
		return nil
	}
	s := &wire.UpdateStatus{
		Generation: r.Generation,
		Rollout:    r.Desired.Rollout,
		Phase:      r.Phase,
		Target:     m.targetRef(&r),
		Reason:     r.Reason,
		Since:      r.Since,
		Shadow:     r.Shadow,
		Probation:  r.Probation,
	}
	if r.Previous != nil {
		s.Previous = r.Previous.Ref
	}
	switch r.Phase {
	case Downloading:
		s.Progress = progress
	case Shadow:
		st := m.swap.ShadowStats()
		s.Shadow = &st
	case Probation:
		st := m.swap.ProbationStats()
		s.Probation = &st
	}
	return s
}

// drive runs phases until a terminal one, or until ctx ends (the record then names the
// phase to resume).
func (m *Manager) drive(ctx context.Context) {
	for {
		m.mu.Lock()
		r := m.rec.clone()
		m.mu.Unlock()
		if Terminal(r.Phase) {
			return
		}
		s := m.step(ctx, &r)
		if ctx.Err() != nil {
			return
		}
		if s.result != OK && s.reason == "" {
			s.reason = "refused" // every refusal carries a reason; this one had none to give
		}
		m.transition(next(r.Phase, s.result, r.Desired.ShadowS > 0), s.reason, s.mut)
		if m.phase() == r.Phase {
			return // the record was not written: stop rather than loop
		}
		if s.after != nil {
			s.after()
		}
	}
}

// outcome is how one phase's work ended: the result, a one-line reason for a refusal, the
// record change to write with the next phase, and a side effect to run once it is written.
type outcome struct {
	result Result
	reason string
	mut    func(*record)
	after  func()
}

func refuse(format string, args ...any) outcome {
	return outcome{result: Refused, reason: oneLine(fmt.Sprintf(format, args...))}
}

// oneLine keeps a reason to one line of bounded length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:297] + "..."
	}
	return s
}

func (m *Manager) step(ctx context.Context, r *record) outcome {
	switch r.Phase {
	case Downloading:
		return m.download(ctx, r)
	case Verifying:
		return m.verify(r)
	case Staging:
		return m.stage(r)
	case Shadow:
		return m.shadow(ctx, r)
	case Activating:
		return m.activate(r)
	case Probation:
		return m.probation(ctx, r)
	}
	return refuse("no work for phase %q", r.Phase)
}

// maxPackage bounds a target's signed length: the largest model plus the manifest and tar
// overhead.
const maxPackage = bundle.DefaultMaxModelSize + bundle.MaxManifestSize + 64<<10

func (m *Manager) download(ctx context.Context, r *record) outcome {
	d := r.Desired.Model
	switch {
	case d == nil:
		return refuse("desired state names no model")
	case m.opts.Trust == nil:
		return refuse("no trust root pinned: this agent takes no updates")
	case m.opts.Downloader == nil:
		return refuse("no downloader: this agent takes no updates")
	case len(m.opts.PackageKey) == 0:
		return refuse("no package key pinned: this agent takes no updates")
	}
	if err := m.opts.Trust.Refresh(ctx); err != nil {
		return refuse("metadata: %v", err)
	}
	t, err := m.opts.Trust.Lookup(d.Target)
	if err != nil {
		return refuse("target %s: %v", d.Target, err)
	}
	if o, bad := m.checkTarget(r, d, t); bad {
		return o
	}
	path, err := m.opts.Downloader.Download(ctx, Want{Path: t.Path, Length: t.Length, SHA256: t.SHA256}, func(held, total int64) {
		if total > 0 {
			m.mu.Lock()
			m.progress = float64(held) / float64(total)
			m.mu.Unlock()
		}
	})
	if err != nil {
		return refuse("download %s: %v", t.Name, err)
	}
	return outcome{mut: func(r *record) { r.Target, r.Download = &t, path }}
}

// checkTarget refuses a target whose signed description does not fit the Desired state or
// this agent, before any byte of it is downloaded.
func (m *Manager) checkTarget(r *record, d *wire.DesiredModel, t Target) (outcome, bool) {
	c := t.Custom
	switch {
	case c.Name != d.Name || c.Version != d.Version:
		return refuse("target %s is %s@%s in signed metadata, desired state says %s@%s", t.Name, c.Name, c.Version, d.Name, d.Version), true
	case t.Length <= 0 || t.Length > maxPackage:
		return refuse("target %s: signed length %d bytes out of range (limit %d)", t.Name, t.Length, maxPackage), true
	case c.Release < r.Highest:
		return refuse("downgrade: %s@%s has release %d, below the committed release %d", c.Name, c.Version, c.Release, r.Highest), true
	case c.Release == r.Highest && r.Highest > 0 && !m.stored(t.SHA256):
		return refuse("downgrade: release %d is already committed with another package", c.Release), true
	}
	if op := missingOp(m.resolver(), c.Ops); op != "" {
		return refuse("%s@%s needs op %s, which this agent lacks", c.Name, c.Version, op), true
	}
	if c.MinAgentVersion != "" && versionLess(m.opts.AgentVersion, c.MinAgentVersion) {
		return refuse("%s@%s needs agent %s or later, this is %s", c.Name, c.Version, c.MinAgentVersion, m.opts.AgentVersion), true
	}
	return outcome{}, false
}

func (m *Manager) stored(sha string) bool {
	_, err := os.Stat(m.store.Dir() + string(os.PathSeparator) + FileName(sha))
	return err == nil
}

func (m *Manager) verify(r *record) outcome {
	t := r.Target
	if t == nil || r.Download == "" {
		return refuse("nothing downloaded to verify")
	}
	bad := func(o outcome) outcome {
		// A refused download is worthless: the next attempt fetches it afresh.
		_ = os.Remove(r.Download)
		return o
	}
	if err := m.opts.Trust.VerifyFile(*t, r.Download); err != nil {
		return bad(refuse("%s: %v", t.Name, err))
	}
	data, err := os.ReadFile(r.Download)
	if err != nil {
		return bad(refuse("read download: %v", err))
	}
	pkg, err := OpenPackage(data, m.opts.PackageKey)
	if err != nil {
		return bad(refuse("%s: %v", t.Name, err))
	}
	man := pkg.Manifest
	if man.Name != t.Custom.Name || man.Version != t.Custom.Version {
		return bad(refuse("%s: package holds %s@%s, signed metadata says %s@%s", t.Name, man.Name, man.Version, t.Custom.Name, t.Custom.Version))
	}
	if want := r.Desired.Model.SHA256; want != "" && want != t.SHA256 && want != man.SHA256 {
		return bad(refuse("%s: sha256 %s is neither the package's nor its model's", t.Name, want))
	}
	file, err := m.store.Put(r.Download, t.SHA256)
	if err != nil {
		return refuse("%v", err)
	}
	e := Entry{Ref: wire.ModelRef{Name: man.Name, Version: man.Version, SHA256: man.SHA256}, File: file, Release: t.Custom.Release}
	return outcome{mut: func(r *record) { r.Candidate, r.Download = &e, "" }}
}

func (m *Manager) stage(r *record) outcome {
	if r.Candidate == nil {
		return refuse("no candidate to stage")
	}
	p, _, err := m.store.LoadPredictor(r.Candidate.File, m.opts.PackageKey, m.tfOptions())
	if err != nil {
		return refuse("load %s: %v", r.Candidate.Ref, err)
	}
	if n := p.ArenaBytes(); n > m.opts.ArenaBudget {
		return refuse("%s: arena of %d bytes is over the device's budget of %d", r.Candidate.Ref, n, m.opts.ArenaBudget)
	}
	if err := p.CheckGolden(); err != nil {
		return refuse("%s: %v", r.Candidate.Ref, err)
	}
	if err := m.swap.Compatible(p); err != nil {
		return refuse("%s: %v", r.Candidate.Ref, err)
	}
	return outcome{}
}

func (m *Manager) shadow(ctx context.Context, r *record) outcome {
	p, _, err := m.store.LoadPredictor(r.Candidate.File, m.opts.PackageKey, m.tfOptions())
	if err != nil {
		return refuse("load %s: %v", r.Candidate.Ref, err)
	}
	if err := m.swap.StartShadow(p); err != nil {
		return refuse("%s: %v", r.Candidate.Ref, err)
	}
	wait(ctx, seconds(r.Desired.ShadowS))
	st := m.swap.StopShadow()
	if ctx.Err() != nil {
		return outcome{}
	}
	mut := func(r *record) { r.Shadow = &st }
	if min := r.Desired.MinShadowAgreement; min > 0 {
		if st.Windows == 0 {
			o := refuse("shadow saw no windows in %gs", r.Desired.ShadowS)
			o.mut = mut
			return o
		}
		if st.Agreement < min {
			o := refuse("shadow agreement %.1f%% is below the minimum %.1f%% over %d windows", 100*st.Agreement, 100*min, st.Windows)
			o.mut = mut
			return o
		}
	}
	return outcome{mut: mut}
}

func (m *Manager) activate(r *record) outcome {
	p, pkg, err := m.store.LoadPredictor(r.Candidate.File, m.opts.PackageKey, m.tfOptions())
	if err != nil {
		return refuse("load %s: %v", r.Candidate.Ref, err)
	}
	if err := m.swap.Compatible(p); err != nil {
		return refuse("%s: %v", r.Candidate.Ref, err)
	}
	cand := *r.Candidate
	return outcome{
		mut: func(r *record) {
			prev := r.Active
			r.Previous, r.Active, r.Restarts, r.Probation = &prev, cand, 0, nil
		},
		after: func() {
			if _, err := m.swap.Activate(p, driftBaseline(pkg.Manifest)); err != nil {
				m.log.Error("activate", "model", cand.Ref.String(), "err", err)
			}
		},
	}
}

// driftBaseline is output 0's training distribution, if the manifest has one.
func driftBaseline(man *bundle.Manifest) *agent.DriftBaseline {
	if man.Baseline == nil || len(man.Baseline.Outputs) == 0 {
		return nil
	}
	o := man.Baseline.Outputs[0]
	return &agent.DriftBaseline{Histogram: o.Histogram, Frequencies: o.Frequencies}
}

func (m *Manager) probation(ctx context.Context, r *record) outcome {
	d := r.Desired
	// A restart interrupted the activation's side effect: the record says the candidate is
	// active, so it is what Open loaded. Nothing to swap.
	end := time.Now().Add(seconds(d.ProbationS))
	tick := time.NewTicker(m.opts.CheckEvery)
	defer tick.Stop()
	for {
		st := m.swap.ProbationStats()
		final := !time.Now().Before(end)
		if reason := probationLimit(d, st, final); reason != "" {
			o := refuse("%s", reason)
			o.mut = func(r *record) { r.Probation = &st }
			return o
		}
		if final {
			cand := r.Active
			return outcome{
				mut: func(r *record) {
					r.Probation = &st
					r.Highest = max(r.Highest, cand.Release)
				},
				after: m.prune,
			}
		}
		select {
		case <-ctx.Done():
			return outcome{}
		case <-tick.C:
		}
	}
}

// probationLimit returns why st crosses one of d's limits, or "". The error rate is judged
// once enough windows ran; latency and drift, which need a full picture, at the end only.
func probationLimit(d wire.Desired, st wire.ProbationStats, final bool) string {
	if d.MaxErrorRate > 0 && st.Windows >= minLimitWindows {
		if rate := float64(st.Errors) / float64(st.Windows); rate > d.MaxErrorRate {
			return fmt.Sprintf("error rate %.1f%% (%d of %d windows) is over the limit %.1f%%", 100*rate, st.Errors, st.Windows, 100*d.MaxErrorRate)
		}
	}
	if !final {
		return ""
	}
	if d.MaxLatencyRatio > 0 && st.LatencyRatio > d.MaxLatencyRatio {
		return fmt.Sprintf("p99 latency ratio %.2f is over the limit %.2f", st.LatencyRatio, d.MaxLatencyRatio)
	}
	if d.MaxDriftPSI > 0 && st.DriftPSI > d.MaxDriftPSI {
		return fmt.Sprintf("output drift PSI %.3f is over the limit %.3f", st.DriftPSI, d.MaxDriftPSI)
	}
	return ""
}

// prune keeps the store to Keep packages, never dropping the active or previous one.
func (m *Manager) prune() {
	m.mu.Lock()
	protect := []string{m.rec.Active.File}
	if m.rec.Previous != nil {
		protect = append(protect, m.rec.Previous.File)
	}
	m.mu.Unlock()
	removed, err := m.store.Prune(m.opts.Keep, protect...)
	if err != nil {
		m.log.Warn("prune model store", "err", err)
	}
	if len(removed) > 0 {
		m.log.Info("pruned model store", "removed", removed)
	}
}

// maxPhaseTime caps a shadow or probation period the Desired state asks for, so that a
// huge number cannot overflow a Duration or park an update for years.
const maxPhaseTime = 30 * 24 * time.Hour

// seconds converts a Desired period to a Duration in [0, maxPhaseTime].
func seconds(s float64) time.Duration {
	if !(s > 0) {
		return 0
	}
	if s >= maxPhaseTime.Seconds() {
		return maxPhaseTime
	}
	return time.Duration(s * float64(time.Second))
}

// wait sleeps d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// versionLess reports whether have < want as MAJOR.MINOR.PATCH versions (a leading "v" and
// any "-pre" or "+build" suffix ignored). A have that is not a version (a "dev" build) is
// never less: it cannot be judged, and refusing every update of a dev build helps nobody.
func versionLess(have, want string) bool {
	h, ok1 := parseVersion(have)
	w, ok2 := parseVersion(want)
	if !ok1 || !ok2 {
		return false
	}
	for i := range h {
		if h[i] != w[i] {
			return h[i] < w[i]
		}
	}
	return false
}

func parseVersion(s string) ([3]uint64, bool) {
	var v [3]uint64
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	return v, true
}
