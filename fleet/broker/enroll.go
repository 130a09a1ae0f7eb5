package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Enrollment logins (wire/enroll.go): username wire.EnrollUser, client id a random session id.
// They need no password, since the token they carry is the controller's to judge and refuse
// with a reason, but they reach only their own session's request and response topics: no
// device topic, no other session's response, no last-will.

// admitEnrollee admits an enrollment login when Options.Enrollment is set.
func (h *aclHook) admitEnrollee(cl *mqtt.Client, pk packets.Packet) (bool, string) {
	switch {
	case !h.enroll:
		return false, "enrollment is off on this broker"
	case wire.ValidEnrollSession(cl.ID) != nil:
		return false, "enrollment client id is not a session id (32 lowercase hex)"
	case pk.Connect.WillFlag:
		return false, "enrollment logins may not set a last-will"
	}
	return true, ""
}

// enrolleeACL lets a session publish its request and subscribe to (and receive) its response,
// both by exact topic, so no wildcard filter can widen it.
func enrolleeACL(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return topic == wire.EnrollRequestTopic(cl.ID)
	}
	return topic == wire.EnrollResponseTopic(cl.ID)
}
