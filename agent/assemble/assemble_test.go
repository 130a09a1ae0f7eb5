package assemble_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/sensor/simsensor"
	"github.com/outpost-ml/outpost/fleet/broker/mochitest"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/sim"
)

const sampleModel = "../../models/sample/vibration-anomaly-f32.tflite"

func startBroker(t *testing.T) string {
	t.Helper()
	return mochitest.Start(t, "127.0.0.1:0", nil).URL()
}

// controller records results and states for every device and acks each batch.
type controller struct {
	mu      sync.Mutex
	results map[string][]wire.Result
	states  map[string]string
}

func newController(t *testing.T, broker string) *controller {
	ctl := &controller{results: map[string][]wire.Result{}, states: map[string]string{}}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("ctl").SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("controller connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	sub := func(leaf string, h paho.MessageHandler) {
		if tok := c.Subscribe(wire.DeviceWildcard(leaf), 1, h); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
	}
	sub(wire.LeafResults, func(c paho.Client, m paho.Message) {
		var b wire.ResultBatch
		if wire.Decode(m.Payload(), &b) != nil || len(b.Results) == 0 {
			return
		}
		ctl.mu.Lock()
		ctl.results[b.Device] = append(ctl.results[b.Device], b.Results...)
		ctl.mu.Unlock()
		ack, _ := wire.Encode(&wire.Ack{Seq: b.Results[len(b.Results)-1].Seq, Epoch: b.Epoch})
		c.Publish(wire.ControllerTopic(b.Device, wire.LeafAck), 1, false, ack)
	})
	sub(wire.LeafState, func(_ paho.Client, m paho.Message) {
		var s wire.State
		if wire.Decode(m.Payload(), &s) == nil {
			ctl.mu.Lock()
			ctl.states[s.Device] = s.State
			ctl.mu.Unlock()
		}
	})
	return ctl
}

func (ctl *controller) get(device string) ([]wire.Result, string) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	return append([]wire.Result(nil), ctl.results[device]...), ctl.states[device]
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond)) }()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within 20s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func config(broker, id, dir string, sensors ...string) assemble.Config {
	return assemble.Config{
		DeviceID: id, Broker: broker, ModelPath: sampleModel, AllowUnsigned: true, Sensors: sensors, DataDir: dir,
		HealthInterval: 200 * time.Millisecond, AgentVersion: "test",
		Link: mqttlink.Options{ConnectRetryInterval: 100 * time.Millisecond, MaxReconnectInterval: 300 * time.Millisecond},
	}
}

func runDevice(t *testing.T, cfg assemble.Config) (*assemble.Device, func()) {
	t.Helper()
	d, err := assemble.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return d, stop
}

// Two devices in one process, as the demo runs them: the real model on the simulated
// machine, a fault injected into one of them, a restart that continues the sequence.
func TestDevicesEndToEnd(t *testing.T) {
	broker := startBroker(t)
	ctl := newController(t, broker)
	dirA, dirB := t.TempDir(), t.TempDir()
	a, stopA := runDevice(t, config(broker, "dev-a", dirA, "sim:vibration?seed=1"))
	b, stopB := runDevice(t, config(broker, "dev-b", dirB, "sim:vibration?seed=2"))
	defer stopB()
	if got := a.Predictor.Model().String(); got != "vibration-anomaly-f32@1.0.0" {
		t.Fatalf("model = %s", got)
	}

	// 64-sample windows every 32 samples at 50 Hz: a result every 0.64 s after 1.28 s.
	eventually(t, "healthy results from both devices", func() bool {
		ra, sa := ctl.get("dev-a")
		rb, _ := ctl.get("dev-b")
		return len(ra) >= 3 && len(rb) >= 3 && sa == wire.StateOnline
	})
	ra, _ := ctl.get("dev-a")
	for _, r := range ra {
		if r.Event || r.Model != "vibration-anomaly-f32@1.0.0" || r.Label != "normal" {
			t.Fatalf("healthy machine gave %+v", r)
		}
	}

	b.Source.(*simsensor.Vibration).SetFault(sim.FaultBearing)
	n, _ := ctl.get("dev-b")
	eventually(t, "anomaly events after the bearing fault", func() bool {
		rb, _ := ctl.get("dev-b")
		events := 0
		for _, r := range rb[len(n):] {
			if r.Event && r.Label == "anomaly" {
				events++
			}
		}
		return events >= 3
	})

	stopA()
	_, state := ctl.get("dev-a")
	eventually(t, "offline after a clean stop", func() bool { _, state = ctl.get("dev-a"); return state == wire.StateOffline })
	last := a.Agent.Stats().LastSeq

	// Restart on the same data dir: sequence numbers continue.
	a2, _ := runDevice(t, config(broker, "dev-a", dirA, "sim:vibration?seed=1"))
	eventually(t, "results after restart", func() bool { return a2.Agent.Stats().AckedSeq > last })
	ra, _ = ctl.get("dev-a")
	seen := map[uint64]bool{}
	for _, r := range ra {
		seen[r.Seq] = true
	}
	for seq := uint64(1); seq <= last+1; seq++ {
		if !seen[seq] {
			t.Fatalf("seq %d missing across the restart (last before restart %d)", seq, last)
		}
	}
}

