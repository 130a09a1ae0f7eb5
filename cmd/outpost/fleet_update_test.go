package main

// Rollouts to a fleet of in-process agents: the real agent code (agent/assemble devices with
// simulated vibration sensors, each with its own data directory, trust cache and model
// store) against the real controller (`outpost serve` in-process: embedded broker, registry
// publishing to the fleet's TUF repository, block server, rollout engine).

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/simsensor"
	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/sim"
	"github.com/outpost-ml/outpost/models/train"
)

// fleetWorld is a controller's data directory with its trust, a package-signing key and
// versions of the sample vibration model signed with it.
type fleetWorld struct {
	dir, data, offline string
	pub                string // package-signing public key file
	root               string // the fleet's root.json, pinned on every device
	pkgs               map[string]string
	srv                *fleetServer
	addr               string // embedded broker, kept across controller restarts
	stop               func() error
}

// newFleetWorld runs `outpost keys init`, and builds the sample vibration model as packages
// of each version in versions (a version may change its manifest with edit).
func newFleetWorld(t testing.TB, versions map[string]func(m map[string]any)) *fleetWorld {
	t.Helper()
	w := &fleetWorld{dir: t.TempDir(), pkgs: map[string]string{}}
	w.data, w.offline = filepath.Join(w.dir, "controller"), filepath.Join(w.dir, "offline")
	mustCLI(t, "keys", "init", "--data-dir", w.data, "--out-dir", w.offline)
	w.root = filepath.Join(w.data, "tuf", "meta", "1.root.json")
	signing := filepath.Join(w.dir, "signing")
	mustCLI(t, "keys", "gen", "--out", signing)
	w.pub = signing + ".pub"
	for v, edit := range versions {
		man := filepath.Join(w.dir, "manifest-"+v+".json")
		writeManifest(t, filepath.Join(sampleDir, "vibration-anomaly-f32.json"), man, func(m map[string]any) {
			m["version"] = v
			if edit != nil {
				edit(m)
			}
		})
		w.pkgs[v] = filepath.Join(w.dir, "vibration-anomaly-f32-"+v+bundle.Extension)
		mustCLI(t, "models", "build", "--tflite", filepath.Join(sampleDir, "vibration-anomaly-f32.tflite"), "--manifest", man, "--key", signing+".key", "--out", w.pkgs[v])
	}
	w.addr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	return w
}

// start runs the controller in-process until stop.
func (w *fleetWorld) start(t testing.TB) {
	t.Helper()
	srv, err := newFleetServer(serveConfig{Listen: w.addr, DataDir: w.data, TargetsKeyFiles: []string{filepath.Join(w.offline, "targets.key")},
		updateConfig: updateConfig{PackageKeys: []string{w.pub}}})
	if err != nil {
		t.Fatal(err)
	}
	w.srv, w.stop = srv, runStoppable("controller", srv.Run)
	t.Cleanup(func() {
		if err := w.stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
}

// runStoppable runs run in a goroutine until the returned stop is called; stop waits at most
// 30 s for it and returns its error, the same on every call.
func runStoppable(what string, run func(context.Context) error) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = fmt.Errorf("%s did not stop within 30s", what)
			}
		})
		return err
	}
}

// push registers version v with the running controller (as `outpost models push` does).
func (w *fleetWorld) push(t testing.TB, v string) {
	t.Helper()
	pkg, err := os.ReadFile(w.pkgs[v])
	if err != nil {
		t.Fatal(err)
	}
	m, err := w.srv.Registry.Push(context.Background(), pkg)
	if err != nil || !m.Published {
		t.Fatalf("push %s: %+v, %v", v, m, err)
	}
}

// simAgent is one in-process agent.
type simAgent struct {
	id, dir string
	dev     *assemble.Device
	stop    func() error
}

