// Package capture keeps raw input windows with their results for retraining, as the
// controller's capture policy asks (wire.CapturePolicy in the Desired state; default off),
// in a capture buffer with its own disk quota, and uploads them on d/{device}/capture with
// the controller's acks, so nothing acked is lost and nothing is stored twice
// (docs/monitoring.md, "Data capture for retraining"). It implements agent.Capturer.
package capture

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Link is what the uploader needs from the MQTT link (agent/mqttlink.Link).
type Link interface {
	Publish(ctx context.Context, leaf string, payload []byte, retained bool) error
	Connected() bool
	// CaptureAcks delivers the controller's acks on c/{id}/capture.ack.
	CaptureAcks() <-chan wire.Ack
}

// Options configure New. DeviceID, Store, Link and Channels are required.
type Options struct {
	DeviceID string
	Store    *Store
	Link     Link
	Channels []string // the sensor's channel names, in sample order
	Logger   *slog.Logger
	// Policy is the policy in force until the controller sends one; nil captures nothing.
	Policy *wire.CapturePolicy
	// Upload: at most BatchItems items and BatchBytes bytes of JSON per batch; a batch
	// unacked after AckTimeout is sent again.
	BatchItems     int
	BatchBytes     int
	AckTimeout     time.Duration
	PublishTimeout time.Duration
	// Seed seeds the sampling decisions; 0 draws one.
	Seed uint64
}

// Defaults of Options.
const (
	DefaultBatchItems     = 64
	DefaultBatchBytes     = 256 << 10
	DefaultAckTimeout     = 10 * time.Second
	DefaultPublishTimeout = 10 * time.Second
	// queueLen bounds captured windows waiting for the store: at most this many windows are
	// held in memory; beyond it a window is dropped and counted (Lost).
	queueLen = 64
)

// Capturer implements agent.Capturer.
type Capturer struct {
	opts   Options
	log    *slog.Logger
	policy atomic.Pointer[wire.CapturePolicy]
	queue  chan wire.CaptureItem
	wake   chan struct{} // an append happened; capacity 1

	// Owned by the infer loop (Want, Drift).
	rng        *rand.Rand
	driftUntil time.Time
	drifting   bool
	tokens     float64
	tokensAt   time.Time

	captured atomic.Uint64 // windows handed to Keep
	lost     atomic.Uint64 // windows dropped before the store (queue full, store failing)
	sent     atomic.Uint64 // items acked by the controller
}

// New checks opts and returns a Capturer; Run starts its loops.
func New(opts Options) (*Capturer, error) {
	if err := wire.ValidDeviceID(opts.DeviceID); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	if opts.Store == nil || opts.Link == nil || len(opts.Channels) == 0 {
		return nil, fmt.Errorf("capture: store, link and channel names are required")
	}
	if opts.Policy != nil {
		if err := opts.Policy.Validate(); err != nil {
			return nil, fmt.Errorf("capture: %w", err)
		}
	}
	if opts.BatchItems <= 0 {
		opts.BatchItems = DefaultBatchItems
	}
	opts.BatchItems = min(opts.BatchItems, wire.MaxCaptureItems)
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = DefaultBatchBytes
	}
	opts.BatchBytes = min(opts.BatchBytes, wire.MaxCaptureBytes/2)
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = DefaultPublishTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	c := &Capturer{
		opts: opts, log: log,
		queue: make(chan wire.CaptureItem, queueLen),
		wake:  make(chan struct{}, 1),
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	c.policy.Store(opts.Policy)
	return c, nil
}

// SetPolicy replaces the policy (nil: capture nothing). A policy that does not validate is
// refused with an error and the old one stays.
func (c *Capturer) SetPolicy(p *wire.CapturePolicy) error {
	if p != nil {
		if err := p.Validate(); err != nil {
			return err
		}
		cp := *p
		p = &cp
	}
	old := c.policy.Swap(p)
	if !old.Off() || !p.Off() {
		c.log.Info("capture policy", "policy", describe(p))
	}
	return nil
}

// Policy returns the policy in force (nil: off).
func (c *Capturer) Policy() *wire.CapturePolicy { return c.policy.Load() }

