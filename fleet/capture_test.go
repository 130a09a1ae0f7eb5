package fleet_test

import (
	"context"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestCaptureIngest: through the embedded broker, capture batches are stored and acked; a batch
// sent again is acked again and stored once; a malformed one is counted and not acked.
// Retention is not the ingest loop's (TestRetention).
func TestCaptureIngest(t *testing.T) {
	b := startBroker(t)
	store, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	user, pass := b.ControllerCredentials()
	c, err := fleet.New(fleet.Options{Store: store, BrokerURL: b.URL(), Username: user, Password: pass,
		RetryInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "controller to connect", c.Connected)

	const id = "cap-dev"
	var mu sync.Mutex
	var acks []wire.Ack
	cl := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetUsername(id).SetConnectTimeout(5 * time.Second))
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer cl.Disconnect(100)
	tok := cl.Subscribe(wire.ControllerTopic(id, wire.LeafCaptureAck), 1, func(_ paho.Client, m paho.Message) {
		var a wire.Ack
		if err := wire.Decode(m.Payload(), &a); err != nil {
			t.Errorf("bad capture ack: %v", err)
			return
		}
		mu.Lock()
		acks = append(acks, a)
		mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	send := func(payload []byte) {
		t.Helper()
		if tok := cl.Publish(wire.DeviceTopic(id, wire.LeafCapture), 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	batch := func(seqs ...uint64) []byte {
		t.Helper()
		cb := &wire.CaptureBatch{Device: id, Epoch: 77}
		for _, s := range seqs {
			cb.Items = append(cb.Items, wire.CaptureItem{Seq: s, Time: time.Unix(int64(s), 0).UTC(), Reason: wire.CaptureDrift,
				Channels: []string{"accel"}, Shape: []int{2, 1}, Values: []float32{float32(s), -1},
				Result: wire.Result{Seq: s, Time: time.Unix(int64(s), 0).UTC(), Model: "vib@1.0.0", Score: 0.5}})
		}
		p, err := wire.EncodeCaptureBatch(cb, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	waitAcks := func(n int, seq uint64) {
		t.Helper()
		waitFor(t, "capture acks", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acks) >= n
		})
		mu.Lock()
		defer mu.Unlock()
		if a := acks[n-1]; a.Seq != seq || a.Epoch != 77 {
			t.Fatalf("ack %d = %+v, want seq %d epoch 77", n, a, seq)
		}
	}
	send(batch(1, 2))
	waitAcks(1, 2)
	send(batch(1, 2)) // the ack was lost, say: sent again
	waitAcks(2, 2)
	send([]byte(`{"v":1,"device":"cap-dev","items":[]}`)) // malformed: not acked
	send(batch(3, 4, 5))
	waitAcks(3, 5)
	st := c.CaptureStats()
	if st.Stored != 5 || st.Duplicates != 2 || st.Batches != 3 {
		t.Errorf("capture stats %+v, want 5 stored, 2 duplicates, 3 batches", st)
	}
	page, err := store.Captures(context.Background(), fleet.CaptureQuery{Device: id})
	if err != nil || len(page.Items) != 5 || page.Items[0].Seq != 1 {
		t.Fatalf("stored %d captures (%v), want seqs 1..5", len(page.Items), err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acks) != 3 {
		t.Errorf("%d acks, want 3 (the malformed batch is not acked)", len(acks))
	}
}
