package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestViewsCLI runs `outpost devices`, `outpost device` and `outpost results` against a real
// `serve --http` fed by a device over MQTT.
func TestViewsCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := newFleetServer(serveConfig{Listen: "127.0.0.1:0", DataDir: dir, updateConfig: updateConfig{HTTPAddr: "127.0.0.1:0"},
		retentionConfig: retentionConfig{RetainResults: fleet.DefaultRetainResults}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
	})
	api := []string{"--server", "http://" + srv.APIAddr, "--token-file", filepath.Join(dir, "api-token")}

	acked := make(chan uint64, 100)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(srv.BrokerURL).SetClientID("pump-7").SetUsername("pump-7"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	c.Subscribe(wire.ControllerTopic("pump-7", wire.LeafAck), 1, func(_ paho.Client, m paho.Message) {
		var a wire.Ack
		if wire.Decode(m.Payload(), &a) == nil {
			acked <- a.Seq
		}
	}).WaitTimeout(5 * time.Second)
	now := time.Now().UTC()
	pub := func(leaf string, v any, retained bool) {
		p, _ := wire.Encode(v)
		c.Publish(wire.DeviceTopic("pump-7", leaf), 1, retained, p).WaitTimeout(5 * time.Second)
	}
	pub(wire.LeafState, &wire.State{Device: "pump-7", State: wire.StateOnline, Time: now}, true)
	pub(wire.LeafHealth, &wire.Health{V: 1, Device: "pump-7", Time: now, AgentVersion: "0.7.1", Model: wire.ModelRef{Name: "vib", Version: "1.0.0"},
		InferencesPerS: 25, LatencyP99Ms: 3.5}, true)
	batch := &wire.ResultBatch{Device: "pump-7"}
	for i := range 12 {
		batch.Results = append(batch.Results, wire.Result{Seq: uint64(i + 1), Time: now.Add(time.Duration(i-12) * time.Minute), Model: "vib@1.0.0",
			Score: 0.1 + float64(i)/10, Label: map[bool]string{true: "bearing", false: "normal"}[i >= 9], Event: i >= 9, LatencyUs: 1500})
	}
	deadline := time.After(10 * time.Second)
wait:
	for {
		pub(wire.LeafResults, batch, false) // the controller may still be subscribing
		select {
		case seq := <-acked:
			if seq == 12 {
				break wait
			}
		case <-deadline:
			t.Fatal("no ack within 10s")
		case <-time.After(200 * time.Millisecond):
		}
	}
	mustCLI(t, append([]string{"devices", "tag", "pump-7", "site=plant-a", "loc=Oslo,NO"}, api...)...)

	out := mustCLI(t, append([]string{"devices"}, api...)...)
	for _, want := range []string{"DEVICE", "pump-7", "vib@1.0.0", "0.7.1", "bearing 1.2 EVENT", "site=plant-a"} {
		if !strings.Contains(out, want) {
			t.Errorf("devices output lacks %q:\n%s", want, out)
		}
	}
	if out := mustCLI(t, append([]string{"devices", "--select", "site=elsewhere"}, api...)...); !strings.Contains(out, "no devices") {
		t.Errorf("devices --select site=elsewhere = %q, want no devices", out)
	}
	// One --select is one selector, commas included.
	if out := mustCLI(t, append([]string{"devices", "--select", "loc=Oslo"}, api...)...); !strings.Contains(out, "no devices") {
		t.Errorf("devices --select loc=Oslo = %q, want no devices", out)
	}
	var devs []httpapi.DeviceView
	if err := json.Unmarshal([]byte(mustCLI(t, append([]string{"devices", "--json", "--select", "site=plant-a", "--select", "loc=Oslo,NO"}, api...)...)), &devs); err != nil ||
		len(devs) != 1 || devs[0].LastHour.Events != 3 || devs[0].LastHour.Results != 12 {
		t.Errorf("devices --json = %+v, %v; want pump-7 with 12 results and 3 events in the last hour", devs, err)
	}

	out = mustCLI(t, append([]string{"device", "pump-7"}, api...)...)
	for _, want := range []string{"online", "yes", "site=plant-a", "12 stored", "model outputs, last hour", "vib@1.0.0", "normal=9", "bearing=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("device output lacks %q:\n%s", want, out)
		}
	}

	out = mustCLI(t, append([]string{"results", "pump-7", "--since", "1h", "--events"}, api...)...)
	if n := strings.Count(out, "bearing"); n != 3 || !strings.Contains(out, "SEQ") || strings.Contains(out, "normal") {
		t.Errorf("results --events: %d bearing rows, want 3:\n%s", n, out)
	}
	var rs []fleet.StoredResult
	if err := json.Unmarshal([]byte(mustCLI(t, append([]string{"results", "pump-7", "--since", "5m", "--json", "--limit", "2"}, api...)...)), &rs); err != nil ||
		len(rs) != 2 || rs[0].Result.Seq != 12 || rs[1].Result.Seq != 11 {
		t.Errorf("results --json --limit 2 = %+v, %v; want seqs 12, 11", rs, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"results", "nobody"}, "not found"},
		{[]string{"results", "pump-7", "--since", "yesterday"}, "RFC 3339"},
		{[]string{"results", "pump-7", "--limit", "0"}, "--limit"},
		{[]string{"device", "nobody"}, "not found"},
		{[]string{"devices", "--select", "site"}, "KEY=VALUE"},
	} {
		if _, err := cli(t, append(tc.args, api...)...); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("outpost %v = %v, want one line containing %q", tc.args, err, tc.want)
		}
	}
}

// TestDevicesTable pins the devices table's layout (testdata/views/devices.golden).
func TestDevicesTable(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	devs := []httpapi.DeviceView{
		{ID: "pump-7", Online: true, LastSeen: now.Add(-5 * time.Second), Tags: map[string]string{"site": "plant-a", "line": "2"},
			Model: wire.ModelRef{Name: "vib", Version: "1.0.0"}, AgentVersion: "0.7.1",
			Health:   &wire.Health{InferencesPerS: 25, LatencyP99Ms: 3.25},
			Latest:   &httpapi.LatestOutcome{Seq: 9, Label: "bearing", Score: 1.25, Event: true},
			LastHour: httpapi.OutputTotals{Results: 1500, Events: 12}},
		{ID: "fan-1", LastSeen: now.Add(-3 * time.Hour), Tags: map[string]string{}},
	}
	var b strings.Builder
	if err := printDevices(&b, devs, now); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "views", "devices.golden")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("devices table:\n%s\nwant (%s):\n%s", b.String(), golden, want)
	}
}

func TestFormatUpdate(t *testing.T) {
	for _, tc := range []struct {
		u    *wire.UpdateStatus
		want string
	}{
		{nil, "-"},
		{&wire.UpdateStatus{Phase: wire.PhaseIdle}, "idle"},
		{&wire.UpdateStatus{Phase: wire.PhaseDownloading, Target: wire.ModelRef{Name: "vib", Version: "1.1.0"}, Progress: 0.42, Rollout: "r3"}, "downloading vib@1.1.0 42% rollout r3"},
		{&wire.UpdateStatus{Phase: "rolled_back", Target: wire.ModelRef{Name: "vib", Version: "1.1.0"}, Reason: "p99 latency 3x"}, "rolled_back vib@1.1.0 (p99 latency 3x)"},
	} {
		if got := formatUpdate(tc.u); got != tc.want {
			t.Errorf("formatUpdate(%+v) = %q, want %q", tc.u, got, tc.want)
		}
	}
}