func describe(p *wire.CapturePolicy) string {
	if p.Off() {
		return "off"
	}
	return fmt.Sprintf("random=%g low_confidence=%g band=%g drift=%g drift_hold_s=%g max_per_hour=%d",
		p.Random, p.LowConfidence, p.Band, p.Drift, p.DriftHoldS, p.MaxPerHour)
}

// Want implements agent.Capturer: drift first, then low confidence, then random; each a coin
// flip with the policy's fraction, then the hourly cap as a token bucket.
func (c *Capturer) Want(t time.Time, score, threshold float64) string {
	p := c.policy.Load()
	if p.Off() {
		return ""
	}
	var reason string
	switch {
	case p.Drift > 0 && (c.drifting || t.Before(c.driftUntil)) && c.rng.Float64() < p.Drift:
		reason = wire.CaptureDrift
	case p.LowConfidence > 0 && math.Abs(score-threshold) <= p.Band && c.rng.Float64() < p.LowConfidence:
		reason = wire.CaptureLowConfidence
	case p.Random > 0 && c.rng.Float64() < p.Random:
		reason = wire.CaptureRandom
	default:
		return ""
	}
	rate := float64(p.MaxPerHour)
	if rate == 0 {
		rate = wire.DefaultCapturePerHour
	}
	burst := max(1, rate/60) // a minute's worth
	if c.tokensAt.IsZero() {
		c.tokens = burst
	} else if d := t.Sub(c.tokensAt); d > 0 {
		c.tokens = min(burst, c.tokens+rate*d.Hours())
	}
	c.tokensAt = t
	if c.tokens < 1 {
		return ""
	}
	c.tokens--
	return reason
}

// Drift implements agent.Capturer.
func (c *Capturer) Drift(t time.Time, drifting bool) {
	c.drifting = drifting
	if drifting {
		if p := c.policy.Load(); p != nil {
			c.driftUntil = t.Add(time.Duration(p.DriftHoldS * float64(time.Second)))
		}
	}
}

// Keep implements agent.Capturer: it queues the item for the store, or drops and counts it
// when the store is behind.
func (c *Capturer) Keep(window []float32, reason string, r wire.Result) {
	c.captured.Add(1)
	ch := len(c.opts.Channels)
	for _, v := range window {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			c.lost.Add(1) // JSON cannot carry it; a window with a broken sample trains nothing
			return
		}
	}
	if ch == 0 || len(window)%ch != 0 || len(window) > wire.MaxCaptureValues {
		c.lost.Add(1)
		return
	}
	r.Outputs = nil // the score, label and event are what training needs
	it := wire.CaptureItem{
		Time: r.Time, Reason: reason, Channels: c.opts.Channels,
		Shape: []int{len(window) / ch, ch}, Values: window, Result: r,
	}
	select {
	case c.queue <- it:
	default:
		c.lost.Add(1)
	}
}

// Stats are the Capturer's counters.
type Stats struct {
	Captured uint64 // windows handed over by the pipeline, since start
	Lost     uint64 // of them, dropped before the store (queue full, unencodable, store failing)
	Acked    uint64 // items the controller acked, since start
	Buffer   BufferStats
}

// Stats returns a snapshot of the counters.
func (c *Capturer) Stats() Stats {
	return Stats{Captured: c.captured.Load(), Lost: c.lost.Load(), Acked: c.sent.Load(), Buffer: c.opts.Store.Stats()}
}

// BufferCounts reports the capture buffer's held and dropped items, for health.
func (c *Capturer) BufferCounts() (held, dropped uint64) {
	st := c.opts.Store.Stats()
	return st.Len, st.Dropped
}

// Run stores and uploads until ctx ends; then it stores what is queued and returns.
func (c *Capturer) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.runStore(gctx) })
	g.Go(func() error { return c.runUpload(gctx) })
	return g.Wait()
}

