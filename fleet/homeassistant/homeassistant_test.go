package homeassistant

import (
	"context"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func TestNodeIDInjective(t *testing.T) {
	ids := []string{"a.b", "a_b", "a_db", "a__b", "a-b", "A.b", "a._b", "a_.b"}
	seen := map[string]string{}
	valid := regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	for _, id := range ids {
		n := NodeID(id)
		if !valid.MatchString(n) {
			t.Errorf("NodeID(%q) = %q: not a valid Home Assistant node id", id, n)
		}
		if other, ok := seen[n]; ok {
			t.Errorf("NodeID(%q) = NodeID(%q) = %q", id, other, n)
		}
		seen[n] = id
	}
}

func TestDiscoveryErrors(t *testing.T) {
	for _, tc := range []struct{ prefix, device string }{{"homeassistant", "bad/id"}, {"homeassistant", ""}, {"", "dev-1"}, {"ha/#", "dev-1"}} {
		if _, err := Discovery(tc.prefix, tc.device); err == nil {
			t.Errorf("Discovery(%q, %q): no error", tc.prefix, tc.device)
		}
	}
}

// valueJSONPath matches value_json followed by .field and [index] steps.
var valueJSONPath = regexp.MustCompile(`value_json((?:\.[a-zA-Z_][a-zA-Z0-9_]*|\[-?[0-9]+\])+)`)
var pathStep = regexp.MustCompile(`\.([a-zA-Z_][a-zA-Z0-9_]*)|\[(-?[0-9]+)\]`)

// resolve walks a value_json path through the JSON fields of typ.
func resolve(typ reflect.Type, path string) error {
	for _, m := range pathStep.FindAllStringSubmatch(path, -1) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if m[2] != "" {
			if typ.Kind() != reflect.Slice {
				return &pathError{path, "index into " + typ.String()}
			}
			typ = typ.Elem()
			continue
		}
		if typ.Kind() != reflect.Struct {
			return &pathError{path, "field of " + typ.String()}
		}
		found := false
		for i := range typ.NumField() {
			f := typ.Field(i)
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name == m[1] {
				typ, found = f.Type, true
				break
			}
		}
		if !found {
			return &pathError{path, m[1] + " is not a JSON field of " + typ.String()}
		}
	}
	return nil
}

type pathError struct{ path, why string }

func (e *pathError) Error() string { return "value_json" + e.path + ": " + e.why }

// checkConfig checks one discovery config has what Home Assistant requires and that every
// template reads fields the device's messages carry.
func checkConfig(t *testing.T, device, topic string, payload []byte) {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("%s: not JSON: %v", topic, err)
	}
	for _, k := range []string{"name", "unique_id", "state_topic", "value_template", "device"} {
		if s, ok := c[k]; !ok || s == "" {
			t.Errorf("%s: %s missing", topic, k)
		}
	}
	node := NodeID(device)
	if !regexp.MustCompile(`^homeassistant/(sensor|binary_sensor)/` + node + `/[a-z0-9_]+/config$`).MatchString(topic) {
		t.Errorf("topic %s: want homeassistant/<component>/%s/<object>/config", topic, node)
	}
	dev, _ := c["device"].(map[string]any)
	if ids, _ := dev["identifiers"].([]any); len(ids) != 1 || ids[0] != node {
		t.Errorf("%s: device.identifiers = %v", topic, dev["identifiers"])
	}
	types := map[string]reflect.Type{
		wire.DeviceTopic(device, wire.LeafHealth):  reflect.TypeFor[wire.Health](),
		wire.DeviceTopic(device, wire.LeafState):   reflect.TypeFor[wire.State](),
		wire.DeviceTopic(device, wire.LeafResults): reflect.TypeFor[wire.ResultBatch](),
	}
	check := func(topic, tmpl string) {
		typ, ok := types[topic]
		if !ok {
			t.Errorf("template topic %s is not one of the device's", topic)
			return
		}
		paths := valueJSONPath.FindAllStringSubmatch(tmpl, -1)
		if len(paths) == 0 {
			t.Errorf("template %q reads no value_json field", tmpl)
		}
		for _, p := range paths {
			if err := resolve(typ, p[1]); err != nil {
				t.Errorf("%s: template %q: %v", topic, tmpl, err)
			}
		}
	}
	check(c["state_topic"].(string), c["value_template"].(string))
	if strings.HasPrefix(topic, "homeassistant/binary_sensor/") {
		if c["payload_on"] != wire.StateOnline || c["payload_off"] != wire.StateOffline {
			t.Errorf("%s: payload_on/off = %v/%v", topic, c["payload_on"], c["payload_off"])
		}
		return
	}
	av, _ := c["availability"].([]any)
	if len(av) != 1 {
		t.Fatalf("%s: availability = %v", topic, c["availability"])
	}
	a := av[0].(map[string]any)
	if a["topic"] != wire.DeviceTopic(device, wire.LeafState) || a["payload_available"] != wire.StateOnline || a["payload_not_available"] != wire.StateOffline {
		t.Errorf("%s: availability = %v", topic, a)
	}
	check(a["topic"].(string), a["value_template"].(string))
}

