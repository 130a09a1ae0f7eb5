package rollout

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// mqttDevice is a simulated device on the real embedded broker: it takes its desired state
// from c/{id}/desired (retained) and walks through the update phases, publishing each as the
// UpdateStatus of a retained health report, as the agent does.
type mqttDevice struct {
	sim    *simDevice
	url    string
	client paho.Client
	inbox  chan wire.Desired // latest desired state only (capacity 1, replaced when full)
	done   chan struct{}     // closed by stop
}

func (d *mqttDevice) connect() error {
	d.done = make(chan struct{})
	opts := paho.NewClientOptions().AddBroker(d.url).SetClientID(d.sim.id).SetUsername(d.sim.id).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe(wire.ControllerTopic(d.sim.id, wire.LeafDesired), 1, func(_ paho.Client, m paho.Message) {
				var des wire.Desired
				if err := wire.Decode(m.Payload(), &des); err != nil {
					return
				}
				for { // keep only the newest; never block paho's delivery goroutine
					select {
					case d.inbox <- des:
						return
					default:
						select {
						case <-d.inbox:
						default:
						}
					}
				}
			})
		})
	d.client = paho.NewClient(opts)
	if tok := d.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("device %s connect: %v", d.sim.id, tok.Error())
	}
	return nil
}

// stop ends run and disconnects, as a device that loses power.
func (d *mqttDevice) stop() {
	close(d.done)
	d.client.Disconnect(0)
}

func (d *mqttDevice) report() error {
	h := d.sim.health()
	payload, err := wire.Encode(h)
	if err != nil {
		return err
	}
	tok := d.client.Publish(wire.DeviceTopic(d.sim.id, wire.LeafHealth), 1, true, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("%s: health publish timed out", d.sim.id)
	}
	return tok.Error()
}

func (d *mqttDevice) stopped() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// run acts on desired states until ctx ends, one phase every step.
func (d *mqttDevice) run(ctx context.Context, step time.Duration) error {
	if err := d.report(); err != nil {
		return err
	}
	var queue []wire.UpdateStatus
	tick := time.NewTicker(step)
	defer tick.Stop()
	// Like the agent, report health periodically, not only on changes.
	heartbeat := time.NewTicker(2 * time.Second)
	defer heartbeat.Stop()
	for {
		select {
		case <-heartbeat.C:
			d.report() // while the broker is away this fails; the next heartbeat repeats it
		case <-ctx.Done():
			d.client.Disconnect(0)
			return nil
		case <-d.done:
			return nil
		case des := <-d.inbox:
			if ph := d.sim.phases(des); ph != nil {
				queue = ph
			}
		case <-tick.C:
			if len(queue) == 0 {
				continue
			}
			d.sim.apply(queue[0])
			queue = queue[1:]
			d.report() // while the broker is away this fails; the next heartbeat repeats it
		}
	}
}

// controlPlane is a controller (ingest) plus a rollout engine over one store, as `outpost
// serve` runs them; stop ends both and closes the store.
type controlPlane struct {
	ctrl   *fleet.Controller
	engine *Engine
	pub    *MQTTPublisher
	stop   func() error
}

