package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/bits"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// fakeLink is a hand-written controller behind a Link: one goroutine answers the requests in
// order from files in memory, the way fleet/blobserve does, with hooks to misbehave.
type fakeLink struct {
	t      *testing.T
	reqs   chan wire.FetchRequest
	blocks chan []byte

	mu    sync.Mutex // guards the fields below
	files map[string][]byte
	seen  []wire.FetchRequest
	// status, if set, may answer a request with a status frame instead of blocks.
	status func(n int, r wire.FetchRequest) byte
	// drop, if set, drops block idx of request r.
	drop func(r wire.FetchRequest, idx uint32) bool
	// corrupt, if set, flips a byte in block idx of request r.
	corrupt    func(r wire.FetchRequest, idx uint32) bool
	silent     bool // answer nothing
	publishErr error
}

func newFakeLink(t *testing.T, files map[string][]byte) *fakeLink {
	l := &fakeLink{t: t, reqs: make(chan wire.FetchRequest, 1024), blocks: make(chan []byte, 64), files: files}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

func (l *fakeLink) Blocks() <-chan []byte { return l.blocks }

func (l *fakeLink) Publish(ctx context.Context, leaf string, payload []byte, retained bool) error {
	if leaf != wire.LeafFetch || retained {
		l.t.Errorf("Publish(%q, retained %v), want fetch, not retained", leaf, retained)
	}
	var r wire.FetchRequest
	if err := wire.Decode(payload, &r); err != nil {
		l.t.Errorf("downloader sent a bad request: %v", err)
		return nil
	}
	if err := r.Validate(); err != nil {
		l.t.Errorf("downloader sent an invalid request: %v", err)
	}
	l.mu.Lock()
	err := l.publishErr
	if err == nil {
		l.seen = append(l.seen, r)
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	l.reqs <- r
	return nil
}

func (l *fakeLink) requests() []wire.FetchRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]wire.FetchRequest(nil), l.seen...)
}

// asked counts the blocks asked for over all requests.
func (l *fakeLink) asked() int {
	n := 0
	for _, r := range l.requests() {
		n += bits.OnesCount32(r.Mask)
	}
	return n
}

func (l *fakeLink) send(ctx context.Context, b *wire.Block) bool {
	select {
	case l.blocks <- wire.EncodeBlock(nil, b):
		return true
	case <-ctx.Done():
		return false
	}
}

func (l *fakeLink) serve(ctx context.Context) {
	for n := 0; ; n++ {
		var r wire.FetchRequest
		select {
		case r = <-l.reqs:
		case <-ctx.Done():
			return
		}
		l.mu.Lock()
		data, ok := l.files[r.Path]
		status, drop, corrupt, silent := l.status, l.drop, l.corrupt, l.silent
		l.mu.Unlock()
		if silent {
			continue
		}
		bs := r.BlockSize
		if bs == 0 {
			bs = wire.DefaultBlockSize
		}
		reply := wire.Block{ID: r.ID, Index: r.Start, Size: uint64(len(data)), BlockSize: uint32(bs), Path: r.Path}
		if st := byte(wire.BlockOK); status != nil {
			st = status(n, r)
			if st != wire.BlockOK {
				reply.Status, reply.Data = st, []byte("told so by the test\nsecond line")
				if !l.send(ctx, &reply) {
					return
				}
				continue
			}
		}
		if !ok {
			reply.Status, reply.Data = wire.BlockNotFound, []byte(r.Path+": not found")
			if !l.send(ctx, &reply) {
				return
			}
			continue
		}
		mask := r.Mask
		if mask == 0 {
			mask = 1
		}
		for ; mask != 0; mask &= mask - 1 {
			idx := r.Start + uint32(bits.TrailingZeros32(mask))
			b := reply
			b.Index = idx
			off := int(idx) * bs
			if off >= len(data) {
				b.Status = wire.BlockOutOfRange
				if !l.send(ctx, &b) {
					return
				}
				break
			}
			b.Data = append([]byte(nil), data[off:min(off+bs, len(data))]...)
			if drop != nil && drop(r, idx) {
				continue
			}
			if corrupt != nil && corrupt(r, idx) {
				b.Data[0] ^= 0xff
			}
			if !l.send(ctx, &b) {
				return
			}
		}
	}
}

// testFile returns n deterministic bytes and the Want describing them under name.
func testFile(n int, name string) ([]byte, Want) {
	data := make([]byte, n)
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	return data, Want{Path: h + "." + name, Length: int64(n), SHA256: h}
}
