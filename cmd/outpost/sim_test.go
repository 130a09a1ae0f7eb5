package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// startSimController runs an in-process `outpost serve` (embedded broker, bbolt store), with
// device secrets checked when auth is set.
func startSimController(t *testing.T, auth bool) *fleetServer {
	t.Helper()
	srv, err := newFleetServer(serveConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Strict: true, credentialConfig: credentialConfig{DeviceAuth: auth}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("controller: %v", err)
		}
	})
	return srv
}

// storedFor sums what the controller stored for the devices (current epochs).
func storedFor(t *testing.T, srv *fleetServer, ids []string) uint64 {
	t.Helper()
	var n uint64
	for _, id := range ids {
		st, err := srv.Store.ResultStats(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Stored
	}
	return n
}

// TestSimWire: --wire devices log in with secrets from a credentials file (one of them
// wrong), every result they produce is acknowledged and stored exactly once.
func TestSimWire(t *testing.T) {
	t.Parallel()
	srv := startSimController(t, true)
	var lines []string
	var ids []string
	for i := 1; i <= 20; i++ {
		id := fmt.Sprintf("w-%02d", i)
		secret, err := srv.Creds.Issue(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if i == 20 {
			secret = "wrong"
		} else {
			ids = append(ids, id)
		}
		lines = append(lines, id+","+secret)
	}
	file := filepath.Join(t.TempDir(), "creds.csv")
	if err := os.WriteFile(file, []byte("id,secret\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := runSim(context.Background(), simConfig{Devices: 20, Broker: srv.BrokerURL, Duration: 2 * time.Second, Rate: 50, Credentials: file, Drain: 15 * time.Second, Wire: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", sum)
	if sum.Connected != 19 {
		t.Errorf("connected %d devices, want 19 (one has a wrong secret)", sum.Connected)
	}
	// 19 devices × 50/s × 2 s, give or take the last tick.
	if sum.Produced < 19*50*2*9/10 || sum.Acked != sum.Produced || sum.Unacked != 0 {
		t.Errorf("produced %d, acked %d, unacked %d: want about 1900, all acked", sum.Produced, sum.Acked, sum.Unacked)
	}
	if sum.LagSamples != int(sum.Acked) || sum.LagP99Ms <= 0 || sum.LagP99Ms < sum.LagP50Ms {
		t.Errorf("lag figures %+v do not cover every acked result", sum)
	}
	if got := storedFor(t, srv, ids); got != sum.Produced {
		t.Errorf("controller stored %d results, the devices produced %d", got, sum.Produced)
	}
}

// TestSimAgents runs real agents (open devices) and checks they were acked and stored.
func TestSimAgents(t *testing.T) {
	t.Parallel()
	srv := startSimController(t, false)
	sum, err := runSim(context.Background(), simConfig{Devices: 3, Broker: srv.BrokerURL, Duration: 3 * time.Second, Rate: 5, Prefix: "agent", Drain: 20 * time.Second, Model: defaultDemoModel})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", sum)
	if sum.Mode != "agents" || sum.Connected != 3 || sum.Produced == 0 || sum.Acked != sum.Produced {
		t.Errorf("summary %+v: want 3 connected agents, every result acked", sum)
	}
	// The agents keep producing while draining: the controller holds at least what counted.
	if got := storedFor(t, srv, []string{"agent-0001", "agent-0002", "agent-0003"}); got < sum.Produced {
		t.Errorf("controller stored %d results, the agents produced %d by the cutoff", got, sum.Produced)
	}
}

// TestSimIdle connects idle --wire devices and checks the controller sees them online.
func TestSimIdle(t *testing.T) {
	t.Parallel()
	srv := startSimController(t, false)
	done := make(chan simSummary, 1)
	go func() {
		sum, err := runSim(context.Background(), simConfig{Devices: 50, Broker: srv.BrokerURL, Duration: 4 * time.Second, Rate: 0, Prefix: "idle", Wire: true})
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	waitUntil(t, "50 idle devices online", 10*time.Second, func() bool {
		n := 0
		for _, d := range srv.Controller.Devices() {
			if d.Online && strings.HasPrefix(d.ID, "idle-") {
				n++
			}
		}
		return n == 50
	})
	if sum := <-done; sum.Connected != 50 || sum.Produced != 0 {
		t.Errorf("idle summary %+v", sum)
	}
}

func TestSimBadFlags(t *testing.T) {
	t.Parallel()
	for _, cfg := range []simConfig{
		{Devices: 0, Broker: "tcp://127.0.0.1:1", Duration: time.Second, Rate: 1},
		{Devices: 1, Broker: "tcp://127.0.0.1:1", Duration: 0, Rate: 1},
		{Devices: 1, Broker: "tcp://127.0.0.1:1", Duration: time.Second, Rate: 0},
		{Devices: maxSimAgents + 1, Broker: "tcp://127.0.0.1:1", Duration: time.Second, Rate: 1},
		{Devices: 1, Broker: "nope://x", Duration: time.Second, Rate: 1, Wire: true},
		{Devices: 1, Broker: "tcp://127.0.0.1:1", Duration: time.Second, Rate: 1, Wire: true, Prefix: "a/b"},
		{Devices: 3, Broker: "tcp://127.0.0.1:1", Duration: time.Second, Rate: 1, Wire: true, Credentials: "testdata/no-such-file"},
	} {
		_, err := runSim(context.Background(), cfg)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("runSim(%+v) = %v, want a one-line error", cfg, err)
		}
	}
}

func TestParseSimCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     []simCredential
		err      string
	}{
		{"csv", "id,secret\n# issued today\npump-1,abc\n pump-2, def\n", []simCredential{{"pump-1", "abc"}, {"pump-2", "def"}}, ""},
		{"csv without header", "pump-1,abc\n", []simCredential{{"pump-1", "abc"}}, ""},
		{"json array", `[{"id":"pump-1","secret":"abc"}]`, []simCredential{{"pump-1", "abc"}}, ""},
		{"json object", `{"b":"2","a":"1"}`, []simCredential{{"a", "1"}, {"b", "2"}}, ""},
		{"empty", "  \n", nil, "empty file"},
		{"bad id", "pump/1,abc\n", nil, "not allowed"},
		{"empty secret", "pump-1,\n", nil, "empty secret"},
		{"twice", "a,1\na,2\n", nil, "listed twice"},
		{"three fields", "a,1,x\n", nil, "wrong number of fields"},
		{"bad json", `[{"id":1}]`, nil, "cannot unmarshal"},
	} {
		got, err := parseSimCredentials([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func FuzzParseSimCredentials(f *testing.F) {
	f.Add([]byte("id,secret\npump-1,abc\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		creds, err := parseSimCredentials(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, c := range creds {
			if wire.ValidDeviceID(c.ID) != nil || c.Secret == "" || seen[c.ID] {
				t.Fatalf("accepted %+v", c)
			}
			seen[c.ID] = true
		}
	})
}
