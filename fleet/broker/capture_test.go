package broker_test

import (
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestCaptureLeafACL: the capture leaf and its ack follow the device rules like every leaf: a
// device publishes only its own captures and reads only its own capture acks.
func TestCaptureLeafACL(t *testing.T) {
	b := startBroker(t, broker.Options{})
	user, pass := b.ControllerCredentials()
	ctl, err := connect(t, b, user, user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	ctl.subscribe(t, wire.DeviceWildcard(wire.LeafCapture))
	dev, err := connect(t, b, "dev-a", "dev-a", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if q := dev.subscribe(t, wire.ControllerTopic("dev-a", wire.LeafCaptureAck)); q != 1 {
		t.Errorf("own capture ack subscription granted %#x, want 1", q)
	}
	if q := dev.subscribe(t, wire.ControllerTopic("dev-b", wire.LeafCaptureAck)); q != 0x80 {
		t.Errorf("another device's capture ack subscription granted %#x, want 0x80", q)
	}
	own := wire.DeviceTopic("dev-a", wire.LeafCapture)
	if err := dev.publish(t, own, "batch", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the device's own capture batch", func() bool { return len(ctl.messages(own)) == 1 })
	_ = dev.publish(t, wire.DeviceTopic("dev-b", wire.LeafCapture), "forged", 1)
	select {
	case <-dev.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("a device publishing another device's captures was not disconnected")
	}
	if got := ctl.messages(wire.DeviceTopic("dev-b", wire.LeafCapture)); len(got) != 0 {
		t.Errorf("forged captures reached the controller: %v", got)
	}
}