// startAgent runs device id on the real agent code with its data in dir (kept across
// restarts); seed varies its simulated machine.
func (w *fleetWorld) startAgent(t testing.TB, id, dir string, seed int) *simAgent {
	t.Helper()
	a, err := w.newAgent(t, id, dir, seed)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newAgent is startAgent for any goroutine: it reports errors instead of failing t.
func (w *fleetWorld) newAgent(t testing.TB, id, dir string, seed int) (*simAgent, error) {
	key, err := os.ReadFile(w.pub)
	if err != nil {
		return nil, err
	}
	pub, err := bundle.ParsePublicKey(key)
	if err != nil {
		return nil, err
	}
	d, err := assemble.New(assemble.Config{
		DeviceID: id, Broker: "tcp://" + w.addr, ModelPath: w.pkgs["1.0.0"], PackageKey: pub,
		Sensors: []string{fmt.Sprintf("%s?seed=%d", flakyKind, seed)}, DataDir: dir,
		HealthInterval: 500 * time.Millisecond, AgentVersion: version,
		Link:   mqttlink.Options{ConnectRetryInterval: 200 * time.Millisecond, MaxReconnectInterval: time.Second},
		Update: assemble.UpdateConfig{TrustRoot: w.root},
	})
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", id, err)
	}
	a := &simAgent{id: id, dir: dir, dev: d, stop: runStoppable("agent "+id, d.Run)}
	t.Cleanup(func() {
		if err := a.stop(); err != nil {
			t.Errorf("agent %s: %v", id, err)
		}
	})
	return a, nil
}

