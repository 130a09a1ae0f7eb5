package broker_test

import (
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestFetchACL: a device can neither ask for blocks in another device's name (publish on its
// d/{id}/fetch) nor read another device's blocks or desired state (subscribe to its
// c/{id}/chunk or c/{id}/desired, directly or by wildcard). See also fleet/blobserve's
// TestDevicesSeeOnlyTheirBlocks, which runs the answering side on top.
func TestFetchACL(t *testing.T) {
	for _, strict := range []bool{false, true} {
		b := startBroker(t, broker.Options{Strict: strict})
		user, pass := b.ControllerCredentials()
		ctl, err := connect(t, b, "ctl", user, pass, "")
		if err != nil {
			t.Fatalf("controller connect: %v", err)
		}
		if q := ctl.subscribe(t, wire.DeviceWildcard(wire.LeafFetch)); q != 1 {
			t.Fatalf("controller subscribe granted %#x", q)
		}
		dev, err := connect(t, b, "dev-a", "dev-a", "", "")
		if err != nil {
			t.Fatalf("device connect: %v", err)
		}
		for _, tt := range []struct {
			filter string
			want   byte
		}{
			{wire.ControllerTopic("dev-a", wire.LeafChunk), 1},
			{wire.ControllerTopic("dev-a", wire.LeafDesired), 1},
			{wire.ControllerTopic("dev-b", wire.LeafChunk), 0x80},
			{wire.ControllerTopic("dev-b", wire.LeafDesired), 0x80},
			{"outpost/v1/c/+/chunk", 0x80},
			{"outpost/v1/c/#", 0x80},
			{"outpost/v1/+/dev-b/chunk", 0x80},
			{"outpost/#", 0x80},
		} {
			if got := dev.subscribe(t, tt.filter); got != tt.want {
				t.Errorf("strict=%v: device subscribe %s granted %#x, want %#x", strict, tt.filter, got, tt.want)
			}
		}
		// The controller's blocks for dev-b never reach dev-a, whatever it subscribed to.
		if err := ctl.publish(t, wire.ControllerTopic("dev-b", wire.LeafChunk), "secret", 1); err != nil {
			t.Fatal(err)
		}
		// Its own fetch requests reach the controller; one in dev-b's name does not, and costs
		// it the connection (QoS 1).
		own := wire.DeviceTopic("dev-a", wire.LeafFetch)
		if err := dev.publish(t, own, "mine", 1); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the device's own request", func() bool { return len(ctl.messages(own)) == 1 })
		forged := wire.DeviceTopic("dev-b", wire.LeafFetch)
		_ = dev.publish(t, forged, "forged", 1)
		select {
		case <-dev.lost:
		case <-time.After(5 * time.Second):
			t.Fatalf("strict=%v: device asking in another's name was not disconnected", strict)
		}
		marker := wire.DeviceTopic("marker", wire.LeafFetch)
		if err := ctl.publish(t, marker, "m", 1); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "marker", func() bool { return len(ctl.messages(marker)) == 1 })
		if got := ctl.messages(forged); len(got) != 0 {
			t.Errorf("strict=%v: a request in another device's name reached the controller: %v", strict, got)
		}
		dev.mu.Lock()
		got := dev.got
		dev.mu.Unlock()
		for topic, msgs := range got {
			if topic != wire.ControllerTopic("dev-a", wire.LeafChunk) && topic != wire.ControllerTopic("dev-a", wire.LeafDesired) {
				t.Errorf("strict=%v: device received %d messages on %s", strict, len(msgs), topic)
			}
		}
	}
}
