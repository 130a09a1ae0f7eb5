package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// The labeller may publish on the feedback topic and do nothing else; devices and observers
// may not publish labels; a wrong labeller password is refused.
func TestLabeller(t *testing.T) {
	b := startBroker(t, broker.Options{LabellerPassword: "label-secret"})
	user, pass := b.ControllerCredentials()
	ctl, err := connect(t, b, "ctl", user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	if q := ctl.subscribe(t, wire.TopicFeedback); q != 1 {
		t.Fatalf("controller subscribe: %#x", q)
	}
	if _, err := connect(t, b, "lab-bad", broker.DefaultLabellerUser, "wrong", ""); err == nil {
		t.Error("wrong labeller password accepted")
	}
	lab, err := connect(t, b, "lab", broker.DefaultLabellerUser, "label-secret", "")
	if err != nil {
		t.Fatalf("labeller: %v", err)
	}
	if q := lab.subscribe(t, "outpost/#"); q != 0x80 {
		t.Errorf("labeller subscribe outpost/#: %#x, want refused", q)
	}
	if err := lab.publish(t, wire.TopicFeedback, `{"v":1,"labels":[]}`, 1); err != nil {
		t.Fatalf("labeller publish feedback: %v", err)
	}
	waitFor(t, "the label at the controller", func() bool { return len(ctl.messages(wire.TopicFeedback)) == 1 })
	// Anything else the labeller publishes is dropped (QoS 0, so the session survives to try).
	lab.publish(t, wire.DeviceTopic("pump-1", wire.LeafResults), "x", 0)
	lab.publish(t, wire.TopicAlerts, "x", 0)
	// A device and an observer cannot label.
	dev, err := connect(t, b, "pump-1", "pump-1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	dev.publish(t, wire.TopicFeedback, "from-device", 0)
	obs, err := connect(t, b, "observer-1x", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	obs.publish(t, wire.TopicFeedback, "from-observer", 0)
	if err := lab.publish(t, wire.TopicFeedback, "last", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second label", func() bool { return len(ctl.messages(wire.TopicFeedback)) == 2 })
	time.Sleep(100 * time.Millisecond)
	if got := ctl.messages(wire.TopicFeedback); len(got) != 2 || strings.Contains(strings.Join(got, ","), "from-") {
		t.Errorf("feedback topic carried %q", got)
	}
	if q := ctl.subscribe(t, wire.TopicAlerts); q != 1 {
		t.Fatal("controller subscribe alerts")
	}
	if n := len(ctl.messages(wire.TopicAlerts)); n != 0 {
		t.Errorf("the labeller published %d alerts", n)
	}
}

// Without a labeller password the labeller's name is just a device id (and needs no password
// when devices are unchecked): it gets a device's rights, not a labeller's.
func TestNoLabeller(t *testing.T) {
	b := startBroker(t, broker.Options{})
	user, pass := b.ControllerCredentials()
	ctl, err := connect(t, b, "ctl", user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	ctl.subscribe(t, wire.TopicFeedback)
	lab, err := connect(t, b, broker.DefaultLabellerUser, broker.DefaultLabellerUser, "", "")
	if err != nil {
		t.Fatal(err)
	}
	lab.publish(t, wire.TopicFeedback, "x", 0)
	time.Sleep(200 * time.Millisecond)
	if n := len(ctl.messages(wire.TopicFeedback)); n != 0 {
		t.Errorf("%d labels from a client without the labeller role", n)
	}
}