// Three --sensor specs feed the 3-channel activity model as one source, channels in order.
func TestCombinedSensors(t *testing.T) {
	broker := startBroker(t)
	cfg := config(broker, "dev-c", t.TempDir(),
		"sim:temperature?rate=25&seed=1&mean=10", "sim:temperature?rate=25&seed=2&mean=20", "sim:temperature?rate=25&seed=3&mean=30")
	cfg.ModelPath = "../../models/sample/activity-f32.tflite"
	d, stop := runDevice(t, cfg)
	c, ok := d.Source.(*sensor.Combined)
	if !ok || len(c.Sources()) != 3 || c.Info().Channels != 3 || c.Info().RateHz != 25 {
		t.Fatalf("Source = %T %+v, want a 3-channel *sensor.Combined at 25 Hz", d.Source, d.Source.Info())
	}
	// A 50-sample window at 25 Hz: the first result after 2 s.
	eventually(t, "a result from the combined source", func() bool { return d.Agent.Stats().LastSeq >= 1 })
	stop()
	if st := d.Agent.Stats(); st.SensorErrors != 0 || st.PredictErrors != 0 {
		t.Fatalf("stats %+v, want no errors", st)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	held, err := boltbuf.Open(filepath.Join(dir, "held", assemble.BufferFile), boltbuf.Options{})
	if err == nil {
		t.Fatal("opened a buffer in a missing directory")
	}
	if err := os.Mkdir(filepath.Join(dir, "held"), 0o700); err != nil {
		t.Fatal(err)
	}
	held, err = boltbuf.Open(filepath.Join(dir, "held", assemble.BufferFile), boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	ok := config("tcp://127.0.0.1:1", "dev", filepath.Join(dir, "data"), "sim:vibration")
	tests := []struct {
		name   string
		modify func(c *assemble.Config)
		want   string
	}{
		{"bad id", func(c *assemble.Config) { c.DeviceID = "a#b" }, "device id"},
		{"no model", func(c *assemble.Config) { c.ModelPath = "" }, "no model"},
		{"missing model", func(c *assemble.Config) { c.ModelPath = filepath.Join(dir, "x.tflite") }, "read model"},
		{"no sensor", func(c *assemble.Config) { c.Sensors = nil }, "no sensor given"},
		{"bad sensor", func(c *assemble.Config) { c.Sensors = []string{"gpio:7"} }, `unknown kind "gpio:7"`},
		{"bad second sensor", func(c *assemble.Config) { c.Sensors = []string{"sim:vibration", "sim:nope"} }, `unknown kind "sim:nope"`},
		{"rate mismatch", func(c *assemble.Config) { c.Sensors = []string{"sim:vibration?rate=100"} }, "trained at 50 Hz"},
		{"combined rates differ", func(c *assemble.Config) {
			c.Sensors = []string{"sim:vibration", "sim:temperature?rate=10"}
		}, "sim:vibration samples at 50 Hz but sim:temperature at 10 Hz"},
		{"combined channels", func(c *assemble.Config) {
			c.Sensors = []string{"sim:vibration", "sim:temperature?rate=50"}
		}, "sensor sim:vibration+sim:temperature gives 2 channels (sim:vibration.0, sim:temperature.0), model wants 1"},
		{"data dir is a file", func(c *assemble.Config) { c.DataDir = file }, "not a directory"},
		{"data dir in use", func(c *assemble.Config) { c.DataDir = filepath.Join(dir, "held") }, "in use by another agent (pid"},
		{"bad broker", func(c *assemble.Config) { c.Broker = "http://x:1" }, "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.modify(&c)
			d, err := assemble.New(c)
			if err == nil {
				d.Close()
				t.Fatalf("New succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("New = %q, want one line containing %q", err, tt.want)
			}
		})
	}
	// A failed New must release what it opened: the data dir can be used right away.
	c := ok
	c.Broker = "http://x:1"
	if _, err := assemble.New(c); err == nil {
		t.Fatal("want error")
	}
	d, err := assemble.New(ok)
	if err != nil {
		t.Fatalf("New after a failed New on the same data dir = %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
