package blobserve_test

import (
	"bytes"
	"cmp"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/blobserve"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// device is a plain paho client standing in for an agent.
type device struct {
	paho.Client
	mu     sync.Mutex
	frames []wire.Block
}

func connectDevice(t *testing.T, url, id string) *device {
	t.Helper()
	d := &device{}
	d.Client = paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(id).SetOrderMatters(true))
	if tok := d.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("%s connect: %v", id, tok.Error())
	}
	t.Cleanup(func() { d.Disconnect(100) })
	tok := d.Subscribe(wire.ControllerTopic(id, wire.LeafChunk), 1, func(_ paho.Client, m paho.Message) {
		b, err := wire.DecodeBlock(m.Payload())
		if err != nil {
			t.Errorf("%s: bad frame: %v", id, err)
			return
		}
		b.Data = bytes.Clone(b.Data)
		d.mu.Lock()
		d.frames = append(d.frames, b)
		d.mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("%s subscribe: %v", id, tok.Error())
	}
	return d
}

func (d *device) ask(t *testing.T, id, path string, req wire.FetchRequest) {
	t.Helper()
	req.Path = path
	p, err := wire.Encode(&req)
	if err != nil {
		t.Fatal(err)
	}
	if tok := d.Publish(wire.DeviceTopic(id, wire.LeafFetch), 1, false, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish request: %v", tok.Error())
	}
}

func (d *device) got() []wire.Block {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]wire.Block(nil), d.frames...)
}