// TestDiscoveryOnBroker runs the real embedded broker (observers allowed, as Home Assistant
// needs) and the real controller; a device appears; Run announces it; an anonymous observer,
// as Home Assistant connects, reads the retained configs and the device topics they name.
func TestDiscoveryOnBroker(t *testing.T) {
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _ = b.Run(ctx) })
	store, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	user, pass := b.ControllerCredentials()
	ctl, err := fleet.New(fleet.Options{Store: store, BrokerURL: b.URL(), Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = ctl.Run(ctx) })
	wg.Go(func() {
		_ = Run(ctx, Options{BrokerURL: b.URL(), Username: user, Password: pass, Fleet: ctl, Interval: 100 * time.Millisecond})
	})

	const device = "dev.ha_1"
	dev := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID(device))
	if tok := dev.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	defer dev.Disconnect(100)
	state, _ := wire.Encode(&wire.State{Device: device, State: wire.StateOnline, Time: time.Now()})
	temp := 51.5
	health, _ := wire.Encode(&wire.Health{Device: device, Time: time.Now(), InferencesPerS: 12, LatencyP99Ms: 3, SoCTempC: &temp, Model: wire.ModelRef{Name: "m", Version: "1"}})
	for topic, p := range map[string][]byte{wire.DeviceTopic(device, wire.LeafState): state, wire.DeviceTopic(device, wire.LeafHealth): health} {
		if tok := dev.Publish(topic, 1, true, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}

	// Home Assistant's view: anonymous, reads discovery and the device's topics.
	var mu sync.Mutex
	got := map[string][]byte{}
	ha := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("home-assistant"))
	if tok := ha.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("home assistant connect: %v", tok.Error())
	}
	defer ha.Disconnect(100)
	keep := func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got[m.Topic()] = m.Payload()
		mu.Unlock()
	}
	for _, f := range []string{"homeassistant/#", wire.DeviceTopic(device, wire.LeafState), wire.DeviceTopic(device, wire.LeafHealth)} {
		tok := ha.Subscribe(f, 1, keep)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil || tok.(*paho.SubscribeToken).Result()[f] > 1 {
			t.Fatalf("subscribe %s refused: %v", f, tok.Error())
		}
	}
	want := len(sensors) + 2
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15s home assistant saw %d of %d topics: %v", n, want, keys(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	configs := 0
	objects := map[string]bool{}
	for topic, p := range got {
		if !strings.HasPrefix(topic, "homeassistant/") {
			continue
		}
		configs++
		checkConfig(t, device, topic, p)
		var c Config
		_ = json.Unmarshal(p, &c)
		if objects[c.UniqueID] {
			t.Errorf("unique_id %s twice", c.UniqueID)
		}
		objects[c.UniqueID] = true
	}
	if configs != len(sensors) {
		t.Errorf("%d configs, want %d", configs, len(sensors))
	}
	for _, o := range []string{"inference_rate", "latency_p99", "buffered", "cpu", "temperature", "online", "outcome"} {
		if !objects[NodeID(device)+"_"+o] {
			t.Errorf("no %s entity", o)
		}
	}
	// The figures the templates name are in what the device published.
	var h map[string]any
	if err := json.Unmarshal(got[wire.DeviceTopic(device, wire.LeafHealth)], &h); err != nil || h["inferences_per_s"] != 12.0 || h["soc_temp_c"] != 51.5 {
		t.Errorf("health as home assistant reads it: %v %v", h, err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
