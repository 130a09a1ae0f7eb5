package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestSecondAgentRefused: a second agent on a data dir in use exits with one line naming the
// holder's pid (exit code 1: the command line is fine), and leaves the running agent's files
// alone, its compaction file included.
func TestSecondAgentRefused(t *testing.T) {
	broker := startBroker(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	args := []string{"--broker", broker, "--id", "dev-lock", "--model", sampleModel, "--allow-unsigned", "--data-dir", dataDir}
	first := exec.Command(binary, args...)
	firstErr := &syncBuffer{}
	first.Stderr = firstErr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		first.Process.Signal(os.Interrupt)
		first.Wait()
	}()
	eventually(t, "first agent running", func() bool { return strings.Contains(firstErr.String(), "outpost-agent starting") })
	compact := filepath.Join(dataDir, assemble.BufferFile+".compact")
	if err := os.WriteFile(compact, []byte("the running agent's compaction"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runAgent(t, args...)
	want := fmt.Sprintf("pid %d", first.Process.Pid)
	if code != 1 || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("second agent: exit %d, stderr %q; want exit 1 and one line naming %s", code, stderr, want)
	}
	if _, err := os.Stat(compact); err != nil {
		t.Fatalf("second agent removed the running agent's compaction file: %v", err)
	}
}

// TestCorruptBufferStartsFresh: an agent whose buffer.db was truncated (an SD card that lost
// its tail) used to crash on every start, inside bbolt, with exit code 2. Now it moves the
// file aside, starts a fresh buffer, runs the model and delivers results, and reports the
// replacement in health and as an event.
func TestCorruptBufferStartsFresh(t *testing.T) {
	broker := startBroker(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dataDir, assemble.BufferFile)
	b, err := boltbuf.Open(path, boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		rs := make([]wire.Result, 100)
		for j := range rs {
			rs[j] = wire.Result{Time: time.Unix(int64(i*100+j), 0), Model: "m@1", Score: 0.5, Outputs: []float32{0.5}}
		}
		if err := b.Append(rs); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data[:len(data)/2/4096*4096], 0o600); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var health *wire.Health
	var events []wire.Event
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("ctl").SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	subs := map[string]paho.MessageHandler{
		wire.DeviceTopic("dev-c", wire.LeafResults): func(c paho.Client, m paho.Message) {
			var b wire.ResultBatch
			if wire.Decode(m.Payload(), &b) == nil && len(b.Results) > 0 {
				ack, _ := wire.Encode(&wire.Ack{Seq: b.Results[len(b.Results)-1].Seq, Epoch: b.Epoch})
				c.Publish(wire.ControllerTopic("dev-c", wire.LeafAck), 1, false, ack)
			}
		},
		wire.DeviceTopic("dev-c", wire.LeafHealth): func(_ paho.Client, m paho.Message) {
			var h wire.Health
			if wire.Decode(m.Payload(), &h) == nil {
				mu.Lock()
				health = &h
				mu.Unlock()
			}
		},
		wire.DeviceTopic("dev-c", wire.LeafEvents): func(_ paho.Client, m paho.Message) {
			var e wire.Event
			if wire.Decode(m.Payload(), &e) == nil {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
		},
	}
	for topic, h := range subs {
		if tok := c.Subscribe(topic, 1, h); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	stderr, wait := startAgent(t, "--broker", broker, "--id", "dev-c", "--model", sampleModel, "--allow-unsigned",
		"--sensor", "sim:vibration?seed=5", "--data-dir", dataDir, "--health-interval", "200ms")
	eventually(t, "fresh buffer running, acked and reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return health != nil && health.AckedSeq >= 2 && health.BufferRecovered != "" && len(events) > 0
	})
	if code := wait(os.Interrupt); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if events[0].Kind != wire.EventBufferRecovered || !strings.Contains(health.BufferRecovered, "corrupt-") {
		t.Fatalf("event %+v, buffer_recovered %q", events[0], health.BufferRecovered)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 1 {
		t.Fatalf("damaged files kept: %v, want 1", m)
	}
	t.Logf("health: %s", health.BufferRecovered)
}

// TestRolledBackBufferRenewsEpoch: the data dir goes back to an older copy of buffer.db (a
// restored image, a card that dropped its last writes). The agent reuses seqs the real
// controller already stored; the controller's ack is beyond the agent's last seq, so the agent
// opens a new epoch and the results it made since the restore are stored there, none of them
// discarded as duplicates.
func TestRolledBackBufferRenewsEpoch(t *testing.T) {
	b := fleetBroker(t)
	storeDir := t.TempDir()
	ctl, stopCtl := fleetController(t, b, storeDir)
	dataDir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dataDir, assemble.BufferFile)
	args := []string{"--broker", b.URL(), "--id", "roll-1", "--model", sampleModel, "--allow-unsigned",
		"--sensor", "sim:vibration?seed=5", "--data-dir", dataDir, "--health-interval", "100ms"}

	_, wait := startAgent(t, args...)
	pollUntil(t, "first results stored", 20*time.Second, func() bool { return deviceStatus(ctl, "roll-1").Acked >= 5 })
	if code := wait(os.Interrupt); code != 0 {
		t.Fatalf("exit %d", code)
	}
	snapshot, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first := deviceStatus(ctl, "roll-1").Acked

	_, wait = startAgent(t, args...)
	pollUntil(t, "more results stored", 30*time.Second, func() bool { return deviceStatus(ctl, "roll-1").Acked >= first+12 })
	if code := wait(os.Interrupt); code != 0 {
		t.Fatalf("exit %d", code)
	}
	high := deviceStatus(ctl, "roll-1").Acked
	if err := os.WriteFile(path, snapshot, 0o600); err != nil { // back to the older state
		t.Fatal(err)
	}
	buf, err := boltbuf.Open(path, boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	oldEpoch, restoredLast := buf.Epoch(), buf.Stats().LastSeq
	buf.Close()
	if restoredLast >= high {
		t.Fatalf("restored last seq %d, controller high %d: the test needs a rollback", restoredLast, high)
	}

	restart := time.Now()
	stderr, wait := startAgent(t, args...)
	pollUntil(t, "new epoch stored", 30*time.Second, func() bool {
		s := deviceStatus(ctl, "roll-1")
		return s.Health != nil && s.Health.EpochRenewals == 1 && s.Health.AckedSeq >= 5 && s.Acked >= 5 && s.Acked < high
	})
	if code := wait(os.Interrupt); code != 0 {
		t.Fatalf("agent exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr.String(), "never assigned") {
		t.Fatalf("no warning about the rolled-back buffer:\n%s", stderr)
	}
	stopCtl()

	store, err := boltstore.Open(storeDir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	st, err := store.ResultStats(ctx, "roll-1")
	if err != nil || st.Epoch == oldEpoch || st.Epoch == 0 {
		t.Fatalf("current epoch %+v, %v; want a new one (old %d)", st, err, oldEpoch)
	}
	rs, err := store.EpochResults(ctx, "roll-1", st.Epoch, 0, 1<<20)
	if err != nil || len(rs) < 5 {
		t.Fatalf("new epoch holds %d results, %v", len(rs), err)
	}
	for i, r := range rs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("new epoch: result %d has seq %d, want %d", i, r.Seq, i+1)
		}
	}
	// The first result of the new epoch is the first one made after the restore: the results
	// that reused old seqs were not lost as duplicates.
	if rs[0].Time.Before(restart.Add(-time.Second)) {
		t.Fatalf("new epoch starts with a result from %v, before the restart at %v", rs[0].Time, restart)
	}
	buf, err = boltbuf.Open(path, boltbuf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	if bs := buf.Stats(); bs.EpochRenewals != 1 || bs.Epoch != st.Epoch {
		t.Fatalf("buffer after the run: %+v; want 1 renewal into epoch %d", bs, st.Epoch)
	}
	t.Logf("old epoch %d stored through %d; restored to %d; new epoch %d holds %d", oldEpoch, high, restoredLast, st.Epoch, len(rs))
}
