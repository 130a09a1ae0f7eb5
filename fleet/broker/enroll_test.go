package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func TestEnrollConnectRules(t *testing.T) {
	sess := strings.Repeat("a1", 16)
	for _, tc := range []struct {
		name     string
		enroll   bool
		clientID string
		will     string
		wantOK   bool
	}{
		{"session", true, sess, "", true},
		{"enrollment off", false, sess, "", false},
		{"client id not a session", true, "dev-1", "", false},
		{"upper-case session", true, strings.ToUpper(sess), "", false},
		{"will", true, sess, wire.EnrollRequestTopic(sess), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, broker.Options{Enrollment: tc.enroll, Strict: true})
			_, err := connect(t, b, tc.clientID, wire.EnrollUser, "", tc.will)
			if (err == nil) != tc.wantOK {
				t.Errorf("connect: %v, want ok=%v", err, tc.wantOK)
			}
		})
	}
}

// TestEnrollIsolation: an enrollment login reaches its own request and response topics only;
// it cannot publish device topics or read another session's response, and observers (who
// may read outpost/#) never see a response.
func TestEnrollIsolation(t *testing.T) {
	b := startBroker(t, broker.Options{Enrollment: true}) // not strict: observers allowed
	user, pass := b.ControllerCredentials()
	ctl, err := connect(t, b, user, user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	ctl.subscribe(t, wire.EnrollRequestWildcard)
	ctl.subscribe(t, "outpost/#")
	obs, err := connect(t, b, "observer:1", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if q := obs.subscribe(t, "outpost/#"); q != 1 {
		t.Fatalf("observer outpost/# granted %#x", q)
	}
	if q := obs.subscribe(t, wire.EnrollRoot+"/#"); q != 0x80 {
		t.Errorf("observer subscribe to enrollment topics granted %#x, want refused", q)
	}
	sa, sb := strings.Repeat("a", 32), strings.Repeat("b", 32)
	a, err := connect(t, b, sa, wire.EnrollUser, "", "")
	if err != nil {
		t.Fatal(err)
	}
	bb, err := connect(t, b, sb, wire.EnrollUser, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		filter string
		want   byte
	}{
		{wire.EnrollResponseTopic(sa), 1},
		{wire.EnrollResponseTopic(sb), 0x80},
		{wire.EnrollRoot + "/+/resp", 0x80},
		{wire.EnrollRoot + "/#", 0x80},
		{wire.EnrollRequestTopic(sa), 0x80},
		{"#", 0x80},
		{wire.ControllerTopic("dev-1", "#"), 0x80},
	} {
		if got := a.subscribe(t, tc.filter); got != tc.want {
			t.Errorf("enrollee subscribe %s granted %#x, want %#x", tc.filter, got, tc.want)
		}
	}
	bb.subscribe(t, wire.EnrollResponseTopic(sb))

	if err := a.publish(t, wire.EnrollRequestTopic(sa), "req-a", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "controller to get a's request", func() bool { return len(ctl.messages(wire.EnrollRequestTopic(sa))) == 1 })
	for _, topic := range []string{wire.EnrollResponseTopic(sb), wire.EnrollResponseTopic(sa)} {
		if err := ctl.publish(t, topic, "secret-for-"+topic, 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "each session to get its own response", func() bool {
		// paho hands a message to every local handler whose filter matches, refused ones
		// included, so a may record its one response more than once.
		return len(a.messages(wire.EnrollResponseTopic(sa))) >= 1 && len(bb.messages(wire.EnrollResponseTopic(sb))) == 1
	})
	if got := a.messages(wire.EnrollResponseTopic(sb)); len(got) != 0 {
		t.Errorf("session a read b's response: %v", got)
	}

	// Publishing as a device (QoS 0 is dropped, QoS 1 disconnects) or as another session.
	forged := []string{wire.DeviceTopic("dev-1", wire.LeafHealth), wire.EnrollRequestTopic(sb), wire.EnrollResponseTopic(sb)}
	for _, topic := range forged {
		_ = a.publish(t, topic, "forged", 0)
	}
	_ = a.publish(t, forged[0], "forged", 1)
	select {
	case <-a.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("enrollee publishing a device topic was not disconnected")
	}
	marker := wire.DeviceTopic("marker", "x")
	if err := ctl.publish(t, marker, "m", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "marker", func() bool { return len(ctl.messages(marker)) == 1 && len(obs.messages(marker)) == 1 })
	for _, topic := range forged {
		if got := ctl.messages(topic); len(got) != 0 {
			t.Errorf("forged publish on %s reached the controller: %v", topic, got)
		}
	}
	if got := bb.messages(wire.EnrollResponseTopic(sb)); len(got) != 1 {
		t.Errorf("session b got %d responses, want only the controller's", len(got))
	}
	obs.mu.Lock()
	for topic := range obs.got {
		if strings.HasPrefix(topic, wire.EnrollRoot) {
			t.Errorf("observer saw enrollment topic %s", topic)
		}
	}
	obs.mu.Unlock()
}
