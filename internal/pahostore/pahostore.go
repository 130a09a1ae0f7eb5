// Package pahostore is the session store every paho MQTT client of Outpost uses: paho's
// in-memory store, except that a packet goes in and comes out as a copy.
//
// paho (v1.5.1, eclipse-paho/paho.mqtt.golang issue 703) keeps the very packet it is sending
// in its store, and on a reconnect its resume loop takes the stored QoS 1 publishes and sets
// their DUP flag while the previous connection's writer may still be writing the same packet:
// a data race on the packet's header (seen by the race detector in the fleet rollout tests,
// with agents reconnecting mid-publish). With copies, the writer's packet and the one resume
// marks are never the same. A copy is the packet struct alone: its payload, topic and
// subscription lists are shared, which is safe since paho never writes them after creation.
package pahostore

import (
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Store is paho's MemoryStore with Put and Get copying the packet.
type Store struct {
	*mqtt.MemoryStore
}

// New returns an empty store, for mqtt.ClientOptions.SetStore.
func New() *Store { return &Store{MemoryStore: mqtt.NewMemoryStore()} }

// Put stores a copy of m: paho puts a packet before it hands it to the connection's writer, so
// the copy is made while no other goroutine touches it.
func (s *Store) Put(key string, m packets.ControlPacket) { s.MemoryStore.Put(key, clone(m)) }

// Get returns a copy of the packet stored under key (nil if none): the caller may mark it
// (resume sets DUP) and send it while the stored one stays untouched.
func (s *Store) Get(key string) packets.ControlPacket { return clone(s.MemoryStore.Get(key)) }

// clone copies the packet types paho stores (outbound publish, pubrel, subscribe, unsubscribe;
// inbound publish, pubrel, and the acks of its QoS flows). Any other type is returned as it is.
func clone(m packets.ControlPacket) packets.ControlPacket {
	switch p := m.(type) {
	case *packets.PublishPacket:
		return shallow(p)
	case *packets.PubrelPacket:
		return shallow(p)
	case *packets.SubscribePacket:
		return shallow(p)
	case *packets.UnsubscribePacket:
		return shallow(p)
	case *packets.PubackPacket:
		return shallow(p)
	case *packets.PubrecPacket:
		return shallow(p)
	case *packets.PubcompPacket:
		return shallow(p)
	}
	return m
}

// shallow returns a new copy of *p.
func shallow[T any](p *T) *T {
	c := *p
	return &c
}
