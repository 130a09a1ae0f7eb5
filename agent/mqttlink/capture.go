package mqttlink

import (
	"sync"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// captureAcks is the capture path's ack hand-off (c/{id}/capture.ack): a channel of one that
// keeps the highest seq, like the results' acks. The capture buffer filters by its own epoch.
type captureAcks struct {
	ch  chan wire.Ack
	mu  sync.Mutex
	bad atomic.Uint64
}

func (l *Link) subscribeCapture(c mqtt.Client) {
	topic := wire.ControllerTopic(l.opts.DeviceID, wire.LeafCaptureAck)
	if err := wait(c.Subscribe(topic, 1, l.onCaptureAck), l.opts.ConnectTimeout); err != nil {
		l.log.Warn("mqtt subscribe; capture acks will not arrive and captures will be resent", "topic", topic, "err", err)
	}
}

// onCaptureAck must not block: it coalesces with an unread ack of the same epoch.
func (l *Link) onCaptureAck(_ mqtt.Client, m mqtt.Message) {
	var a wire.Ack
	if err := wire.Decode(m.Payload(), &a); err != nil {
		if l.capAcks.bad.Add(1) == 1 {
			l.log.Warn("ignoring malformed capture ack", "topic", m.Topic(), "err", err)
		}
		return
	}
	a.Rejected = nil // captures are refused whole, never one by one
	l.capAcks.mu.Lock()
	defer l.capAcks.mu.Unlock()
	for {
		select {
		case l.capAcks.ch <- a:
			return
		default:
		}
		select {
		case old := <-l.capAcks.ch:
			if old.Epoch == a.Epoch {
				a.Seq = max(a.Seq, old.Seq)
			}
		default:
		}
	}
}

// CaptureAcks delivers the controller's acks of capture batches (agent/capture's Link). The
// channel is never closed.
func (l *Link) CaptureAcks() <-chan wire.Ack { return l.capAcks.ch }
