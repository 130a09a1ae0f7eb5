package blobserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// dispatch is the one loop that sends: status answers first, then blocks, one at a time, each
// from the next device in turn whose bucket allows it, while the global bucket allows it.
func (s *Server) dispatch(ctx context.Context, pub publisher, connected <-chan struct{}) error {
	defer s.dropAll()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if !pub.up() {
			// Nothing can be sent; keep the queue (devices retry what times out anyway).
			select {
			case <-ctx.Done():
				return nil
			case <-connected:
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		for answered := false; !answered; {
			select {
			case a := <-s.answers:
				pub.send(ctx, a.dev, a.frame)
			default:
				answered = true
			}
		}
		dev, frame, wait := s.next()
		if frame != nil {
			pub.send(ctx, dev, frame)
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		var timerC <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			timerC = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-timerC:
		}
		if !timer.Stop() && timerC != nil {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// next picks the frame to send now, or says how long to wait (0: until something arrives).
func (s *Server) next() (dev string, frame []byte, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) == 0 {
		return "", nil, 0
	}
	now := s.now()
	if w := s.global.wait(now); w > 0 {
		return "", nil, w
	}
	wait = time.Hour
	for i := range s.ring {
		at := (s.turn + i) % len(s.ring)
		d := s.devices[s.ring[at]]
		if w := d.bucket.wait(now); w > 0 {
			wait = min(wait, w)
			continue
		}
		j := d.jobs[0]
		frame = s.frame(j)
		d.bucket.take(len(frame), now)
		s.global.take(len(frame), now)
		s.turn = at + 1
		if j.mask == 0 {
			closeReader(j.r)
			d.jobs = d.jobs[1:]
			s.queued--
			if len(d.jobs) == 0 {
				d.jobs = nil
				s.ring = slices.Delete(s.ring, at, at+1)
				s.turn = at
			}
		}
		if len(s.ring) > 0 {
			s.turn %= len(s.ring)
		} else {
			s.turn = 0
		}
		return d.id, frame, 0
	}
	return "", nil, wait
}

// frame builds the frame of j's lowest block still to send and takes it off j.mask. The
// block is read straight into the frame.
func (s *Server) frame(j *job) []byte {
	k := uint32(bits.TrailingZeros32(j.mask))
	j.mask &^= 1 << k
	idx := j.req.Start + k
	off := int64(idx) * int64(j.bs)
	b := wire.Block{Status: wire.BlockOK, ID: j.req.ID, Index: idx, Size: uint64(j.size), BlockSize: uint32(j.bs), Path: j.req.Path}
	if off >= j.size {
		j.mask = 0 // every later block is past the end too: one answer says so
		b.Status = wire.BlockOutOfRange
		b.Data = fmt.Appendf(nil, "block %d is past the end of the %d-byte file", idx, j.size)
		return wire.EncodeBlock(nil, &b)
	}
	n := int(min(int64(j.bs), j.size-off))
	frame := wire.EncodeBlock(make([]byte, 0, 64+len(b.Path)+n), &b)
	head := len(frame)
	frame = frame[:head+n]
	if got, err := j.r.ReadAt(frame[head:], off); got < n {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		j.mask = 0
		s.refused.Add(1)
		s.log.Error("read block", "path", j.req.Path, "index", idx, "err", err)
		b.Status = wire.BlockBadRequest
		b.Data = fmt.Appendf(nil, "controller could not read %s", j.req.Path)
		return wire.EncodeBlock(nil, &b)
	}
	s.blocks.Add(1)
	return frame
}

// dropAll forgets every waiting request (Run is ending).
func (s *Server) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		for _, j := range d.jobs {
			closeReader(j.r)
		}
	}
	clear(s.devices)
	s.ring, s.turn, s.queued = nil, 0, 0
}

func closeReader(r io.ReaderAt) {
	if c, ok := r.(io.Closer); ok {
		_ = c.Close()
	}
}
