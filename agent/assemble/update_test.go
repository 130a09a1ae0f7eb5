package assemble_test

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/update"
	"github.com/outpost-ml/outpost/agent/update/updatetest"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

// desiredChan is a DesiredSource a test writes into.
type desiredChan chan wire.Desired

func (c desiredChan) Desired() <-chan wire.Desired { return c }

// updatableConfig configures a device on the signed sample package vibration-anomaly-f32
// 1.0.0 that takes updates from a test repository in dir holding vibration-anomaly-i8 1.0.0,
// its desired state written into the returned channel.
func updatableConfig(t *testing.T, broker, id, dir, sensor string) (assemble.Config, *updatetest.Repo, desiredChan) {
	t.Helper()
	_, metaKey, _ := bundle.GenerateKey(nil)
	repo, err := updatetest.NewRepo(filepath.Join(dir, "repo"), metaKey)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := os.ReadFile("../../models/sample/vibration-anomaly-i8-1.0.0.opkg")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Add("vibration-anomaly-i8-1.0.0.opkg", pkg, update.TargetCustom{Name: "vibration-anomaly-i8", Version: "1.0.0", Release: 1}); err != nil {
		t.Fatal(err)
	}
	desired := make(desiredChan, 1)
	cfg := config(broker, id, filepath.Join(dir, "data"), sensor)
	cfg.ModelPath, cfg.AllowUnsigned = "../../models/sample/vibration-anomaly-f32-1.0.0.opkg", false
	cfg.PackageKey = bundle.DemoKey().Public().(ed25519.PublicKey) // the sample packages' (public) demo key
	cfg.Update = assemble.UpdateConfig{
		Trust:      &updatetest.Trust{Dir: repo.Dir, Pub: metaKey.Public().(ed25519.PublicKey)},
		Downloader: &updatetest.Downloader{Src: repo.Dir, Dir: filepath.Join(dir, "dl")},
		Desired:    desired,
	}
	return cfg, repo, desired
}

// watcher connects an observer client to broker.
func watcher(t *testing.T, broker string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("watch"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// collect subscribes c to leaf of every device and appends each message that decodes as a T
// to *into, holding mu.
func collect[T any](t *testing.T, c paho.Client, leaf string, mu *sync.Mutex, into *[]T) {
	t.Helper()
	tok := c.Subscribe(wire.DeviceWildcard(leaf), 1, func(_ paho.Client, m paho.Message) {
		var v T
		if json.Unmarshal(m.Payload(), &v) == nil {
			mu.Lock()
			*into = append(*into, v)
			mu.Unlock()
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", leaf, tok.Error())
	}
}

// A device started on a signed package takes an update from its desired state: health
// reports the phase and the controller sees every transition as an event and the results
// of the new model, over the real broker.
func TestSignedModelAndUpdate(t *testing.T) {
	broker := startBroker(t)
	ctl := newController(t, broker)
	var mu sync.Mutex
	var health []wire.Health
	var events []wire.Event
	c := watcher(t, broker)
	collect(t, c, wire.LeafHealth, &mu, &health)
	collect(t, c, wire.LeafEvents, &mu, &events)

	dir := t.TempDir()
	cfg, repo, desired := updatableConfig(t, broker, "dev-u", dir, "sim:vibration?seed=4")
	d, _ := runDevice(t, cfg)
	if d.Unsigned {
		t.Error("a verified package reported unsigned")
	}
	eventually(t, "results of the packaged model", func() bool { r, _ := ctl.get("dev-u"); return len(r) >= 2 })
	desired <- wire.Desired{V: 1, Generation: 1, Rollout: "ro-1", ProbationS: 1, MaxErrorRate: 0.05,
		Model: &wire.DesiredModel{Name: "vibration-anomaly-i8", Version: "1.0.0", Target: "vibration-anomaly-i8-1.0.0.opkg"}}
	eventually(t, "health reports the update committed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range health {
			if u := h.Update; u != nil && u.Phase == wire.PhaseCommitted && u.Generation == 1 && u.Target.Name == "vibration-anomaly-i8" &&
				h.Model.Name == "vibration-anomaly-i8" && !h.Unsigned {
				return true
			}
		}
		return false
	})
	mu.Lock()
	var phases []string
	for _, ev := range events {
		if ev.Device == "dev-u" && ev.Kind == wire.EventUpdate && ev.Rollout == "ro-1" {
			phases = append(phases, ev.Phase)
		}
	}
	mu.Unlock()
	if got := strings.Join(phases, " "); got != "downloading verifying staging activating probation committed" {
		t.Errorf("events %q", got)
	}
	eventually(t, "results of the new model", func() bool {
		r, _ := ctl.get("dev-u")
		return r[len(r)-1].Model == "vibration-anomaly-i8@1.0.0"
	})

	// A package signed by anyone else is refused; the controller hears why, in health and
	// as an event, and the device keeps its model.
	model, _ := os.ReadFile("../../models/sample/vibration-anomaly-f32.tflite")
	mj, _ := os.ReadFile("../../models/sample/vibration-anomaly-f32.json")
	man, err := bundle.DecodeManifest(mj)
	if err != nil {
		t.Fatal(err)
	}
	man.Version = "2.0.0"
	if mj, err = man.Encode(); err != nil {
		t.Fatal(err)
	}
	_, stranger, _ := bundle.GenerateKey(nil)
	forged, err := bundle.Build(mj, model, stranger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Add("vibration-anomaly-f32-2.0.0.opkg", forged, update.TargetCustom{Name: "vibration-anomaly-f32", Version: "2.0.0", Release: 2}); err != nil {
		t.Fatal(err)
	}
	desired <- wire.Desired{V: 1, Generation: 2, Rollout: "ro-2",
		Model: &wire.DesiredModel{Name: "vibration-anomaly-f32", Version: "2.0.0", Target: "vibration-anomaly-f32-2.0.0.opkg"}}
	eventually(t, "health reports the refusal", func() bool {
		mu.Lock()
		defer mu.Unlock()
		h := health[len(health)-1]
		return h.Update != nil && h.Update.Generation == 2 && h.Update.Phase == wire.PhaseFailed &&
			strings.Contains(h.Update.Reason, "signature does not verify") && h.Model.Name == "vibration-anomaly-i8"
	})
	eventually(t, "an event reports the refusal", func() bool {
		mu.Lock()
		defer mu.Unlock()
		last := events[len(events)-1]
		return last.Phase == wire.PhaseFailed && last.Rollout == "ro-2" && strings.Contains(last.Reason, "signature does not verify")
	})
}

func TestUnsignedNeedsTheFlag(t *testing.T) {
	cfg := config("tcp://127.0.0.1:1", "dev-x", t.TempDir(), "sim:vibration")
	cfg.AllowUnsigned = false
	if _, err := assemble.New(cfg); err == nil || !strings.Contains(err.Error(), "not a signed .opkg package") {
		t.Fatalf("bare .tflite without AllowUnsigned: %v", err)
	}
	cfg.AllowUnsigned = true
	d, err := assemble.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !d.Unsigned || !d.Agent.Health().Unsigned {
		t.Error("unsigned model not reported in health")
	}
}
