package fetch

import (
	"context"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// bitmap holds one bit per block, least significant bit of word 0 first.
type bitmap []uint64

func newBitmap(n uint32) bitmap { return make(bitmap, (uint64(n)+63)/64) }

func (b bitmap) has(i uint32) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitmap) set(i uint32)      { b[i/64] |= 1 << (i % 64) }
func (b bitmap) clear(i uint32)    { b[i/64] &^= 1 << (i % 64) }

// firstClear is the lowest i < n with neither b nor other set, or n.
func firstClear(b, other bitmap, n uint32) uint32 {
	for w := range b {
		if x := ^(b[w] | other[w]); x != 0 {
			i := uint32(w)*64 + uint32(bits.TrailingZeros64(x))
			return min(i, n)
		}
	}
	return n
}

// request is one FetchRequest still awaiting some of its blocks.
type request struct {
	id       uint64
	start    uint32
	awaiting uint32 // bit k: block start+k asked for and not yet received
	got      int    // frames received for it
}

// lossAfter is how many frames of a later request show that an earlier one's missing blocks
// were lost.
const lossAfter = 4

// transfer is one file being pulled: what is held and what is asked for.
type transfer struct {
	path  string
	size  int64 // the file's length; -1 until the first frame tells it (metadata only)
	count uint32
	nhave uint32 // blocks held
	have  bitmap // blocks held
	asked bitmap // blocks in an outstanding request
	held  int64  // bytes held
	reqs  []*request
	// stale: accept a block from an abandoned request of this path (targets are named by
	// digest, so any such block is of the same content); metadata accepts only its own.
	stale bool

	onSize  func(n int64) error                // once, when size becomes known (it was -1)
	onBlock func(off int64, data []byte) error // each new block
	onHeld  func(held int64)                   // after each new block; may be nil
}

// setSize fixes the file's size and allocates the bitmaps.
func (t *transfer) setSize(n int64, bs int) {
	t.size = n
	t.count = uint32((n + int64(bs) - 1) / int64(bs))
	if t.have == nil {
		t.have = newBitmap(t.count)
	}
	t.nhave = 0
	for _, w := range t.have {
		t.nhave += uint32(bits.OnesCount64(w))
	}
	t.asked = newBitmap(t.count)
}

func (t *transfer) done() bool {
	return t.size >= 0 && t.nhave == t.count
}

// drop forgets the outstanding request at i: its missing blocks may be asked for again. A
// request made before the size was known is in no bitmap (asked is nil until setSize, and a
// file may turn out shorter than the block asked for), so only blocks within asked are cleared.
func (t *transfer) drop(i int) {
	r := t.reqs[i]
	for m := r.awaiting; m != 0; m &= m - 1 {
		if k := r.start + uint32(bits.TrailingZeros32(m)); int(k/64) < len(t.asked) {
			t.asked.clear(k)
		}
	}
	t.reqs = append(t.reqs[:i], t.reqs[i+1:]...)
}

func (t *transfer) find(id uint64) int {
	for i, r := range t.reqs {
		if r.id == id {
			return i
		}
	}
	return -1
}

// run pulls t until every block is held, ctx ends, or the controller refuses or stops
// answering. The idle timer restarts on every frame of t's file; when it fires, every
// outstanding request counts as unanswered and is asked again.
func (f *Fetcher) run(ctx context.Context, t *transfer) error {
	bs := f.opts.BlockSize
	if t.size >= 0 {
		t.setSize(t.size, bs)
	}
	idle := time.NewTimer(f.opts.IdleTimeout)
	defer idle.Stop()
	var pause *time.Timer // set while backing off after BlockRateLimited
	defer func() {
		if pause != nil {
			pause.Stop()
		}
	}()
	unanswered := 0
	for !t.done() {
		var pauseC <-chan time.Time
		if pause != nil {
			pauseC = pause.C
		} else if err := f.fill(ctx, t); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-pauseC:
			pause = nil
		case <-idle.C:
			unanswered += len(t.reqs)
			for len(t.reqs) > 0 {
				t.drop(0)
			}
			if unanswered >= f.opts.MaxUnanswered {
				return fmt.Errorf("%w: %d requests in a row without a block for %v", ErrUnanswered, unanswered, f.opts.IdleTimeout)
			}
			idle.Reset(f.opts.IdleTimeout)
		case frame := <-f.opts.Link.Blocks():
			b, err := wire.DecodeBlock(frame)
			if err != nil {
				if f.badFrames.Add(1) == 1 {
					f.log.Warn("ignoring malformed block frame", "err", err)
				}
				continue
			}
			if b.Path != t.path {
				continue // an answer for an earlier transfer
			}
			idle.Reset(f.opts.IdleTimeout)
			got, limited, err := f.accept(t, &b)
			if err != nil {
				return err
			}
			if got {
				unanswered = 0
			}
			if limited && pause == nil {
				d := time.Duration((0.5 + rand.Float64()) * float64(f.opts.RateLimitBackoff))
				pause = time.NewTimer(d)
			}
		}
	}
	return nil
}