// runStore appends queued items to the store, a group per transaction.
func (c *Capturer) runStore(ctx context.Context) error {
	var group []wire.CaptureItem
	var errLogged, dropLogged time.Time
	dropped := c.opts.Store.Stats().Dropped
	flush := func() {
		if len(group) == 0 {
			return
		}
		err := c.opts.Store.Append(group)
		if st := c.opts.Store.Stats(); st.Dropped != dropped {
			// Over quota: the oldest captures went. Said at most once a minute, counted always.
			if time.Since(dropLogged) > time.Minute {
				dropLogged = time.Now()
				c.log.Warn("capture buffer over its quota; dropped the oldest captures (is the controller acking?)",
					"dropped", st.Dropped-dropped, "dropped_total", st.Dropped, "dropped_through_seq", st.DroppedThrough, "held", st.Len, "bytes", st.Bytes)
			}
			dropped = st.Dropped
		}
		if err != nil {
			c.lost.Add(uint64(len(group)))
			if time.Since(errLogged) > time.Minute {
				errLogged = time.Now()
				c.log.Warn("store captured windows", "lost", len(group), "err", err)
			}
		} else {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		clear(group)
		group = group[:0]
	}
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case it := <-c.queue:
					group = append(group, it)
				default:
					flush()
					return nil
				}
			}
		case it := <-c.queue:
			group = append(group, it)
			for len(group) < c.opts.BatchItems {
				select {
				case it := <-c.queue:
					group = append(group, it)
					continue
				default:
				}
				break
			}
			flush()
		}
	}
}

// runUpload sends the oldest unacked items, one batch at a time, and deletes them when the
// controller acks. One batch in flight keeps the controller's watermark simple (a batch
// always starts at the oldest unacked item) at a rate far above what a capture policy makes.
func (c *Capturer) runUpload(ctx context.Context) error {
	const poll = 250 * time.Millisecond
	var (
		inflight  uint64    // last seq of the batch awaiting its ack; 0 when none
		sentAt    time.Time // when it was published
		retryAt   time.Time
		failures  int
		errLogged time.Time
		connected bool
		gz        wire.Gzipper // one compressor for every batch
	)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	acks := c.opts.Link.CaptureAcks()
	for {
		now := time.Now()
		up := c.opts.Link.Connected()
		if up && !connected {
			inflight = 0 // an ack for the old connection may never come
		}
		connected = up
		if inflight != 0 && now.Sub(sentAt) > c.opts.AckTimeout {
			c.log.Debug("capture ack overdue; resending", "last_seq", inflight)
			inflight = 0
		}
		if connected && inflight == 0 && !now.Before(retryAt) {
			last, err := c.sendBatch(ctx, &gz)
			switch {
			case err != nil && ctx.Err() != nil:
				return nil
			case err != nil:
				failures++
				retryAt = now.Add(min(250*time.Millisecond<<min(failures-1, 5), 5*time.Second))
				if time.Since(errLogged) > 30*time.Second {
					errLogged = time.Now()
					c.log.Warn("upload captures", "err", err)
				}
			default:
				failures = 0
				if last != 0 {
					inflight, sentAt = last, time.Now()
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case a := <-acks:
			st := c.opts.Store.Stats()
			if a.Epoch != st.Epoch || a.Seq <= st.AckedSeq {
				continue
			}
			n, err := c.opts.Store.Ack(a.Seq)
			if err != nil {
				c.log.Warn("delete acked captures", "seq", a.Seq, "err", err)
				continue
			}
			c.sent.Add(uint64(n))
			if a.Seq >= inflight {
				inflight = 0
			}
		case <-c.wake:
		case <-tick.C:
		}
	}
}

// sendBatch publishes the oldest unacked items and returns the last seq sent (0: nothing to
// send).
func (c *Capturer) sendBatch(ctx context.Context, gz *wire.Gzipper) (uint64, error) {
	st := c.opts.Store.Stats()
	items, err := c.opts.Store.After(st.AckedSeq, c.opts.BatchItems, c.opts.BatchBytes)
	if err != nil || len(items) == 0 {
		return 0, err
	}
	st = c.opts.Store.Stats() // After may have dropped damaged records
	b := &wire.CaptureBatch{Device: c.opts.DeviceID, Epoch: st.Epoch, DroppedThrough: st.DroppedThrough, Items: items}
	payload, err := wire.EncodeCaptureBatch(b, gz)
	if err != nil {
		return 0, fmt.Errorf("encode capture batch: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.opts.PublishTimeout)
	defer cancel()
	if err := c.opts.Link.Publish(pctx, wire.LeafCapture, payload, false); err != nil {
		return 0, fmt.Errorf("publish %d captures from seq %d: %w", len(items), items[0].Seq, err)
	}
	return items[len(items)-1].Seq, nil
}
