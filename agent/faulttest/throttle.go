package faulttest

import (
	"context"
	"time"
)

// chunk is the read size of a pump: 32 KiB, or at a limited rate about 10 ms of sending, so
// the bytes leave in a steady stream rather than in bursts.
func (p *Proxy) chunk() int {
	if p.rate <= 0 {
		return 32 << 10
	}
	return int(min(32<<10, max(512, p.rate/100)))
}

// slack is how far behind its schedule a pacer may run and still catch up.
const slack = 20 * time.Millisecond

// pacer releases bytes at a fixed rate: each write of n bytes waits until the link would
// have finished sending everything before it.
type pacer struct {
	rate int64 // bytes/s; 0 unlimited
	free time.Time
}

func newPacer(rate int64) *pacer { return &pacer{rate: rate} }

// wait blocks until n more bytes may go; false means ctx ended first.
func (p *pacer) wait(ctx context.Context, n int) bool {
	if p.rate <= 0 {
		return true
	}
	// A pump woken late (a loaded machine) is behind its schedule: keep the schedule, so the
	// lateness is made up, unless the link was idle for longer than slack (then the bytes
	// start now, with at most slack's worth of burst).
	if now := time.Now(); p.free.Before(now.Add(-slack)) {
		p.free = now.Add(-slack)
	}
	p.free = p.free.Add(time.Duration(int64(n) * int64(time.Second) / p.rate))
	d := time.Until(p.free)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