// fill sends requests until InFlight are outstanding or nothing is left to ask for. A failed
// publish leaves its request outstanding: the idle timeout counts it and asks again, so a
// broken link is not retried in a tight loop.
func (f *Fetcher) fill(ctx context.Context, t *transfer) error {
	for len(t.reqs) < f.opts.InFlight {
		r := &request{}
		if t.size < 0 {
			if len(t.reqs) > 0 {
				return nil // the size is not known yet: one request at a time
			}
			r.awaiting = 1
		} else {
			r.start = firstClear(t.have, t.asked, t.count)
			if r.start == t.count {
				return nil
			}
			for k := uint32(0); k < 32 && r.start+k < t.count && bits.OnesCount32(r.awaiting) < f.opts.Window; k++ {
				if i := r.start + k; !t.have.has(i) && !t.asked.has(i) {
					r.awaiting |= 1 << k
					t.asked.set(i)
				}
			}
		}
		r.id = f.nextID.Add(1)
		t.reqs = append(t.reqs, r)
		payload, err := wire.Encode(&wire.FetchRequest{ID: r.id, Path: t.path, BlockSize: f.opts.BlockSize, Start: r.start, Mask: r.awaiting})
		if err != nil {
			return fmt.Errorf("encode fetch request: %w", err)
		}
		if err := f.opts.Link.Publish(ctx, wire.LeafFetch, payload, false); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f.log.Debug("fetch request not sent; will ask again", "path", t.path, "err", err)
			return nil
		}
	}
	return nil
}

// accept applies one frame of t's file. got reports a new block; limited that the controller
// asked us to slow down. An error ends the transfer.
func (f *Fetcher) accept(t *transfer, b *wire.Block) (got, limited bool, err error) {
	ri := t.find(b.ID)
	if ri < 0 && (!t.stale || b.Status != wire.BlockOK) {
		return false, false, nil // an answer to an abandoned request
	}
	switch b.Status {
	case wire.BlockNotFound:
		return false, false, fmt.Errorf("%w: %s", ErrNotFound, oneLine(b.Data))
	case wire.BlockBadRequest:
		return false, false, fmt.Errorf("%w: %s", ErrRefused, oneLine(b.Data))
	case wire.BlockRateLimited:
		t.drop(ri)
		return false, true, nil
	}
	bs := f.opts.BlockSize
	if int(b.BlockSize) != bs && b.Status == wire.BlockOK {
		if ri < 0 {
			return false, false, nil
		}
		return false, false, fmt.Errorf("%w: block size %d, asked for %d", ErrRefused, b.BlockSize, bs)
	}
	size := int64(b.Size)
	switch {
	case size < 0:
		return false, false, fmt.Errorf("%w: file of %d bytes", ErrTooLong, b.Size)
	case t.size < 0:
		if err := t.onSize(size); err != nil {
			return false, false, err
		}
		t.setSize(size, bs)
		// The request for block 0 was made before the bitmaps existed.
		if r := t.reqs[ri]; r.start < t.count && r.awaiting&1 != 0 {
			t.asked.set(r.start)
		}
	case size != t.size:
		if ri < 0 {
			return false, false, nil
		}
		return false, false, fmt.Errorf("%w: the controller's file is %d bytes, expected %d", ErrLength, size, t.size)
	}
	if b.Status == wire.BlockOK && b.Index < t.count && !t.have.has(b.Index) {
		off := int64(b.Index) * int64(bs)
		if err := t.onBlock(off, b.Data); err != nil {
			return false, false, err
		}
		t.have.set(b.Index)
		t.nhave++
		t.held += int64(len(b.Data))
		got = true
		if t.onHeld != nil {
			t.onHeld(t.held)
		}
	}
	if b.Index < t.count {
		t.asked.clear(b.Index)
	}
	// Retire the block from the request that asked for it. The controller answers one
	// device's requests in order, so frames of a later request mean the blocks still awaited
	// by earlier ones were lost on the way: ask for them again now rather than after the idle
	// timeout. The link may hand frames over slightly out of order (paho runs handlers
	// concurrently), so it takes lossAfter frames of the later request to decide.
	earlier := 0
	if ri >= 0 && t.reqs[ri].got+1 >= lossAfter {
		earlier = ri
	}
	if ri < 0 {
		for i, r := range t.reqs {
			if b.Index >= r.start && b.Index-r.start < 32 && r.awaiting&(1<<(b.Index-r.start)) != 0 {
				ri = i
				break
			}
		}
		if ri < 0 {
			return got, false, nil
		}
	}
	r := t.reqs[ri]
	r.got++
	if b.Index >= r.start && b.Index-r.start < 32 {
		r.awaiting &^= 1 << (b.Index - r.start)
	}
	if b.Status == wire.BlockOutOfRange {
		r.awaiting = 0 // nothing at or past the end will come
	}
	if r.awaiting == 0 {
		t.drop(ri)
	}
	for range earlier {
		t.drop(0)
	}
	return got, false, nil
}

// oneLine trims a controller's reason to one printable line.
func oneLine(b []byte) string {
	const max = 200
	out := make([]rune, 0, min(len(b), max))
	for _, r := range string(b) {
		if len(out) == max {
			break
		}
		if r < ' ' || r == 0x7f {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
