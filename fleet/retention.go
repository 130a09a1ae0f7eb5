package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Default retention periods (outpost serve --retain-*).
const (
	DefaultRetainResults   = 30 * 24 * time.Hour
	DefaultRetainHealth    = 90 * 24 * time.Hour
	DefaultRetainSummaries = 365 * 24 * time.Hour
	DefaultRetainDrift     = 365 * 24 * time.Hour
	DefaultPruneInterval   = 10 * time.Minute
)

// Retention prunes a ViewStore, and the captured windows of a CaptureStore, on a schedule. A
// zero period keeps that kind forever.
type Retention struct {
	Store                             ViewStore
	Results, Health, Summaries, Drift time.Duration
	// Captures, when set, has its captured windows pruned on the same schedule: those
	// received more than CaptureAge ago, then the oldest beyond CaptureCount (≤ 0: no count
	// limit). Captures arrive in bursts or not at all, so they are pruned by the clock rather
	// than when the next one arrives.
	Captures     CaptureStore
	CaptureAge   time.Duration
	CaptureCount int
	Interval     time.Duration // between prunes; default DefaultPruneInterval
	Logger       *slog.Logger
}

// Pruned counts what one Prune deleted.
type Pruned struct {
	Results, Health, Summaries, Drift, Captures int
}

// Prune deletes everything older than its period, measured back from now.
func (r *Retention) Prune(ctx context.Context, now time.Time) (Pruned, error) {
	var p Pruned
	steps := []struct {
		name   string
		period time.Duration
		prune  func(context.Context, time.Time) (int, error)
		n      *int
	}{
		{"results", r.Results, r.Store.PruneResults, &p.Results},
		{"health", r.Health, r.Store.PruneHealth, &p.Health},
		{"summaries", r.Summaries, r.Store.PruneSummaries, &p.Summaries},
		{"drift", r.Drift, r.Store.PruneDrift, &p.Drift},
	}
	for _, s := range steps {
		if s.period <= 0 {
			continue
		}
		n, err := s.prune(ctx, now.Add(-s.period))
		*s.n = n
		if err != nil {
			return p, fmt.Errorf("retention: prune %s: %w", s.name, err)
		}
	}
	if r.Captures != nil && (r.CaptureAge > 0 || r.CaptureCount > 0) {
		var before time.Time
		if r.CaptureAge > 0 {
			before = now.Add(-r.CaptureAge)
		}
		n, err := r.Captures.PruneCaptures(ctx, r.CaptureCount, before)
		p.Captures = n
		if err != nil {
			return p, fmt.Errorf("retention: prune captures: %w", err)
		}
	}
	return p, nil
}

// Run prunes at once and then every Interval until ctx ends. A failed prune is logged and
// retried at the next tick: retention must not stop the controller.
func (r *Retention) Run(ctx context.Context) error {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := r.Interval
	if every <= 0 {
		every = DefaultPruneInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		start := time.Now()
		p, err := r.Prune(ctx, start)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn("retention prune failed; retrying later", "err", err)
		case p != (Pruned{}):
			log.Info("retention pruned", "results", p.Results, "health_points", p.Health,
				"summaries", p.Summaries, "drift", p.Drift, "captures", p.Captures, "took", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
