package sensor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Combined reads several sources as one: each sample is their channels concatenated in the
// order the sources were given. It is how several --sensor flags feed one model.
type Combined struct {
	srcs  []Source
	info  Info
	first []int // first[i] is the first channel of srcs[i] in a combined sample
}

// Combine returns a Source reading every one of srcs for each sample. They must all have the
// same sample rate (Info.RateHz); the combined source is read as often as the slowest of
// them allows. Channel names are concatenated and made unique by suffixing "#2", "#3", … to
// repeats. Close closes every source. Combine takes ownership of srcs only on success.
func Combine(srcs ...Source) (*Combined, error) {
	if len(srcs) == 0 {
		return nil, errors.New("combine sensors: no sources")
	}
	c := &Combined{srcs: srcs, first: make([]int, len(srcs))}
	kinds := make([]string, len(srcs))
	var names []string
	r0 := srcs[0].Info()
	interval := time.Duration(-1) // the longest read interval seen; 0 is as fast as possible
	for i, s := range srcs {
		in := s.Info()
		kinds[i] = in.Kind
		if in.Channels < 1 {
			return nil, fmt.Errorf("combine sensors: sensor %d (%s) has %d channels", i+1, in.Kind, in.Channels)
		}
		if !(in.RateHz > 0) || math.IsInf(in.RateHz, 0) {
			return nil, fmt.Errorf("combine sensors: sensor %d (%s) rate %v Hz is not a positive number", i+1, in.Kind, in.RateHz)
		}
		if math.Abs(in.RateHz-r0.RateHz) > 1e-9*r0.RateHz {
			return nil, fmt.Errorf("combine sensors: %s samples at %v Hz but %s at %v Hz; all must share one rate",
				r0.Kind, r0.RateHz, in.Kind, in.RateHz)
		}
		c.first[i] = len(names)
		names = append(names, in.ChannelNames()...)
		interval = max(interval, in.ReadInterval())
	}
	c.info = Info{
		Kind:     strings.Join(kinds, "+"),
		RateHz:   r0.RateHz,
		Channels: len(names),
		Names:    unique(names),
	}
	if interval > 0 {
		c.info.ReadHz = float64(time.Second) / float64(interval)
	} else {
		c.info.ReadHz = math.Inf(1)
	}
	return c, nil
}

// unique renames repeats in names in place: the second "x" becomes "x#2", and so on, skipping
// any name already taken.
func unique(names []string) []string {
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		if seen[n] {
			for k := 2; ; k++ {
				if cand := n + "#" + strconv.Itoa(k); !seen[cand] && !slices.Contains(names[i+1:], cand) {
					names[i] = cand
					break
				}
			}
		}
		seen[names[i]] = true
	}
	return names
}

// Read implements Source: it reads every source in order into its slice of dst and returns
// the latest of their timestamps. The first source's error ends the read and is returned,
// naming the source; the sample is then incomplete and must be discarded.
func (c *Combined) Read(ctx context.Context, dst []float32) (time.Time, error) {
	if len(dst) < c.info.Channels {
		return time.Time{}, fmt.Errorf("combined sensor %s: read into %d values, want %d", c.info.Kind, len(dst), c.info.Channels)
	}
	var latest time.Time
	for i, s := range c.srcs {
		end := c.info.Channels
		if i+1 < len(c.srcs) {
			end = c.first[i+1]
		}
		t, err := s.Read(ctx, dst[c.first[i]:end])
		if err != nil {
			return time.Time{}, fmt.Errorf("sensor %d (%s): %w", i+1, s.Info().Kind, err)
		}
		if t.After(latest) {
			latest = t
		}
	}
	return latest, nil
}

// Info implements Source.
func (c *Combined) Info() Info {
	in := c.info
	in.Names = slices.Clone(in.Names)
	return in
}

// Sources returns the combined sources in order, e.g. to reach a simulator's fault switch.
func (c *Combined) Sources() []Source { return c.srcs }

// Close implements Source: it closes every source, and returns the first error with a count
// of any further ones, on one line.
func (c *Combined) Close() error {
	var first error
	failed := 0
	for i, s := range c.srcs {
		if err := s.Close(); err != nil {
			if failed++; first == nil {
				first = fmt.Errorf("close sensor %d (%s): %w", i+1, s.Info().Kind, err)
			}
		}
	}
	if failed > 1 {
		return fmt.Errorf("%w (and %d more close errors)", first, failed-1)
	}
	return first
}
