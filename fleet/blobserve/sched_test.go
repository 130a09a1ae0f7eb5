package blobserve

import (
	"bytes"
	"math/bits"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

func request(t *testing.T, id uint64, path string, start, mask uint32) []byte {
	t.Helper()
	b, err := wire.Encode(&wire.FetchRequest{ID: id, Path: path, Start: start, Mask: mask})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newClocked builds a Server whose clock the test moves.
func newClocked(t *testing.T, src Source, opts Options) (*Server, *time.Time) {
	t.Helper()
	opts.Source, opts.BrokerURL = src, "tcp://127.0.0.1:1"
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1000, 0)
	s.now = func() time.Time { return clock }
	s.global = newBucket(s.opts.GlobalRate, clock)
	return s, &clock
}

// TestPacing drives the scheduler on a simulated clock: three devices each ask for 2 MiB,
// more than the global rate allows at once. At every moment each device has been sent no
// more than its own bucket allows and all together no more than the global bucket allows;
// devices take turns; in the end every block has been sent exactly once.
func TestPacing(t *testing.T) {
	const (
		devRate    = 256 << 10
		globalRate = 512 << 10
		frameMax   = wire.DefaultBlockSize + 128
	)
	file := bytes.Repeat([]byte{7}, 1<<20)
	s, clock := newClocked(t, Files{"targets/f": file}, Options{DeviceRate: devRate, GlobalRate: globalRate})
	devs := []string{"a", "b", "c"}
	for _, d := range devs {
		s.handle(d, request(t, 1, "targets/f", 0, 0xffff))
		s.handle(d, request(t, 2, "targets/f", 0, 0xffff))
	}
	start := *clock
	sent := map[string]int{}
	blocks := map[string]map[uint64]uint32{} // device → request id → mask of blocks seen
	total := 0
	var last string
	for steps := 0; ; steps++ {
		if steps > 10000 {
			t.Fatal("scheduler did not finish")
		}
		dev, frame, wait := s.next()
		if frame == nil {
			if wait == 0 {
				break
			}
			*clock = clock.Add(wait)
			continue
		}
		b, err := wire.DecodeBlock(frame)
		if err != nil || b.Status != wire.BlockOK || !bytes.Equal(b.Data, file[int(b.Index)*wire.DefaultBlockSize:][:len(b.Data)]) {
			t.Fatalf("frame %+v, %v", b, err)
		}
		if blocks[dev] == nil {
			blocks[dev] = map[uint64]uint32{}
		}
		if blocks[dev][b.ID]&(1<<b.Index) != 0 {
			t.Fatalf("block %d of request %d sent twice to %s", b.Index, b.ID, dev)
		}
		blocks[dev][b.ID] |= 1 << b.Index
		if dev == last && sent[devs[0]] < 4<<20 {
			// Three devices are waiting until the end: nobody is served twice in a row
			// unless the others' buckets are empty.
			for _, o := range devs {
				if o != dev && s.devices[o] != nil && len(s.devices[o].jobs) > 0 && s.devices[o].bucket.wait(*clock) == 0 {
					t.Fatalf("%s served twice in a row while %s was ready", dev, o)
				}
			}
		}
		last = dev
		sent[dev] += len(frame)
		total += len(frame)
		el := clock.Sub(start).Seconds()
		if limit := devRate*el + devRate/4 + frameMax; float64(sent[dev]) > limit {
			t.Fatalf("after %.2fs %s was sent %d bytes, over its %0.f", el, dev, sent[dev], limit)
		}
		if limit := globalRate*el + globalRate/4 + frameMax; float64(total) > limit {
			t.Fatalf("after %.2fs %d bytes were sent, over the global %0.f", el, total, limit)
		}
	}
	for _, d := range devs {
		if m := blocks[d]; len(m) != 2 || bits.OnesCount32(m[1]) != 16 || bits.OnesCount32(m[2]) != 16 {
			t.Errorf("%s received blocks %v, want 16 of each request", d, m)
		}
	}
	// 6 MiB at 512 KiB/s: 12 s less the initial burst.
	if el := clock.Sub(start); el < 11*time.Second || el > 13*time.Second {
		t.Errorf("6 MiB took %v of simulated time at 512 KiB/s", el)
	}
	if st := s.Stats(); st.Queued != 0 || st.Blocks != 96 {
		t.Errorf("Stats = %+v, want nothing queued and 96 blocks", st)
	}
}

// TestBoundsAndRefusals checks the answers given at once: over a queue bound, malformed,
// invalid, not found, past the end.
func TestBoundsAndRefusals(t *testing.T) {
	s, _ := newClocked(t, Files{"targets/f": make([]byte, 100)}, Options{DeviceQueue: 2, QueueSize: 3})
	answer := func() wire.Block {
		t.Helper()
		select {
		case a := <-s.answers:
			b, err := wire.DecodeBlock(a.frame)
			if err != nil {
				t.Fatal(err)
			}
			return b
		default:
			t.Fatal("no answer queued")
			return wire.Block{}
		}
	}
	s.handle("a", request(t, 1, "targets/f", 0, 1))
	s.handle("a", request(t, 2, "targets/f", 0, 1))
	s.handle("a", request(t, 3, "targets/f", 0, 1)) // over the device's bound
	if b := answer(); b.Status != wire.BlockRateLimited || b.ID != 3 {
		t.Errorf("third request of a device: %+v, want rate limited", b)
	}
	s.handle("b", request(t, 4, "targets/f", 0, 1))
	s.handle("c", request(t, 5, "targets/f", 0, 1)) // over the global bound
	if b := answer(); b.Status != wire.BlockRateLimited || b.ID != 5 {
		t.Errorf("request over the global bound: %+v, want rate limited", b)
	}
	s.handle("c", []byte(`{"v":1,"id":`))
	if st := s.Stats(); st.Malformed != 1 || st.Queued != 3 || st.RateLimited != 2 {
		t.Errorf("Stats = %+v", st)
	}
	bad, _ := wire.Encode(&wire.FetchRequest{ID: 6, Path: "targets/f", BlockSize: 100, Mask: 1})
	s.handle("c", bad)
	if b := answer(); b.Status != wire.BlockBadRequest || b.ID != 6 || !bytes.Contains(b.Data, []byte("block size")) {
		t.Errorf("invalid request: %+v", b)
	}
	s.handle("c", request(t, 7, "meta/9.root.json", 0, 1))
	if b := answer(); b.Status != wire.BlockNotFound || b.ID != 7 || b.Path != "meta/9.root.json" {
		t.Errorf("missing file: %+v", b)
	}

	// Drain the queue; then a request past the end gets one OutOfRange frame carrying the size.
	for {
		if _, f, _ := s.next(); f == nil {
			break
		}
	}
	s.handle("c", request(t, 8, "targets/f", 3, 0b111))
	_, f, _ := s.next()
	b, err := wire.DecodeBlock(f)
	if err != nil || b.Status != wire.BlockOutOfRange || b.Size != 100 || b.Index != 3 {
		t.Errorf("past the end: %+v, %v", b, err)
	}
	if _, f, _ := s.next(); f != nil {
		t.Error("more than one frame for blocks past the end")
	}
}

// FuzzHandle feeds arbitrary request payloads through handle and the scheduler: nothing
// panics, and every frame sent decodes and stays within the file.
func FuzzHandle(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":1,"path":"targets/f","start":0,"mask":3}`))
	f.Add([]byte(`{"v":1,"id":2,"path":"meta/x","block_size":4096,"start":4294967295,"mask":1}`))
	f.Add([]byte(`{"v":1,"id":3,"path":"targets/../f","mask":1}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		s, _ := newClocked(t, Files{"targets/f": make([]byte, 70000)}, Options{})
		s.handle("d", payload)
		for range 40 {
			_, frame, _ := s.next()
			if frame == nil {
				break
			}
			if _, err := wire.DecodeBlock(frame); err != nil {
				t.Fatalf("sent a bad frame: %v", err)
			}
		}
		select {
		case a := <-s.answers:
			if _, err := wire.DecodeBlock(a.frame); err != nil {
				t.Fatalf("answered with a bad frame: %v", err)
			}
		default:
		}
	})
}
