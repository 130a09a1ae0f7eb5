package mqttlink

import (
	"sync"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// BlockQueue is how many block frames the link holds for its reader (at most 16 MiB at the
// largest block size). When it is full further frames are dropped and counted: the
// downloader asks again for what it lacks.
const BlockQueue = 64

// updates is what the link receives for model updates: block frames on c/{id}/chunk and the
// desired state on c/{id}/desired.
type updates struct {
	blocks        chan []byte
	droppedBlocks atomic.Uint64

	desired    chan wire.Desired // capacity 1, holds the highest generation not yet read
	desiredMu  sync.Mutex        // serializes hand-off so coalescing keeps the highest
	badDesired atomic.Uint64
}

func newUpdates() updates {
	return updates{blocks: make(chan []byte, BlockQueue), desired: make(chan wire.Desired, 1)}
}

// subscribeUpdates subscribes to the update topics; it runs in onConnect after every
// (re)connection, since the session is clean.
func (l *Link) subscribeUpdates(c mqtt.Client) {
	for _, s := range []struct {
		leaf string
		h    mqtt.MessageHandler
	}{{wire.LeafChunk, l.onChunk}, {wire.LeafDesired, l.onDesired}} {
		topic := wire.ControllerTopic(l.opts.DeviceID, s.leaf)
		if err := wait(c.Subscribe(topic, 1, s.h), l.opts.ConnectTimeout); err != nil {
			l.log.Warn("mqtt subscribe", "topic", topic, "err", err)
		}
	}
}

// onChunk must not block: it hands the frame over or drops it.
func (l *Link) onChunk(_ mqtt.Client, m mqtt.Message) {
	select {
	case l.upd.blocks <- m.Payload():
	default:
		l.upd.droppedBlocks.Add(1)
	}
}

// onDesired must not block: it hands the desired state over, keeping only the highest
// generation when the reader is behind. An empty payload (a cleared retained message) is
// not a desired state.
func (l *Link) onDesired(_ mqtt.Client, m mqtt.Message) {
	if len(m.Payload()) == 0 {
		return
	}
	// DecodeDesired also checks the capture policy: a bad one is refused whole, so the
	// device keeps its last good desired state.
	dp, err := wire.DecodeDesired(m.Payload())
	if err != nil {
		if l.upd.badDesired.Add(1) == 1 {
			l.log.Warn("ignoring malformed desired state", "topic", m.Topic(), "err", err)
		}
		return
	}
	d := *dp
	l.upd.desiredMu.Lock()
	defer l.upd.desiredMu.Unlock()
	for {
		select {
		case l.upd.desired <- d:
			return
		default:
		}
		select {
		case old := <-l.upd.desired:
			if old.Generation > d.Generation {
				d = old
			}
		default:
		}
	}
}

// Blocks delivers the raw frames received on c/{id}/chunk (see BlockQueue). The channel is
// never closed. It satisfies agent/fetch's Link together with Publish.
func (l *Link) Blocks() <-chan []byte { return l.upd.blocks }

// Desired delivers the controller's desired state from c/{id}/desired: the retained one on
// every (re)connection and each change. When the reader is behind only the highest
// generation is kept. The channel is never closed.
func (l *Link) Desired() <-chan wire.Desired { return l.upd.desired }

// DroppedBlocks counts block frames dropped because the reader was behind.
func (l *Link) DroppedBlocks() uint64 { return l.upd.droppedBlocks.Load() }

// BadDesired counts desired-state messages that could not be decoded.
func (l *Link) BadDesired() uint64 { return l.upd.badDesired.Load() }
