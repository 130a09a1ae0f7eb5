package wire

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTopics(t *testing.T) {
	if got, want := DeviceTopic("dev-1", LeafHealth), "outpost/v1/d/dev-1/health"; got != want {
		t.Errorf("DeviceTopic = %q, want %q", got, want)
	}
	if got, want := ControllerTopic("dev-1", LeafAck), "outpost/v1/c/dev-1/ack"; got != want {
		t.Errorf("ControllerTopic = %q, want %q", got, want)
	}
	if got, want := DeviceWildcard(LeafResults), "outpost/v1/d/+/results"; got != want {
		t.Errorf("DeviceWildcard = %q, want %q", got, want)
	}
}

func TestParseDeviceTopic(t *testing.T) {
	tests := []struct {
		topic     string
		dev, leaf string
		ok        bool
	}{
		{"outpost/v1/d/dev-1/health", "dev-1", "health", true},
		{"outpost/v1/d/a.b_c-9/results", "a.b_c-9", "results", true},
		{"outpost/v1/d/dev-1/health/extra", "", "", false},
		{"outpost/v1/d/dev-1/", "", "", false},
		{"outpost/v1/d/dev-1", "", "", false},
		{"outpost/v1/d//health", "", "", false},
		{"outpost/v1/d/+/health", "", "", false},
		{"outpost/v1/d/#/health", "", "", false},
		{"outpost/v1/c/dev-1/ack", "", "", false},
		{"outpost/v2/d/dev-1/health", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		dev, leaf, ok := ParseDeviceTopic(tt.topic)
		if dev != tt.dev || leaf != tt.leaf || ok != tt.ok {
			t.Errorf("ParseDeviceTopic(%q) = %q, %q, %v; want %q, %q, %v", tt.topic, dev, leaf, ok, tt.dev, tt.leaf, tt.ok)
		}
	}
}

// FuzzParseTopics feeds arbitrary topics, as any MQTT client may publish, to the topic
// parsers: whatever one accepts names a valid device (or enrollment session) and builds back
// to the same topic, so a crafted topic can never be read as another device's.
func FuzzParseTopics(f *testing.F) {
	for _, seed := range []string{
		"outpost/v1/d/dev-1/health", "outpost/v1/d/a.b_c-9/results", "outpost/v1/d/dev-1/health/x",
		"outpost/v1/d//health", "outpost/v1/d/+/health", "outpost/v1/c/dev-1/ack",
		EnrollRequestTopic(strings.Repeat("a1", EnrollSessionLen/2)), EnrollRoot + "//req", "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if dev, leaf, ok := ParseDeviceTopic(topic); ok {
			if ValidDeviceID(dev) != nil || leaf == "" || strings.Contains(leaf, "/") || DeviceTopic(dev, leaf) != topic {
				t.Fatalf("ParseDeviceTopic(%q) accepted device %q, leaf %q", topic, dev, leaf)
			}
		}
		if session, ok := ParseEnrollRequestTopic(topic); ok {
			if ValidEnrollSession(session) != nil || EnrollRequestTopic(session) != topic {
				t.Fatalf("ParseEnrollRequestTopic(%q) accepted session %q", topic, session)
			}
		}
	})
}

func TestValidDeviceID(t *testing.T) {
	for _, id := range []string{"a", "dev-1", "A.b_C-0", strings.Repeat("x", 64)} {
		if err := ValidDeviceID(id); err != nil {
			t.Errorf("ValidDeviceID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", strings.Repeat("x", 65), "a/b", "a+b", "a#b", "dev 1", "dév", "a\x00b"} {
		if err := ValidDeviceID(id); err == nil {
			t.Errorf("ValidDeviceID(%q) = nil, want an error", id)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("ValidDeviceID(%q) error is not one line: %q", id, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ts := time.Date(2026, 11, 27, 15, 30, 0, 123456789, time.UTC)
	batch := &ResultBatch{Device: "dev-1", DroppedThrough: 3, Results: []Result{
		{Seq: 4, Time: ts, Model: "m@1", Score: 0.25, Label: "normal", Outputs: []float32{0.25}, LatencyUs: 12},
		{Seq: 5, Time: ts, Model: "m@1", Score: 0.75, Label: "anomaly", Event: true},
	}}
	data, err := Encode(batch)
	if err != nil {
		t.Fatal(err)
	}
	if batch.V != SchemaVersion {
		t.Errorf("Encode left V = %d, want %d", batch.V, SchemaVersion)
	}
	var got ResultBatch
	if err := Decode(data, &got); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.Device != "dev-1" || got.DroppedThrough != 3 || len(got.Results) != 2 ||
		got.Results[0].Seq != 4 || !got.Results[0].Time.Equal(ts) || got.Results[0].Outputs[0] != 0.25 ||
		!got.Results[1].Event || got.Results[1].Label != "anomaly" {
		t.Errorf("round trip = %+v, want %+v", got, *batch)
	}

	for _, msg := range []any{&State{Device: "d", State: StateOnline, Time: ts}, &Health{Device: "d"}, &Ack{Seq: 9}} {
		data, err := Encode(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), `"v":1`) {
			t.Errorf("Encode(%T) = %s, want a \"v\":1 field", msg, data)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, data string
		want       string
		version    bool
	}{
		{"not json", `{"v":1,`, "unexpected end", false},
		{"missing version", `{"seq":3}`, `missing schema version "v"`, false},
		{"future version", `{"v":2,"seq":3}`, "unsupported schema version 2", true},
		{"wrong type", `{"v":1,"seq":"three"}`, "cannot unmarshal", false},
		{"negative seq", `{"v":1,"seq":-1}`, "cannot unmarshal", false},
		{"array", `[1,2]`, "cannot unmarshal", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Ack
			err := Decode([]byte(tt.data), &a)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode(%s) = %v, want an error containing %q", tt.data, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if errors.Is(err, ErrVersion) != tt.version {
				t.Errorf("errors.Is(err, ErrVersion) = %v, want %v", !tt.version, tt.version)
			}
		})
	}
}

// FuzzDecode feeds arbitrary payloads to every message type: Decode must return a value or an
// error, never panic, and whatever it accepts must encode again.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"v":1,"seq":7}`,
		`{"v":1,"device":"dev-1","state":"online","ts":"2026-11-27T15:30:00Z"}`,
		`{"v":1,"device":"dev-1","results":[{"seq":1,"ts":"2026-11-27T15:30:00Z","model":"m@1","score":0.5,"outputs":[0.5],"latency_us":3}],"dropped_through":0}`,
		`{"v":1,"device":"dev-1","model":{"name":"m","version":"1"},"uptime_s":1.5,"inferences":10}`,
		`{"v":2}`, `{}`, `null`, `{"v":1,"results":[null]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, msg := range []any{&State{}, &Health{}, &ResultBatch{}, &Ack{}} {
			if err := Decode(data, msg); err != nil {
				continue
			}
			if _, err := Encode(msg); err != nil {
				t.Fatalf("Decode accepted %q into %T but Encode fails: %v", data, msg, err)
			}
		}
	})
}