func startControlPlane(t *testing.T, b *runningBroker, dir string) *controlPlane {
	t.Helper()
	st, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	user, pass := b.ControllerCredentials()
	ctrl, err := fleet.New(fleet.Options{Store: st, BrokerURL: b.URL(), Username: user, Password: pass, DeviceFlush: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := NewMQTTPublisher(MQTTOptions{BrokerURL: b.URL(), Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	pub.Connect()
	ctx, cancel := context.WithCancel(context.Background())
	ctrlCtx, stopCtrl := context.WithCancel(context.Background())
	cp := &controlPlane{ctrl: ctrl, pub: pub}
	cp.engine, err = New(ctx, Options{Store: st, Fleet: ctrl, Publisher: pub, Interval: 50 * time.Millisecond, ResendAfter: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var g errgroup.Group
	g.Go(func() error { return ctrl.Run(ctrlCtx) }) // closes the store on return
	engineDone := make(chan error, 1)
	go func() { engineDone <- cp.engine.Run(ctx) }()
	var once sync.Once
	var stopErr error
	cp.stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-engineDone // the engine stops before the store closes
			pub.Close()
			stopCtrl()
			if err := g.Wait(); stopErr == nil {
				stopErr = err
			}
		})
		return stopErr
	}
	t.Cleanup(func() { cp.stop() })
	return cp
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// runningBroker is an embedded broker with a fixed controller password, so a controller
// restarted against a restarted broker (as `outpost serve` restarts both) can log in again.
type runningBroker struct {
	*broker.Broker
	stop func()
}

const brokerPassword = "test-controller-password"

// startBroker starts a broker; the caller stops it, after its clients (a paho client whose
// broker is gone may take long to disconnect while it tries to reconnect).
func startBroker(t *testing.T, addr string) *runningBroker {
	t.Helper()
	b, err := broker.New(broker.Options{Addr: addr, ExactAddr: addr != "127.0.0.1:0", ControllerPassword: brokerPassword})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	return &runningBroker{Broker: b, stop: func() { once.Do(func() { cancel(); <-done }) }}
}

// waitFor polls cond every 50 ms until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFleetOverBroker runs 200 simulated devices (50 under -race) on the real embedded broker
// against a real controller and rollout engine: a rollout whose canaries fail probation (10%) halts in the
// canary with those devices back on the previous model; one whose candidate disagrees with
// the active model in shadow halts too; a clean rollout reaches all 200, surviving a
// restart of the controller and its embedded broker in the middle, and a device offline throughout catches up when it
// returns.
func TestFleetOverBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("hundreds of MQTT clients: skipped with -short")
	}
	if raceSkip != "" {
		t.Skip(raceSkip)
	}
	const n = fleetSize
	b := startBroker(t, "127.0.0.1:0")
	var brokers = []*runningBroker{b}
	var stopDevices func()
	// Registered first, so it runs after the control planes' cleanups: devices, then brokers.
	t.Cleanup(func() {
		if stopDevices != nil {
			stopDevices()
		}
		for _, b := range brokers {
			b.stop()
		}
	})
	dir := t.TempDir()
	cp := startControlPlane(t, b, dir)
	st := cp.engine.opts.Store.(fleet.Store)
	if err := st.PutModel(context.Background(), candidate, []byte("pkg")); err != nil {
		t.Fatal(err)
	}

	f := newSimFleet(n, func(int) behaviour { return good })
	devs := make([]*mqttDevice, n)
	dctx, cancelDevices := context.WithCancel(context.Background())
	var dg errgroup.Group
	stopDevices = func() {
		cancelDevices()
		if err := dg.Wait(); err != nil {
			t.Error(err)
		}
	}
	start := time.Now()
	var cg errgroup.Group
	cg.SetLimit(8)
	for i, s := range f.devices {
		devs[i] = &mqttDevice{sim: s, url: b.URL(), inbox: make(chan wire.Desired, 1)}
		d := devs[i]
		cg.Go(func() error { return d.connect() })
	}
	if err := cg.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		dg.Go(func() error { return d.run(dctx, 10*time.Millisecond) })
	}
	waitFor(t, "every device known to the controller", 30*time.Second, func() bool {
		c := 0
		for _, d := range cp.ctrl.Devices() {
			if d.Health != nil {
				c++
			}
		}
		return c == n
	})
	t.Logf("%d devices connected and reporting in %s", n, time.Since(start).Round(time.Millisecond))
	// The last device goes offline and stays away until the end.
	offline := devs[n-1]
	offline.stop()

	ctx := context.Background()
	settle := func(id string) fleet.Rollout {
		t.Helper()
		var r fleet.Rollout
		waitFor(t, "rollout "+id+" to halt or complete", 60*time.Second, func() bool {
			r, _ = cp.engine.Get(id)
			return r.State == fleet.RolloutHalted || r.State == fleet.RolloutCompleted
		})
		return r
	}
	backOnOld := func(r fleet.Rollout) {
		t.Helper()
		waitFor(t, "the halted wave back on "+oldModel.String(), 30*time.Second, func() bool {
			for _, d := range r.Waves[0].Devices {
				if f.device(d.ID).health().Model != oldModel {
					return false
				}
			}
			return true
		})
		// The next rollout chooses its devices from the controller's view, which follows the
		// devices' reports a moment later (under load, seconds): wait for it too, or the next
		// rollout skips a device as "already runs" the candidate.
		waitFor(t, "the controller to see the halted wave back on "+oldModel.String(), 30*time.Second, func() bool {
			canary := map[string]bool{}
			for _, d := range r.Waves[0].Devices {
				canary[d.ID] = true
			}
			for _, d := range cp.ctrl.Devices() {
				if canary[d.ID] && d.ID != offline.sim.id && d.Model != oldModel {
					return false
				}
			}
			return true
		})
		for _, w := range r.Waves[1:] {
			for _, d := range w.Devices {
				if cp.engine.Desired(d.ID).Rollout == r.ID {
					t.Errorf("%s of wave %s was told about halted rollout %s", d.ID, w.Name, r.ID)
				}
			}
		}
	}

	// 1. 10% of the canaries fail probation.
	spec := baseSpec()
	spec.Canary = 0.1
	r, err := cp.engine.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	canaries := r.Waves[0].Devices
	failing := 0
	for _, d := range canaries {
		if d.ID == offline.sim.id {
			continue
		}
		if failing < max(1, len(canaries)/10) {
			f.device(d.ID).set(failProbation)
			failing++
		}
	}
	t0 := time.Now()
	r = settle(r.ID)
	if r.State != fleet.RolloutHalted || r.Wave != 0 {
		t.Fatalf("rollout 1 ended %s in wave %d (%s); want halted in the canary", r.State, r.Wave, r.Reason)
	}
	backOnOld(r)
	t.Logf("rollout 1 (%d of %d canaries fail probation): halted in %s: %s", failing, len(canaries), time.Since(t0).Round(time.Millisecond), r.Reason)

	// 2. The candidate disagrees with the active model in shadow.
	for _, d := range f.devices {
		d.set(disagree)
	}
	r, err = cp.engine.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	r = settle(r.ID)
	if r.State != fleet.RolloutHalted || r.Wave != 0 {
		t.Fatalf("rollout 2 ended %s in wave %d (%s); want halted in the canary", r.State, r.Wave, r.Reason)
	}
	backOnOld(r)
	t.Logf("rollout 2 (shadow disagreement): halted in %s: %s", time.Since(t0).Round(time.Millisecond), r.Reason)

	// 3. A clean rollout to all 200, with the controller restarted while wave 2 runs.
	for _, d := range f.devices {
		d.set(good)
	}
	spec.SuccessThreshold = 0.95 // the offline device must not hold up its wave
	spec.Gates.MaxFailure = 0.02
	r, err = cp.engine.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	waitFor(t, "the second wave", 60*time.Second, func() bool { r, _ = cp.engine.Get(r.ID); return r.Wave >= 1 })
	if err := cp.stop(); err != nil {
		t.Fatalf("stop control plane: %v", err)
	}
	// The embedded broker restarts with the controller, losing every retained message; the
	// devices reconnect to the same address.
	if restartBroker {
		addr := b.Addr()
		b.stop()
		b = startBroker(t, addr)
		brokers = append(brokers, b)
	}
	t.Logf("controller (and broker: %v) restarted in wave %s after %s", restartBroker, r.Waves[r.Wave].Name, time.Since(t0).Round(time.Millisecond))
	cp = startControlPlane(t, b, dir)
	r = settle(r.ID)
	if r.State != fleet.RolloutCompleted {
		t.Fatalf("rollout 3 ended %s (%s); want completed", r.State, r.Reason)
	}
	t.Logf("rollout 3 (clean, restarted midway): completed in %s", time.Since(t0).Round(time.Millisecond))
	if len(r.Skipped) != 0 {
		t.Errorf("rollout 3 skipped %+v", r.Skipped)
	}
	// The last wave passed at 95%; the stragglers finish after it.
	defer func() {
		if t.Failed() {
			for _, w := range r.Waves {
				for _, d := range w.Devices {
					if d.Outcome != fleet.OutcomeSucceeded {
						var live *wire.Health
						for _, x := range cp.ctrl.Devices() {
							if x.ID == d.ID {
								live = x.Health
							}
						}
						t.Logf("%s: %+v; sim %+v; controller sees %+v", d.ID, d, f.device(d.ID).health().Update, live.Update)
					}
				}
			}
		}
	}()
	waitFor(t, "every online device to succeed", 30*time.Second, func() bool {
		r, _ = cp.engine.Get(r.ID)
		total := 0
		for _, w := range Summarize(r).WaveStatus {
			total += w.Succeeded
		}
		return total == n-1
	})
	t.Logf("every online device succeeded after %s", time.Since(t0).Round(time.Millisecond))
	// The offline device comes back, finds its retained desired state and catches up.
	last := &mqttDevice{sim: offline.sim, url: b.URL(), inbox: make(chan wire.Desired, 1)}
	if err := last.connect(); err != nil {
		t.Fatal(err)
	}
	dg.Go(func() error { return last.run(dctx, 10*time.Millisecond) })
	waitFor(t, "the returning device to commit", 30*time.Second, func() bool {
		r, _ = cp.engine.Get(r.ID)
		for _, w := range r.Waves {
			for _, d := range w.Devices {
				if d.ID == last.sim.id {
					return d.Outcome == fleet.OutcomeSucceeded
				}
			}
		}
		return false
	})
	t.Logf("the returning device caught up after %s", time.Since(t0).Round(time.Millisecond))
	for _, d := range f.devices {
		if m := d.health().Model; m.Version != candidate.Version {
			t.Errorf("%s runs %v after the clean rollout", d.id, m)
		}
	}
}
