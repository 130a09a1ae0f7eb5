package mqttlink_test

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func TestDesiredAndBlocks(t *testing.T) {
	srv, broker := startBroker(t)
	const id = "dev-upd"
	desired := func(gen uint64) []byte {
		b, err := wire.Encode(&wire.Desired{Generation: gen, Model: &wire.DesiredModel{Name: "m", Version: "1.0.0", Target: "m-1.0.0.opkg"}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The retained desired state is there before the device connects.
	if err := srv.Publish(wire.ControllerTopic(id, wire.LeafDesired), desired(1), true, 1); err != nil {
		t.Fatal(err)
	}
	l := newLink(t, broker, id)
	l.Connect()
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	waitConnected(t, l, true)
	select {
	case d := <-l.Desired():
		if d.Generation != 1 || d.Model == nil || d.Model.Target != "m-1.0.0.opkg" {
			t.Fatalf("Desired() = %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no retained desired state within 10s")
	}

	// A reader that is behind gets the highest generation, whatever the arrival order; a
	// malformed message is counted and changes nothing.
	for _, p := range [][]byte{desired(3), []byte(`{"v":1,"generation":"x"}`), desired(2)} {
		if err := srv.Publish(wire.ControllerTopic(id, wire.LeafDesired), p, true, 1); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.BadDesired() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the other two handlers finish
	select {
	case d := <-l.Desired():
		if d.Generation != 3 {
			t.Errorf("Desired() after generations 3 and 2 = %d, want 3", d.Generation)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no desired state within 10s")
	}
	if l.BadDesired() != 1 {
		t.Errorf("BadDesired = %d, want 1", l.BadDesired())
	}

	// Block frames are handed over as they are; past BlockQueue unread ones are dropped.
	const sent = 70
	for i := range sent {
		frame := wire.EncodeBlock(nil, &wire.Block{ID: uint64(i), Size: 1, BlockSize: wire.DefaultBlockSize, Path: "meta/x", Data: []byte{byte(i)}})
		if err := srv.Publish(wire.ControllerTopic(id, wire.LeafChunk), frame, false, 1); err != nil {
			t.Fatal(err)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for uint64(len(l.Blocks()))+l.DroppedBlocks() < sent && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got, dropped := len(l.Blocks()), l.DroppedBlocks(); got != mqttlink.BlockQueue || dropped != sent-mqttlink.BlockQueue {
		t.Fatalf("held %d frames and dropped %d, want %d and %d", got, dropped, mqttlink.BlockQueue, sent-mqttlink.BlockQueue)
	}
	b, err := wire.DecodeBlock(<-l.Blocks())
	if err != nil || b.Path != "meta/x" {
		t.Errorf("frame from Blocks() = %+v, %v", b, err)
	}
}
