// Package homeassistant announces every device to Home Assistant by MQTT discovery: retained
// config messages under homeassistant/<component>/<node>/<object>/config describe sensors
// that read the device's own topics (health, state, results) straight from the broker, so a
// Home Assistant connected to the fleet's broker shows each device's health and latest outcome
// with no configuration. The controller only publishes configs; it relays no data.
//
// Home Assistant must be allowed to read outpost/# and homeassistant/#: on the embedded
// broker that is an anonymous observer (outpost serve --allow-observers); on Mosquitto the
// ACL `outpost broker config --allow-observers` writes.
package homeassistant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/pahostore"
)

// DefaultPrefix is Home Assistant's default discovery prefix.
const DefaultPrefix = "homeassistant"

// Availability is one entry of a config's availability list.
type Availability struct {
	Topic               string `json:"topic"`
	ValueTemplate       string `json:"value_template"`
	PayloadAvailable    string `json:"payload_available"`
	PayloadNotAvailable string `json:"payload_not_available"`
}

// DeviceInfo groups a device's entities in Home Assistant.
type DeviceInfo struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
}

// Config is one discovery config (the fields Outpost uses of Home Assistant's MQTT sensor and
// binary_sensor schemas).
type Config struct {
	Name              string         `json:"name"`
	UniqueID          string         `json:"unique_id"`
	ObjectID          string         `json:"object_id"`
	StateTopic        string         `json:"state_topic"`
	ValueTemplate     string         `json:"value_template"`
	Unit              string         `json:"unit_of_measurement,omitempty"`
	DeviceClass       string         `json:"device_class,omitempty"`
	StateClass        string         `json:"state_class,omitempty"`
	Icon              string         `json:"icon,omitempty"`
	PayloadOn         string         `json:"payload_on,omitempty"`
	PayloadOff        string         `json:"payload_off,omitempty"`
	Availability      []Availability `json:"availability,omitempty"`
	AvailabilityMode  string         `json:"availability_mode,omitempty"`
	Device            DeviceInfo     `json:"device"`
	Origin            map[string]any `json:"origin"`
	EntityCategory    string         `json:"entity_category,omitempty"`
	SuggestedDisplayP int            `json:"suggested_display_precision,omitempty"`
}

// Message is one retained discovery message.
type Message struct {
	Topic   string
	Payload []byte
}

// NodeID is the discovery node id of a device: Home Assistant allows [a-zA-Z0-9_-] there,
// device ids also '.', so '_' is doubled and '.' written "_d" (injective: two devices never
// share a node).
func NodeID(device string) string {
	return "outpost_" + strings.NewReplacer("_", "__", ".", "_d").Replace(device)
}

// sensor describes one entity: which device topic it reads and the template for its value.
type sensor struct {
	component, object, name string
	leaf                    string // device topic leaf it reads
	template                string
	unit, devClass, icon    string
	stateClass              string
	precision               int
	online                  bool // the presence entity: no availability of its own
}

// The entities of every device. Templates read JSON fields of wire.Health, wire.State and
// wire.ResultBatch (a test checks each field exists).
var sensors = []sensor{
	{component: "sensor", object: "inference_rate", name: "Inference rate", leaf: wire.LeafHealth, template: "{{ value_json.inferences_per_s }}", unit: "inferences/s", stateClass: "measurement", icon: "mdi:speedometer", precision: 1},
	{component: "sensor", object: "latency_p99", name: "Inference latency p99", leaf: wire.LeafHealth, template: "{{ value_json.latency_p99_ms }}", unit: "ms", devClass: "duration", stateClass: "measurement", precision: 1},
	{component: "sensor", object: "buffered", name: "Buffered results", leaf: wire.LeafHealth, template: "{{ value_json.buffered }}", unit: "results", stateClass: "measurement", icon: "mdi:tray-full"},
	{component: "sensor", object: "cpu", name: "CPU", leaf: wire.LeafHealth, template: "{{ value_json.cpu_percent }}", unit: "%", stateClass: "measurement", icon: "mdi:cpu-64-bit", precision: 0},
	// Absent on boards without a thermal zone: None leaves the sensor unknown.
	{component: "sensor", object: "temperature", name: "SoC temperature", leaf: wire.LeafHealth, template: "{{ value_json.soc_temp_c | default(None) }}", unit: "°C", devClass: "temperature", stateClass: "measurement", precision: 1},
	{component: "sensor", object: "model", name: "Model", leaf: wire.LeafHealth, template: "{{ value_json.model.name }}@{{ value_json.model.version }}", icon: "mdi:brain"},
	// The latest outcome: the last result of each uncompressed batch the device sends.
	{component: "sensor", object: "outcome", name: "Latest outcome", leaf: wire.LeafResults, template: "{{ value_json.results[-1].label if value_json.results else None }}", icon: "mdi:label-outline"},
	{component: "sensor", object: "score", name: "Latest score", leaf: wire.LeafResults, template: "{{ value_json.results[-1].score if value_json.results else None }}", stateClass: "measurement", precision: 3},
	{component: "binary_sensor", object: "online", name: "Online", leaf: wire.LeafState, template: "{{ value_json.state }}", devClass: "connectivity", online: true},
}