// startServer runs the embedded broker (strict ACL) and a blobserve Server on it.
func startServer(t *testing.T, src blobserve.Source) (*broker.Broker, *blobserve.Server) {
	t.Helper()
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = b.Run(ctx) }()
	user, pass := b.ControllerCredentials()
	s, err := blobserve.New(blobserve.Options{Source: src, BrokerURL: b.URL(), Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer wg.Done()
		if err := s.Run(ctx); err != nil {
			t.Errorf("blobserve Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	waitFor(t, "blobserve to subscribe", s.Subscribed)
	return b, s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDevicesSeeOnlyTheirBlocks runs requests through the real broker: each device's blocks
// come back on its own chunk topic only.
func TestDevicesSeeOnlyTheirBlocks(t *testing.T) {
	file := make([]byte, 3*wire.MinBlockSize+10)
	for i := range file {
		file[i] = byte(i * 7)
	}
	b, s := startServer(t, blobserve.Files{"targets/abc.m": file, "meta/timestamp.json": []byte(`{}`)})
	a := connectDevice(t, b.URL(), "dev-a")
	other := connectDevice(t, b.URL(), "dev-b")

	a.ask(t, "dev-a", "targets/abc.m", wire.FetchRequest{ID: 10, BlockSize: wire.MinBlockSize, Start: 1, Mask: 0b111})
	a.ask(t, "dev-a", "meta/timestamp.json", wire.FetchRequest{ID: 11})
	a.ask(t, "dev-a", "meta/1.root.json", wire.FetchRequest{ID: 12, Mask: 1})
	waitFor(t, "dev-a's frames", func() bool { return len(a.got()) == 5 })
	// Refusals are sent ahead of queued blocks, so order by request and index.
	frames := a.got()
	slices.SortFunc(frames, func(x, y wire.Block) int {
		return cmp.Or(cmp.Compare(x.ID, y.ID), cmp.Compare(x.Index, y.Index))
	})
	for i, want := range []struct {
		id     uint64
		status byte
		index  uint32
		data   []byte
	}{
		{10, wire.BlockOK, 1, file[wire.MinBlockSize : 2*wire.MinBlockSize]},
		{10, wire.BlockOK, 2, file[2*wire.MinBlockSize : 3*wire.MinBlockSize]},
		{10, wire.BlockOK, 3, file[3*wire.MinBlockSize:]},
		{11, wire.BlockOK, 0, []byte(`{}`)},
		{12, wire.BlockNotFound, 0, nil},
	} {
		f := frames[i]
		if f.ID != want.id || f.Status != want.status || f.Index != want.index || (want.data != nil && !bytes.Equal(f.Data, want.data)) {
			t.Errorf("frame %d = id %d status %d index %d (%d bytes), want id %d status %d index %d", i, f.ID, f.Status, f.Index, len(f.Data), want.id, want.status, want.index)
		}
	}
	if got := other.got(); len(got) != 0 {
		t.Errorf("dev-b received %d frames of dev-a's", len(got))
	}
	if st := s.Stats(); st.Requests != 3 || st.Blocks != 4 || st.Refused != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestSharedReplicas: two servers in one share group on the real (embedded) broker. Each
// request is answered once, by one of them; after one stops, the other answers everything.
func TestSharedReplicas(t *testing.T) {
	if _, err := blobserve.New(blobserve.Options{Source: blobserve.Files{}, BrokerURL: "tcp://127.0.0.1:1", ShareGroup: "a/b"}); err == nil {
		t.Error("a share group with '/' was accepted")
	}
	file := make([]byte, 2*wire.MinBlockSize)
	src := blobserve.Files{"targets/abc.m": file}
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(context.Background())
	var bwg sync.WaitGroup
	bwg.Add(1)
	go func() { defer bwg.Done(); _ = b.Run(bctx) }()
	t.Cleanup(func() { bcancel(); bwg.Wait() })
	user, pass := b.ControllerCredentials()
	var servers [2]*blobserve.Server
	var stops [2]func()
	for i := range servers {
		s, err := blobserve.New(blobserve.Options{Source: src, BrokerURL: b.URL(), Username: user, Password: pass,
			ClientID: "outpost-blobserve-" + string(rune('a'+i)), ShareGroup: "outpost"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := s.Run(ctx); err != nil {
				t.Errorf("blobserve Run: %v", err)
			}
		}()
		stops[i] = func() { cancel(); <-done }
		t.Cleanup(stops[i])
		servers[i] = s
		waitFor(t, "blobserve to subscribe", s.Subscribed)
	}
	d := connectDevice(t, b.URL(), "dev-s")
	requests := func() (n uint64) {
		for _, s := range servers {
			n += s.Stats().Requests
		}
		return n
	}
	const n = 20
	for i := range n {
		d.ask(t, "dev-s", "targets/abc.m", wire.FetchRequest{ID: uint64(i + 1), BlockSize: wire.MinBlockSize, Mask: 0b11})
	}
	waitFor(t, "every request answered", func() bool { return len(d.got()) == 2*n })
	if got := requests(); got != n {
		t.Errorf("the servers received %d requests together, want %d (each once)", got, n)
	}
	t.Logf("%d requests split %d/%d between the replicas", n, servers[0].Stats().Requests, servers[1].Stats().Requests)
	answers := func(id uint64) (k int) {
		for _, f := range d.got() {
			if f.ID == id {
				k++
			}
		}
		return k
	}
	for id := uint64(1); id <= n; id++ {
		if k := answers(id); k != 2 {
			t.Errorf("request %d: %d frames, want its 2 blocks once", id, k)
		}
	}
	stops[0]()
	// A request the broker still routes to the departing replica is lost, as with a killed
	// one; the device asks again after its idle timeout, as here, and the survivor answers.
	for id := uint64(n + 1); id <= 2*n; id++ {
		for try := 0; answers(id) < 2; try++ {
			if try == 10 {
				t.Fatalf("request %d unanswered after %d tries", id, try)
			}
			d.ask(t, "dev-s", "targets/abc.m", wire.FetchRequest{ID: id, BlockSize: wire.MinBlockSize, Mask: 0b11})
			for wait := time.Now().Add(time.Second); answers(id) < 2 && time.Now().Before(wait); {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
}
