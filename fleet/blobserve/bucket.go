package blobserve

import "time"

// bucket is a token bucket in bytes. It may go into debt: a block larger than what is left
// is sent once the balance is positive and the debt paid back at the bucket's rate, so
// blocks of any size pass without a burst that must hold the largest one.
type bucket struct {
	rate   float64 // bytes per second
	burst  float64 // most tokens held
	tokens float64
	last   time.Time
}

func newBucket(rate float64, now time.Time) *bucket {
	burst := max(rate/4, 1) // 250 ms of sending at full rate
	return &bucket{rate: rate, burst: burst, tokens: burst, last: now}
}

func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt*b.rate)
		b.last = now
	}
}

// wait is how long until the balance is positive (0: now).
func (b *bucket) wait(now time.Time) time.Duration {
	b.refill(now)
	if b.tokens > 0 {
		return 0
	}
	return time.Duration((-b.tokens + 1) / b.rate * float64(time.Second))
}

// take spends n bytes (after wait returned 0).
func (b *bucket) take(n int, now time.Time) {
	b.refill(now)
	b.tokens -= float64(n)
}

// full reports whether the bucket holds its whole burst: forgetting it changes nothing.
func (b *bucket) full(now time.Time) bool {
	b.refill(now)
	return b.tokens >= b.burst
}
