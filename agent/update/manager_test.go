package update_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/agent/update"
	"github.com/outpost-ml/outpost/agent/update/updatetest"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

const sampleDir = "../../models/sample"

// events records the events a update.Manager publishes.
type events struct {
	mu  sync.Mutex
	evs []wire.Event
}

func (e *events) Publish(_ context.Context, leaf string, payload []byte, retained bool) error {
	if leaf != wire.LeafEvents || retained {
		return nil
	}
	var ev wire.Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return err
	}
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	return nil
}

func (e *events) phases() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ps []string
	for _, ev := range e.evs {
		ps = append(ps, ev.Phase)
	}
	return ps
}

func (e *events) last() wire.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.evs) == 0 {
		return wire.Event{}
	}
	return e.evs[len(e.evs)-1]
}

// env is one device's update machinery over a real bbolt file and a signed directory
// repository, with windows fed to the Swap as the agent's infer loop would.
type env struct {
	t       *testing.T
	dir     string
	key     ed25519.PrivateKey
	repo    *updatetest.Repo
	buf     *boltbuf.Buffer
	factory agent.Predictor
	ev      *events
	opts    update.Options

	m       *update.Manager
	desired chan wire.Desired
	stop    func()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	_, key, err := bundle.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := updatetest.NewRepo(filepath.Join(dir, "repo"), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	buf, err := boltbuf.Open(filepath.Join(dir, "data", "buffer.db"), boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { buf.Close() })
	factory, err := tfpredict.Load(filepath.Join(sampleDir, "vibration-anomaly-f32.tflite"), "")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, key: key, repo: repo, buf: buf, factory: factory, ev: &events{}}
	e.opts = update.Options{
		State:        buf.State(),
		DataDir:      filepath.Join(dir, "data"),
		PackageKey:   key.Public().(ed25519.PublicKey),
		Trust:        &updatetest.Trust{Dir: repo.Dir, Pub: key.Public().(ed25519.PublicKey)},
		Downloader:   &updatetest.Downloader{Src: repo.Dir, Dir: filepath.Join(dir, "data", "downloads")},
		Events:       e.ev,
		DeviceID:     "dev-1",
		AgentVersion: "1.0.0",
		CheckEvery:   20 * time.Millisecond,
	}
	return e
}

// start opens a update.Manager (as a restarted agent would) and runs it with windows flowing.
func (e *env) start() {
	e.t.Helper()
	m, err := update.Open(e.opts, e.factory)
	if err != nil {
		e.t.Fatal(err)
	}
	e.m, e.desired = m, make(chan wire.Desired, 1)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = m.Run(ctx, e.desired) }()
	go func() { defer wg.Done(); feed(ctx, m.Swap()) }()
	e.stop = func() { cancel(); wg.Wait() }
	e.t.Cleanup(e.stop)
}

// feed runs windows of noise through s every millisecond until ctx ends.
func feed(ctx context.Context, s *agent.Swap) {
	rng := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, s.Spec().Window*s.Spec().Channels)
	for ctx.Err() == nil {
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		_, _, _ = s.Predict(w)
		time.Sleep(time.Millisecond)
	}
}