// startFleet starts n agents in parallel (bounded) and waits until the controller knows them.
func (w *fleetWorld) startFleet(t testing.TB, n int) []*simAgent {
	t.Helper()
	agents := make([]*simAgent, n)
	var g errgroup.Group
	g.SetLimit(8)
	for i := range agents {
		g.Go(func() error {
			id := fmt.Sprintf("sim-%03d", i)
			a, err := w.newAgent(t, id, filepath.Join(w.dir, id), i+1)
			agents[i] = a
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	w.waitDevices(t, "every agent known to the controller with 1.0.0", 3*time.Minute, func(ds map[string]fleet.DeviceStatus) bool {
		for _, a := range agents {
			if d, ok := ds[a.id]; !ok || d.Health == nil || d.Health.Model.Version != "1.0.0" {
				return false
			}
		}
		return true
	})
	return agents
}

// waitDevices polls the controller's device table until cond holds.
func (w *fleetWorld) waitDevices(t testing.TB, what string, within time.Duration, cond func(map[string]fleet.DeviceStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ds := map[string]fleet.DeviceStatus{}
		for _, d := range w.srv.Controller.Devices() {
			ds[d.ID] = d
		}
		if cond(ds) {
			return
		}
		if time.Now().After(deadline) {
			for _, d := range ds {
				if h := d.Health; h != nil && h.Update != nil {
					t.Logf("%s online=%v runs %s: %s %s", d.ID, d.Online, h.Model.Version, h.Update.Phase, h.Update.Reason)
				}
			}
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitRollout polls rollout id until it is in one of the final states and returns it.
func (w *fleetWorld) waitRollout(t testing.TB, id string, within time.Duration) fleet.Rollout {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r, err := w.srv.Engine.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		switch r.State {
		case fleet.RolloutCompleted, fleet.RolloutHalted, fleet.RolloutAborted:
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout %s still %s (wave %d) after %v", id, r.State, r.Wave, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// running reports whether every device in ids reports version v, done updating.
func running(ds map[string]fleet.DeviceStatus, ids []string, v string) bool {
	for _, id := range ids {
		d, ok := ds[id]
		if !ok || d.Health == nil || d.Health.Model.Version != v {
			return false
		}
		if u := d.Health.Update; u != nil && u.Phase != wire.PhaseCommitted && u.Phase != wire.PhaseFailed && u.Phase != wire.PhaseRolledBack {
			return false
		}
	}
	return true
}

func ids(agents []*simAgent) []string {
	out := make([]string, len(agents))
	for i, a := range agents {
		out[i] = a.id
	}
	return out
}

func canaryIDs(r fleet.Rollout) []string {
	var out []string
	for _, d := range r.Waves[0].Devices {
		out = append(out, d.ID)
	}
	return out
}

// TestFleetRollouts is CI test 3: a rollout in which 10 % of the canaries fail probation
// halts in canary with those devices back on 1.0.0; a candidate that disagrees with the
// active model in shadow halts in canary; a clean rollout to the whole fleet completes.
func TestFleetRollouts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of in-process agents")
	}
	t.Parallel()
	w := newFleetWorld(t, map[string]func(map[string]any){
		"1.0.0": nil,
		"1.1.0": nil,
		// Labels swapped by mistake: the candidate names every window the other way round
		// from the running model.
		"1.2.0": func(m map[string]any) { m["output"].(map[string]any)["labels"] = []string{"anomaly", "normal"} },
	})
	w.start(t)
	agents := w.startFleet(t, fleetAgents)
	all := ids(agents)
	byID := map[string]*simAgent{}
	for _, a := range agents {
		byID[a.id] = a
	}
	w.push(t, "1.1.0")
	w.push(t, "1.2.0")
	ctx := context.Background()

	t.Run("probation failure halts in canary", func(t *testing.T) {
		r, err := w.srv.Engine.Create(ctx, fleet.RolloutSpec{Model: "vibration-anomaly-f32@1.1.0", Canary: 0.1, Waves: []float64{1},
			Probation: 20 * time.Second, Gates: fleet.Gates{MaxFailure: 0.05, MaxErrorRate: 0.1}})
		if err != nil {
			t.Fatal(err)
		}
		// A tenth of the canaries lose their sensor input: every window fails, so the
		// candidate's error rate in probation crosses the gate there.
		canary := canaryIDs(r)
		faulty := canary[:max(1, len(canary)/10)]
		for _, id := range faulty {
			byID[id].dev.Source.(*flakySensor).broken.Store(true)
		}
		defer func() {
			for _, id := range faulty {
				byID[id].dev.Source.(*flakySensor).broken.Store(false)
			}
		}()
		r = w.waitRollout(t, r.ID, 3*time.Minute)
		if r.State != fleet.RolloutHalted || r.Wave != 0 {
			t.Fatalf("rollout %s in wave %d (%s), want halted in the canary", r.State, r.Wave, r.Reason)
		}
		t.Logf("halted: %s", r.Reason)
		logCanaries(t, w, canary)
		w.waitDevices(t, "the canaries back on 1.0.0", 2*time.Minute, func(ds map[string]fleet.DeviceStatus) bool { return running(ds, canary, "1.0.0") })
		w.waitDevices(t, "no device outside the canary touched", time.Second, func(ds map[string]fleet.DeviceStatus) bool { return running(ds, all, "1.0.0") })
	})

	t.Run("shadow disagreement halts in canary", func(t *testing.T) {
		r, err := w.srv.Engine.Create(ctx, fleet.RolloutSpec{Model: "vibration-anomaly-f32@1.2.0", Canary: 0.1, Waves: []float64{1},
			Probation: 2 * time.Second, Shadow: 6 * time.Second, Gates: fleet.Gates{MaxFailure: 0.05, MinShadowAgreement: 0.95}})
		if err != nil {
			t.Fatal(err)
		}
		r = w.waitRollout(t, r.ID, 3*time.Minute)
		if r.State != fleet.RolloutHalted || r.Wave != 0 {
			t.Fatalf("rollout %s in wave %d (%s), want halted in the canary", r.State, r.Wave, r.Reason)
		}
		t.Logf("halted: %s", r.Reason)
		w.waitDevices(t, "every device on 1.0.0", 2*time.Minute, func(ds map[string]fleet.DeviceStatus) bool { return running(ds, all, "1.0.0") })
	})

	t.Run("clean rollout completes", func(t *testing.T) {
		r, err := w.srv.Engine.Create(ctx, fleet.RolloutSpec{Model: "vibration-anomaly-f32@1.1.0", Canary: 0.05, Waves: []float64{0.5, 1},
			Probation: 3 * time.Second, Gates: fleet.Gates{MaxFailure: 0}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r = w.waitRollout(t, r.ID, 5*time.Minute)
		if r.State != fleet.RolloutCompleted {
			t.Fatalf("rollout %s (%s), want completed", r.State, r.Reason)
		}
		t.Logf("%d agents updated in %v", len(agents), time.Since(start).Round(time.Millisecond))
		w.waitDevices(t, "every device on 1.1.0", time.Minute, func(ds map[string]fleet.DeviceStatus) bool { return running(ds, all, "1.1.0") })
	})
}

// TestFleetRolloutRestarts is CI test 4: the controller restarted mid-rollout resumes it, and
// an agent offline during the rollout catches up when it returns.
func TestFleetRolloutRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of in-process agents")
	}
	t.Parallel()
	w := newFleetWorld(t, map[string]func(map[string]any){"1.0.0": nil, "1.1.0": nil})
	w.start(t)
	agents := w.startFleet(t, 10)
	all := ids(agents)
	w.push(t, "1.1.0")
	r, err := w.srv.Engine.Create(context.Background(), fleet.RolloutSpec{Model: "vibration-anomaly-f32@1.1.0", Canary: 0.2, Waves: []float64{1},
		Probation: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// A device of the second wave goes offline before its wave starts.
	var away *simAgent
	for _, a := range agents {
		if a.id == r.Waves[1].Devices[0].ID {
			away = a
		}
	}
	if err := away.stop(); err != nil {
		t.Fatal(err)
	}
	others := make([]string, 0, len(all)-1)
	for _, id := range all {
		if id != away.id {
			others = append(others, id)
		}
	}
	// Restart the controller (and its embedded broker) while the canary is in probation.
	w.waitDevices(t, "a canary in probation", time.Minute, func(ds map[string]fleet.DeviceStatus) bool {
		for _, id := range canaryIDs(r) {
			if d := ds[id]; d.Health != nil && d.Health.Update != nil && d.Health.Update.Phase == wire.PhaseProbation {
				return true
			}
		}
		return false
	})
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	w.start(t)
	if got, err := w.srv.Engine.Get(r.ID); err != nil || got.State != fleet.RolloutRunning {
		t.Fatalf("after the restart rollout %s is %+v, %v", r.ID, got.State, err)
	}
	w.waitDevices(t, "every online device on 1.1.0", 2*time.Minute, func(ds map[string]fleet.DeviceStatus) bool {
		return running(ds, others, "1.1.0")
	})
	if got, _ := w.srv.Engine.Get(r.ID); got.State == fleet.RolloutCompleted {
		t.Fatalf("rollout completed without %s", away.id)
	}
	// The device returns with its data directory: it takes the retained desired state.
	w.startAgent(t, away.id, away.dir, len(agents))
	if got := w.waitRollout(t, r.ID, 2*time.Minute); got.State != fleet.RolloutCompleted {
		t.Fatalf("rollout %s (%s), want completed", got.State, got.Reason)
	}
	w.waitDevices(t, "every device on 1.1.0", time.Minute, func(ds map[string]fleet.DeviceStatus) bool { return running(ds, all, "1.1.0") })
}

// logCanaries logs what each canary reported, for when a threshold needs a second look.
func logCanaries(t *testing.T, w *fleetWorld, canary []string) {
	ds := map[string]fleet.DeviceStatus{}
	for _, d := range w.srv.Controller.Devices() {
		ds[d.ID] = d
	}
	for _, id := range canary {
		if h := ds[id].Health; h != nil && h.Update != nil {
			u := h.Update
			t.Logf("%s: %s %s", id, u.Phase, u.Reason)
		}
	}
}

// flakyKind is the simulated vibration sensor with a switch that breaks it: while broken
// every reading is NaN, as from an ADC whose input came loose.
const flakyKind = "test:vibration"

type flakySensor struct {
	*simsensor.Vibration
	broken atomic.Bool
}

func (f *flakySensor) Read(ctx context.Context, dst []float32) (time.Time, error) {
	t, err := f.Vibration.Read(ctx, dst)
	if f.broken.Load() {
		dst[0] = float32(math.NaN())
	}
	return t, err
}

func init() {
	sensor.Register(flakyKind, func(args url.Values) (sensor.Source, error) {
		if err := sensor.CheckArgs(args, "seed"); err != nil {
			return nil, err
		}
		seed, err := strconv.ParseUint(args.Get("seed"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seed: %w", err)
		}
		return &flakySensor{Vibration: simsensor.NewVibration(simsensor.VibrationConfig{Seed: seed, SampleRateHz: sim.DefaultSampleRateHz, ShaftHz: sim.DefaultShaftHz})}, nil
	})
}

// BenchmarkFleetUpdate1MiB rolls a 1 MiB model out to 200 in-process agents through the
// embedded broker (the controller's block server at its default rates: 1 MiB/s per device,
// 16 MiB/s in all) and reports the time from `rollout create` until every device committed:
// a canary of two, then the other 198 at once, 1 s probation each. Run it once:
//
//	go test ./cmd/outpost -run '^$' -bench FleetUpdate1MiB -benchtime 1x
func BenchmarkFleetUpdate1MiB(b *testing.B) {
	const agents = 200
	w := newFleetWorld(b, map[string]func(map[string]any){"1.0.0": nil})
	w.pkgs["1.1.0"] = bigPackage(b, w, 1<<20)
	w.start(b)
	w.startFleet(b, agents)
	w.push(b, "1.1.0")
	b.ResetTimer()
	start := time.Now()
	r, err := w.srv.Engine.Create(context.Background(), fleet.RolloutSpec{Model: "vibration-anomaly-f32@1.1.0", Canary: 0.01, Waves: []float64{1},
		Probation: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	if r = w.waitRollout(b, r.ID, 5*time.Minute); r.State != fleet.RolloutCompleted {
		b.Fatalf("rollout %s (%s)", r.State, r.Reason)
	}
	d := time.Since(start)
	b.StopTimer()
	st := w.srv.Blobs.Stats()
	b.ReportMetric(d.Seconds(), "s/rollout")
	b.ReportMetric(float64(st.Bytes)/d.Seconds()/(1<<20), "MiB/s")
	b.Logf("%d agents committed a %d-byte model in %v (%d blocks, %d bytes sent, %d rate-limited answers)", agents, fileSize(b, w.pkgs["1.1.0"]), d.Round(time.Millisecond), st.Blocks, st.Bytes, st.RateLimited)
}

func fileSize(t testing.TB, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// bigPackage builds version 1.1.0 of the vibration model as an MLP wide enough to weigh
// about size bytes (64 → N → 1, float32), with its baseline and golden vectors computed from
// simulated healthy machines by `outpost models baseline`, signed with w's package key.
func bigPackage(t testing.TB, w *fleetWorld, size int) string {
	t.Helper()
	hidden := size / (64 * 4)
	rng := rand.New(rand.NewPCG(1, 2))
	layer := func(in, out int) train.Dense {
		d := train.Dense{In: in, Out: out, W: make([]float64, in*out), B: make([]float64, out)}
		lim := math.Sqrt(6 / float64(in))
		for i := range d.W {
			d.W[i] = (2*rng.Float64() - 1) * lim
		}
		return d
	}
	tfl, err := train.BuildTFLite(&train.MLP{Layers: []train.Dense{layer(64, hidden), layer(hidden, 1)}}, 64)
	if err != nil {
		t.Fatal(err)
	}
	tflPath := filepath.Join(w.dir, "big.tflite")
	if err := os.WriteFile(tflPath, tfl, 0o644); err != nil {
		t.Fatal(err)
	}
	man := filepath.Join(w.dir, "big.json")
	writeManifest(t, filepath.Join(sampleDir, "vibration-anomaly-f32.json"), man, func(m map[string]any) {
		m["version"] = "1.1.0"
		for _, k := range []string{"baseline", "golden", "sha256", "size", "ops", "metrics", "tensors"} {
			delete(m, k)
		}
	})
	csv := filepath.Join(w.dir, "healthy.csv")
	writeVibrationCSV(t, csv, 4, 2000)
	mustCLI(t, "models", "baseline", "--tflite", tflPath, "--manifest", man, "--csv", csv)
	pkg := filepath.Join(w.dir, "vibration-anomaly-f32-1.1.0-big"+bundle.Extension)
	mustCLI(t, "models", "build", "--tflite", tflPath, "--manifest", man, "--key", filepath.Join(w.dir, "signing.key"), "--out", pkg)
	return pkg
}

// writeVibrationCSV writes n samples of each of machines simulated healthy machines.
func writeVibrationCSV(t testing.TB, path string, machines, n int) {
	t.Helper()
	var b []byte
	b = append(b, "accel\n"...)
	for seed := 1; seed <= machines; seed++ {
		v := sim.NewVibration(sim.VibrationConfig{Seed: uint64(seed), SampleRateHz: sim.DefaultSampleRateHz, ShaftHz: sim.DefaultShaftHz})
		for range n {
			b = strconv.AppendFloat(b, v.Next(), 'g', 9, 64)
			b = append(b, '\n')
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
