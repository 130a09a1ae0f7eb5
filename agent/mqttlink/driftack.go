package mqttlink

import (
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// driftAckQueue bounds drift acks waiting for the agent. An ack that finds it full is
// dropped: the summary stays queued, is resent, and is acked again.
const driftAckQueue = 16

// DriftAcks delivers the controller's acks of drift summaries from c/{id}/drift-ack. The
// channel is never closed.
func (l *Link) DriftAcks() <-chan wire.DriftAck { return l.driftAcks }

// subscribeDriftAcks subscribes to the drift-ack topic; it runs in onConnect after every
// (re)connection, since the session is clean.
func (l *Link) subscribeDriftAcks(c mqtt.Client) {
	topic := wire.ControllerTopic(l.opts.DeviceID, wire.LeafDriftAck)
	if err := wait(c.Subscribe(topic, 1, l.onDriftAck), l.opts.ConnectTimeout); err != nil {
		l.log.Warn("mqtt subscribe; drift summaries will be resent until acked", "topic", topic, "err", err)
	}
}

// onDriftAck must not block.
func (l *Link) onDriftAck(_ mqtt.Client, m mqtt.Message) {
	var a wire.DriftAck
	if err := wire.Decode(m.Payload(), &a); err != nil || len(a.IDs) > wire.MaxDriftAckIDs {
		return
	}
	select {
	case l.driftAcks <- a:
	default:
	}
}