// pkg builds a package of a sample model with its manifest changed by mut, signed by key.
func (e *env) pkg(sample string, key ed25519.PrivateKey, mut func(*bundle.Manifest)) []byte {
	e.t.Helper()
	model, err := os.ReadFile(filepath.Join(sampleDir, sample+".tflite"))
	if err != nil {
		e.t.Fatal(err)
	}
	mj, err := os.ReadFile(filepath.Join(sampleDir, sample+".json"))
	if err != nil {
		e.t.Fatal(err)
	}
	man, err := bundle.DecodeManifest(mj)
	if err != nil {
		e.t.Fatal(err)
	}
	man.Version = "1.1.0"
	if mut != nil {
		mut(man)
	}
	mj, err = man.Encode()
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := bundle.Build(mj, model, key)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// publish adds a package to the repository as NAME-VERSION.opkg and returns the Desired
// naming it.
func (e *env) publish(gen uint64, pkg []byte, release uint64) wire.Desired {
	e.t.Helper()
	p, err := bundle.Read(strings.NewReader(string(pkg)), bundle.Limits{})
	if err != nil {
		e.t.Fatal(err)
	}
	name := bundle.FileName(p.Manifest)
	if _, err := e.repo.Add(name, pkg, update.TargetCustom{Name: p.Manifest.Name, Version: p.Manifest.Version, Release: release}); err != nil {
		e.t.Fatal(err)
	}
	return wire.Desired{
		V: wire.SchemaVersion, Generation: gen, Rollout: "r1",
		Model: &wire.DesiredModel{Name: p.Manifest.Name, Version: p.Manifest.Version, Target: name},
	}
}

// waitPhase waits until generation gen reaches one of the terminal phases and returns its
// status.
func (e *env) waitPhase(gen uint64, phases ...string) *wire.UpdateStatus {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if s := e.m.Status(); s != nil && s.Generation == gen && slices.Contains(phases, s.Phase) {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatalf("generation %d never reached %v; status %+v", gen, phases, e.m.Status())
	return nil
}

// waitModel waits for the Swap to run model (it changes right after the record is written).
func (e *env) waitModel(model string) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.m.Swap().Model().String() != model {
		if time.Now().After(deadline) {
			e.t.Fatalf("active model %s, want %s", e.m.Swap().Model(), model)
		}
		time.Sleep(time.Millisecond)
	}
}

// lookup reads a target from the repository's signed list.
func (e *env) lookup(name string) update.Target {
	e.t.Helper()
	tr := &updatetest.Trust{Dir: e.repo.Dir, Pub: e.key.Public().(ed25519.PublicKey)}
	if err := tr.Refresh(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	tg, err := tr.Lookup(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return tg
}

func (e *env) waitEvent(phase string) wire.Event {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ev := e.ev.last(); ev.Phase == phase {
			return ev
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatalf("no %s event; events %v", phase, e.ev.phases())
	return wire.Event{}
}

func TestUpdateCommits(t *testing.T) {
	e := newEnv(t)
	e.start()
	if s := e.m.Status(); s != nil {
		t.Fatalf("status before any update = %+v, want nil", s)
	}
	d := e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
	d.ShadowS, d.ProbationS = 0.3, 0.3
	d.MinShadowAgreement, d.MaxErrorRate, d.MaxLatencyRatio = 0.9, 0.01, 50
	e.desired <- d
	s := e.waitPhase(1, update.Committed, update.Failed, update.RolledBack)
	if s.Phase != update.Committed {
		t.Fatalf("phase %s (%s), want committed", s.Phase, s.Reason)
	}
	if got := e.m.Swap().Model(); got.Version != "1.1.0" {
		t.Errorf("active model %s, want 1.1.0", got)
	}
	if s.Previous.Version != "1.0.0" || s.Target.Version != "1.1.0" || s.Rollout != "r1" {
		t.Errorf("status target %s previous %s rollout %q", s.Target, s.Previous, s.Rollout)
	}
	// The candidate is the same network as the active model: full agreement, no distance.
	if s.Shadow == nil || s.Shadow.Windows == 0 || s.Shadow.Agreement != 1 || s.Shadow.OutputJS != 0 || !(s.Shadow.LatencyRatio > 0) {
		t.Errorf("shadow stats %+v, want windows, agreement 1, JS 0, a latency ratio", s.Shadow)
	}
	if s.Probation == nil || s.Probation.Windows == 0 || s.Probation.Errors != 0 || !(s.Probation.DriftPSI > 0) || !(s.Probation.LatencyRatio > 0) {
		t.Errorf("probation stats %+v", s.Probation)
	}
	e.waitEvent(update.Committed)
	want := []string{update.Downloading, update.Verifying, update.Staging, update.Shadow, update.Activating, update.Probation, update.Committed}
	if got := e.ev.phases(); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}

	// A restarted agent runs the committed model from the store.
	e.stop()
	e.start()
	if got := e.m.Swap().Model(); got.Version != "1.1.0" {
		t.Errorf("after restart active model %s, want 1.1.0", got)
	}
	// The retained Desired seen again after a reconnect changes nothing.
	e.desired <- d
	time.Sleep(50 * time.Millisecond)
	if s := e.m.Status(); s.Phase != update.Committed || s.Generation != 1 {
		t.Errorf("after the same generation again: %+v", s)
	}
}

// Each bad candidate is refused with a one-line reason in status and event, and the active
// model is untouched.
func TestRefusals(t *testing.T) {
	other := func(t *testing.T) ed25519.PrivateKey {
		_, k, err := bundle.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	tests := []struct {
		name  string
		setup func(e *env) wire.Desired
		want  string
		// verified: the package passed verification, so it stays in the store (for a
		// later, fixed agent) although the device refused to run it.
		verified bool
	}{
		{"corrupted package", func(e *env) wire.Desired {
			pkg := e.pkg("vibration-anomaly-f32", e.key, nil)
			d := e.publish(1, pkg, 2)
			bad := slices.Clone(pkg)
			bad[len(bad)/2] ^= 0xff
			tg := e.lookup(d.Model.Target)
			if err := e.repo.Tamper(tg, bad); err != nil {
				e.t.Fatal(err)
			}
			return d
		}, "does not match the signed", false},
		{"truncated target", func(e *env) wire.Desired {
			pkg := e.pkg("vibration-anomaly-f32", e.key, nil)
			d := e.publish(1, pkg, 2)
			tg := e.lookup(d.Model.Target)
			e.repo.Tamper(tg, pkg[:len(pkg)-100])
			return d
		}, "ended after", false},
		{"oversized target", func(e *env) wire.Desired {
			pkg := e.pkg("vibration-anomaly-f32", e.key, nil)
			d := e.publish(1, pkg, 2)
			tg := e.lookup(d.Model.Target)
			e.repo.Tamper(tg, append(slices.Clone(pkg), make([]byte, 10000)...))
			return d
		}, "longer than its signed", false},
		{"foreign signature", func(e *env) wire.Desired {
			return e.publish(1, e.pkg("vibration-anomaly-f32", other(e.t), nil), 2)
		}, "signature does not verify", false},
		{"expired metadata", func(e *env) wire.Desired {
			e.opts.Trust.(*updatetest.Trust).Now = func() time.Time { return time.Now().Add(48 * time.Hour) }
			return e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
		}, "expired", false},
		{"replayed metadata", func(e *env) wire.Desired {
			// The device saw the list naming the package; an attacker then serves the older,
			// validly signed list from before it.
			oldList, _ := os.ReadFile(filepath.Join(e.repo.Dir, updatetest.TargetsFile))
			oldSig, _ := os.ReadFile(filepath.Join(e.repo.Dir, updatetest.SigFile))
			d := e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
			if err := e.opts.Trust.Refresh(context.Background()); err != nil {
				e.t.Fatal(err)
			}
			os.WriteFile(filepath.Join(e.repo.Dir, updatetest.TargetsFile), oldList, 0o600)
			os.WriteFile(filepath.Join(e.repo.Dir, updatetest.SigFile), oldSig, 0o600)
			return d
		}, "older than 2 already seen (replay)", false},
		{"downgrade", func(e *env) wire.Desired {
			if err := update.SeedHighestRelease(e.opts.State, e.factory.Model(), 5); err != nil {
				e.t.Fatal(err)
			}
			return e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 3)
		}, "downgrade: vibration-anomaly-f32@1.1.0 has release 3, below the committed release 5", false},
		{"metadata names another version", func(e *env) wire.Desired {
			d := e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
			d.Model.Version = "1.2.0"
			return d
		}, "desired state says vibration-anomaly-f32@1.2.0", false},
		{"unknown target", func(e *env) wire.Desired {
			d := e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
			d.Model.Target = "nothing.opkg"
			return d
		}, `no target "nothing.opkg"`, false},
		{"agent too old", func(e *env) wire.Desired {
			pkg := e.pkg("vibration-anomaly-f32", e.key, nil)
			if _, err := e.repo.Add("new.opkg", pkg, update.TargetCustom{Name: "vibration-anomaly-f32", Version: "1.1.0", Release: 2, MinAgentVersion: "9.0.0"}); err != nil {
				e.t.Fatal(err)
			}
			return wire.Desired{Generation: 1, Model: &wire.DesiredModel{Name: "vibration-anomaly-f32", Version: "1.1.0", Target: "new.opkg"}}
		}, "needs agent 9.0.0 or later, this is 1.0.0", false},
		{"op the agent lacks", func(e *env) wire.Desired {
			e.opts.Resolver = kernels.NewResolver() // an agent built without any kernel
			return e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
		}, "unsupported op", true},
		{"op the agent lacks, from signed metadata", func(e *env) wire.Desired {
			pkg := e.pkg("vibration-anomaly-f32", e.key, nil)
			if _, err := e.repo.Add("new.opkg", pkg, update.TargetCustom{Name: "vibration-anomaly-f32", Version: "1.1.0", Release: 2,
				Ops: []string{"FULLY_CONNECTED", "LOGISTIC", "TELEPORT"}}); err != nil {
				e.t.Fatal(err)
			}
			return wire.Desired{Generation: 1, Model: &wire.DesiredModel{Name: "vibration-anomaly-f32", Version: "1.1.0", Target: "new.opkg"}}
		}, "vibration-anomaly-f32@1.1.0 needs op TELEPORT, which this agent lacks", false},
		{"golden vectors fail", func(e *env) wire.Desired {
			return e.publish(1, e.pkg("vibration-anomaly-f32", e.key, func(m *bundle.Manifest) {
				m.Golden.Vectors[0].Output[0] += 0.25
			}), 2)
		}, `golden "`, true},
		{"arena over budget", func(e *env) wire.Desired {
			e.opts.ArenaBudget = 256
			return e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
		}, "over the device's budget of 256", true},
		{"another pipeline", func(e *env) wire.Desired {
			return e.publish(1, e.pkg("activity-f32", e.key, nil), 2)
		}, "the running pipeline gives 64 x 1", true},
		{"shadow disagrees", func(e *env) wire.Desired {
			d := e.publish(1, e.pkg("vibration-anomaly-f32", e.key, func(m *bundle.Manifest) {
				m.Output.Labels = []string{"fine", "broken"}
			}), 2)
			d.ShadowS, d.MinShadowAgreement = 0.2, 0.95
			return d
		}, "shadow agreement 0.0% is below the minimum 95.0%", true},
		{"no package key", func(e *env) wire.Desired {
			e.opts.PackageKey = nil
			return e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
		}, "no package key pinned", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			d := tt.setup(e)
			e.start()
			before := e.m.Swap().Model()
			e.desired <- d
			s := e.waitPhase(1, update.Committed, update.Failed, update.RolledBack)
			if s.Phase != update.Failed || !strings.Contains(s.Reason, tt.want) || strings.Contains(s.Reason, "\n") {
				t.Fatalf("phase %s reason %q, want failed with one line containing %q", s.Phase, s.Reason, tt.want)
			}
			if got := e.m.Swap().Model(); got != before {
				t.Errorf("active model %s, want %s untouched", got, before)
			}
			if ev := e.waitEvent(update.Failed); ev.Reason != s.Reason || ev.Device != "dev-1" {
				t.Errorf("event %+v, want the status reason %q", ev, s.Reason)
			}
			// Nothing refused before verification is kept in the store.
			ents, _ := os.ReadDir(filepath.Join(e.opts.DataDir, update.StoreDir))
			if !tt.verified && len(ents) != 0 {
				t.Errorf("store holds %d files after a refusal before verification", len(ents))
			}
		})
	}
}

func TestProbationRollsBack(t *testing.T) {
	tests := []struct {
		name  string
		limit func(d *wire.Desired)
		want  string
	}{
		// No model can be this much faster.
		{"latency", func(d *wire.Desired) { d.MaxLatencyRatio = 1e-6 }, "p99 latency ratio"},
		// Noise windows are far from the training data: the output distribution drifts.
		{"drift", func(d *wire.Desired) { d.MaxDriftPSI = 1e-6 }, "output drift PSI"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testProbationRollsBack(t, tt.limit, tt.want) })
	}
}

func testProbationRollsBack(t *testing.T, limit func(d *wire.Desired), want string) {
	e := newEnv(t)
	e.start()
	d := e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
	d.ProbationS = 0.3
	limit(&d)
	time.Sleep(50 * time.Millisecond) // let the active model set its latency
	e.desired <- d
	s := e.waitPhase(1, update.Committed, update.RolledBack, update.Failed)
	if s.Phase != update.RolledBack || !strings.Contains(s.Reason, want) {
		t.Fatalf("phase %s reason %q, want rolled_back with %q", s.Phase, s.Reason, want)
	}
	e.waitModel("vibration-anomaly-f32@1.0.0")
	e.stop()
	e.start()
	if got := e.m.Swap().Model(); got.Version != "1.0.0" {
		t.Errorf("active model %s after rollback and restart, want 1.0.0", got)
	}
}

func TestControllerRollbackAndSupersede(t *testing.T) {
	e := newEnv(t)
	e.opts.Downloader.(*updatetest.Downloader).Rate = 20 << 10 // ~1.5 s for the package
	e.start()
	d1 := e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
	e.desired <- d1
	e.waitPhase(1, update.Downloading)
	time.Sleep(100 * time.Millisecond)
	d2 := e.publish(2, e.pkg("vibration-anomaly-i8", e.key, nil), 3)
	e.desired <- d2
	// Generation 1 is abandoned, generation 2 runs to the end.
	s := e.waitPhase(2, update.Committed, update.Failed, update.RolledBack)
	if s.Phase != update.Committed {
		t.Fatalf("generation 2: %s (%s)", s.Phase, s.Reason)
	}
	if !slices.Contains(e.ev.phases(), update.Failed) {
		t.Errorf("no failed event for the superseded generation: %v", e.ev.phases())
	}
	if got := e.m.Swap().Model(); got.Name != "vibration-anomaly-i8" {
		t.Errorf("active %s", got)
	}
	e.desired <- wire.Desired{Generation: 3, Rollback: true}
	s = e.waitPhase(3, update.RolledBack, update.Failed, update.Committed)
	if s.Phase != update.RolledBack || s.Reason != "rollback ordered by the controller" {
		t.Fatalf("generation 3: %s (%s)", s.Phase, s.Reason)
	}
	e.waitModel("vibration-anomaly-f32@1.0.0") // the command-line model
}

// A restart in each long phase carries on from the record: downloads resume, shadow starts
// again, probation restarts once and rolls back on the second restart.
func TestRestartResumes(t *testing.T) {
	for _, phase := range []string{update.Downloading, update.Shadow, update.Probation} {
		t.Run(phase, func(t *testing.T) {
			e := newEnv(t)
			dl := e.opts.Downloader.(*updatetest.Downloader)
			dl.Rate = 20 << 10
			e.start()
			d := e.publish(1, e.pkg("vibration-anomaly-f32", e.key, nil), 2)
			d.ShadowS, d.ProbationS = 1, 1
			e.desired <- d
			e.waitPhase(1, phase)
			time.Sleep(200 * time.Millisecond)
			e.stop()
			if phase == update.Downloading {
				part, err := os.Stat(filepath.Join(dl.Dir, "") + "/" + targetSHA(t, e, d) + ".part")
				if err != nil || part.Size() == 0 {
					t.Fatalf("no partial download kept: %v", err)
				}
			}
			dl.Rate = 0
			e.start()
			if phase == update.Probation {
				if got := e.m.Swap().Model(); got.Version != "1.1.0" {
					t.Fatalf("restarted in probation running %s, want the candidate", got)
				}
				// A second restart within the same probation rolls back.
				e.waitPhase(1, update.Probation)
				e.stop()
				e.start()
				s := e.waitPhase(1, update.RolledBack, update.Committed)
				if s.Phase != update.RolledBack || !strings.Contains(s.Reason, "restarted 2 times during probation") {
					t.Fatalf("second restart in probation: %s (%s)", s.Phase, s.Reason)
				}
				e.waitModel("vibration-anomaly-f32@1.0.0")
				return
			}
			s := e.waitPhase(1, update.Committed, update.Failed, update.RolledBack)
			if s.Phase != update.Committed {
				t.Fatalf("after restart in %s: %s (%s)", phase, s.Phase, s.Reason)
			}
		})
	}
}

func targetSHA(t *testing.T, e *env, d wire.Desired) string {
	return e.lookup(d.Model.Target).SHA256
}
