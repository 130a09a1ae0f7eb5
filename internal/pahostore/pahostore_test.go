package pahostore

import (
	"bytes"
	"io"
	"sync"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

var _ mqtt.Store = (*Store)(nil)

func publish(id uint16) *packets.PublishPacket {
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.Qos, p.MessageID, p.TopicName, p.Payload = 1, id, "outpost/v1/d/dev-1/results", []byte(`{"v":1}`)
	return p
}

// TestCopies: what goes in and what comes out are other packets with the same bytes on the
// wire, and marking the one Get returned leaves the stored one as it was.
func TestCopies(t *testing.T) {
	s := New()
	s.Open()
	defer s.Close()
	orig := publish(7)
	var want bytes.Buffer
	if err := orig.Write(&want); err != nil {
		t.Fatal(err)
	}
	s.Put("o.7", orig)
	got, ok := s.Get("o.7").(*packets.PublishPacket)
	if !ok || got == orig {
		t.Fatalf("Get returned %T %p, want a copy of %p", got, got, orig)
	}
	var b bytes.Buffer
	if err := got.Write(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want.Bytes()) {
		t.Fatalf("copy writes %x, original %x", b.Bytes(), want.Bytes())
	}
	got.Dup = true
	if again := s.Get("o.7").(*packets.PublishPacket); again.Dup || again == got {
		t.Fatalf("second Get: dup %v, same packet as the first %v", again.Dup, again == got)
	}
	if orig.Dup {
		t.Fatal("marking the copy marked the original")
	}
	for _, m := range []packets.ControlPacket{
		packets.NewControlPacket(packets.Pubrel), packets.NewControlPacket(packets.Subscribe),
		packets.NewControlPacket(packets.Unsubscribe), packets.NewControlPacket(packets.Puback),
		packets.NewControlPacket(packets.Pubrec), packets.NewControlPacket(packets.Pubcomp),
	} {
		s.Put("o.12", m)
		if c := s.Get("o.12"); c == m || c.String() != m.String() {
			t.Errorf("%T: Get returned %p (%v), want a copy of %p (%v)", m, c, c, m, m)
		}
	}
	s.Del("o.12")
	if c := s.Get("o.12"); c != nil {
		t.Fatalf("Get after Del = %v, want nil", c)
	}
}

// TestResumeWhileWriting is paho's reconnect race (issue 703) in miniature: the packet a
// client published, and the one a first resume sent again, are being written by their
// connections' writers while a later resume takes the stored packet and sets DUP. Under -race
// (make test) it fails if the store hands out, or keeps, a packet someone else holds.
func TestResumeWhileWriting(t *testing.T) {
	s := New()
	s.Open()
	defer s.Close()
	p := publish(9)
	s.Put("o.9", p)
	resent := s.Get("o.9").(*packets.PublishPacket)
	resent.Dup = true
	var wg sync.WaitGroup
	for _, w := range []*packets.PublishPacket{p, resent} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if err := w.Write(io.Discard); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			s.Get("o.9").(*packets.PublishPacket).Dup = true
		}
	}()
	wg.Wait()
}