// Discovery returns the retained config messages announcing device under prefix.
func Discovery(prefix, device string) ([]Message, error) {
	if err := wire.ValidDeviceID(device); err != nil {
		return nil, err
	}
	if prefix == "" || strings.ContainsAny(prefix, "+#") {
		return nil, fmt.Errorf("home assistant discovery prefix %q: must be a non-empty topic without wildcards", prefix)
	}
	node := NodeID(device)
	avail := []Availability{{
		Topic:               wire.DeviceTopic(device, wire.LeafState),
		ValueTemplate:       "{{ value_json.state }}",
		PayloadAvailable:    wire.StateOnline,
		PayloadNotAvailable: wire.StateOffline,
	}}
	out := make([]Message, 0, len(sensors))
	for _, s := range sensors {
		c := Config{
			Name:              s.name,
			UniqueID:          node + "_" + s.object,
			ObjectID:          node + "_" + s.object,
			StateTopic:        wire.DeviceTopic(device, s.leaf),
			ValueTemplate:     s.template,
			Unit:              s.unit,
			DeviceClass:       s.devClass,
			StateClass:        s.stateClass,
			Icon:              s.icon,
			SuggestedDisplayP: s.precision,
			Device:            DeviceInfo{Identifiers: []string{node}, Name: device, Manufacturer: "Outpost", Model: "outpost-agent"},
			Origin:            map[string]any{"name": "Outpost", "support_url": "https://github.com/outpost-ml/outpost"},
		}
		if s.online {
			c.PayloadOn, c.PayloadOff = wire.StateOnline, wire.StateOffline
		} else {
			c.Availability = avail
		}
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		out = append(out, Message{Topic: prefix + "/" + s.component + "/" + node + "/" + s.object + "/config", Payload: b})
	}
	return out, nil
}

// Fleet lists the devices to announce (fleet.Controller satisfies it).
type Fleet interface {
	Devices() []fleet.DeviceStatus
}

// Options configure Run.
type Options struct {
	BrokerURL, Username, Password string
	ClientID                      string // default "outpost-controller-ha"
	Prefix                        string // default DefaultPrefix
	Fleet                         Fleet
	// Interval is how often new devices are looked for; default 5 s.
	Interval time.Duration
	Logger   *slog.Logger
}

// Run publishes discovery configs until ctx ends: every known device's at each connection
// (the embedded broker keeps retained messages in memory only) and when Home Assistant
// announces it came online (its birth message on PREFIX/status), a new device's when it
// appears.
func Run(ctx context.Context, o Options) error {
	if o.Fleet == nil {
		return errors.New("home assistant: no fleet")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.ClientID == "" {
		o.ClientID = "outpost-controller-ha"
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &publisher{o: o, log: log, announced: map[string]bool{}, kick: make(chan struct{}, 1)}
	opts := paho.NewClientOptions().SetStore(pahostore.New()).AddBroker(o.BrokerURL).SetClientID(o.ClientID).
		SetUsername(o.Username).SetPassword(o.Password).SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(2 * time.Second).
		SetOnConnectHandler(func(c paho.Client) {
			p.reset()
			c.Subscribe(o.Prefix+"/status", 0, func(_ paho.Client, m paho.Message) {
				if string(m.Payload()) == "online" { // Home Assistant restarted: it forgot non-retained state
					p.reset()
				}
			})
		})
	client := paho.NewClient(opts)
	client.Connect() // retries in the background (SetConnectRetry)
	defer client.Disconnect(250)
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for {
		if client.IsConnectionOpen() {
			p.announce(ctx, client)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-p.kick:
		}
	}
}

type publisher struct {
	o   Options
	log *slog.Logger

	mu        sync.Mutex
	announced map[string]bool
	kick      chan struct{}
}

// reset forgets what was announced, so the next round publishes every device again.
func (p *publisher) reset() {
	p.mu.Lock()
	clear(p.announced)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *publisher) announce(ctx context.Context, c paho.Client) {
	for _, d := range p.o.Fleet.Devices() {
		p.mu.Lock()
		done := p.announced[d.ID]
		p.mu.Unlock()
		if done {
			continue
		}
		msgs, err := Discovery(p.o.Prefix, d.ID)
		if err != nil {
			p.log.Warn("home assistant discovery", "device", d.ID, "err", err)
			continue
		}
		ok := true
		for _, m := range msgs {
			tok := c.Publish(m.Topic, 1, true, m.Payload)
			select {
			case <-tok.Done():
			case <-ctx.Done():
				return
			}
			if tok.Error() != nil {
				p.log.Warn("home assistant discovery publish", "topic", m.Topic, "err", tok.Error())
				ok = false
				break
			}
		}
		if ok {
			p.mu.Lock()
			p.announced[d.ID] = true
			p.mu.Unlock()
			p.log.Info("announced device to home assistant", "device", d.ID, "entities", len(msgs))
		}
	}
}
