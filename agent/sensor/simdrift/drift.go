// Package simdrift injects drift into any sensor.Source and registers simulated sources that
// drift monitoring can be tested against:
//
//   - "sim:accel": a waist-worn 3-axis accelerometer (x, y, z in g) doing an activity, from
//     models/sim's Motion generator, the signal the activity models were trained on.
//   - "sim:temperature": an air temperature (°C) with a daily cycle, slow wander and noise,
//     generated here (models/sim has no temperature generator).
//   - "drift": wraps any other registered source, e.g. sim:vibration.
//
// Each accepts drift=LIST, a comma-separated list of changes, each starting at an offset in
// sample time (samples read so far divided by the source's rate, so the same spec and seed
// always drift at the same sample whatever the wall clock does):
//
//	meanshift:D@T   add D to every channel from T on
//	variance:K@T    scale every channel's deviation from its running mean by K (K ≥ 0),
//	                which multiplies its variance by K²
//	stuck@T         repeat the last value read before T from T on (a frozen sensor)
//	stuck:V@T       read V on every channel from T on
//	gradual:R@T     add R·(t−T) from T on: R units per second of sample time
//
// T is a Go duration (30s, 2m30s, 0s). Changes apply in the order given. For example
// "sim:accel?activity=walk&seed=3&drift=meanshift:0.3@60s,variance:2@120s" or
// "drift?source=sim:vibration%3Fseed%3D3&drift=stuck@10s" (the wrapped spec is URL-escaped).
package simdrift

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/agent/sensor"
)

// Kind is the registered kind of the wrapper that adds drift to another source.
const Kind = "drift"

// DriftKind names a change to a signal.
type DriftKind int

// The kinds of drift.
const (
	MeanShift DriftKind = iota // add Param
	Variance                   // scale deviation from the running mean by Param
	Stuck                      // hold the last value (or Param when HasParam)
	Gradual                    // add Param per second since At
)

var driftNames = [...]string{"meanshift", "variance", "stuck", "gradual"}

// String returns the kind as a drift spec spells it.
func (k DriftKind) String() string {
	if k >= 0 && int(k) < len(driftNames) {
		return driftNames[k]
	}
	return fmt.Sprintf("DriftKind(%d)", int(k))
}

// Drift is one scheduled change.
type Drift struct {
	Kind     DriftKind
	Param    float64
	HasParam bool          // false only for a bare "stuck"
	At       time.Duration // offset in sample time
}

// String returns d as a drift spec spells it.
func (d Drift) String() string {
	if !d.HasParam {
		return fmt.Sprintf("%v@%v", d.Kind, d.At)
	}
	return fmt.Sprintf("%v:%v@%v", d.Kind, strconv.FormatFloat(d.Param, 'g', -1, 64), d.At)
}

// MaxDrifts bounds a drift list; more is surely a mistake.
const MaxDrifts = 16

// ParseDrifts parses a comma-separated drift list (see the package comment).
func ParseDrifts(s string) ([]Drift, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxDrifts {
		return nil, fmt.Errorf("drift: %d changes, at most %d", len(parts), MaxDrifts)
	}
	ds := make([]Drift, 0, len(parts))
	for _, p := range parts {
		d, err := parseDrift(p)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

func parseDrift(p string) (Drift, error) {
	spec, at, ok := strings.Cut(p, "@")
	if !ok {
		return Drift{}, fmt.Errorf("drift %q: no start time (want KIND[:PARAM]@DURATION, e.g. meanshift:0.5@30s)", p)
	}
	var d Drift
	var err error
	if d.At, err = time.ParseDuration(at); err != nil || d.At < 0 {
		return Drift{}, fmt.Errorf("drift %q: start %q is not a duration ≥ 0 such as 30s", p, at)
	}
	name, param, hasParam := strings.Cut(spec, ":")
	found := false
	for i, n := range driftNames {
		if name == n {
			d.Kind, found = DriftKind(i), true
		}
	}
	if !found {
		return Drift{}, fmt.Errorf("drift %q: unknown kind %q (want meanshift, variance, stuck or gradual)", p, name)
	}
	if !hasParam {
		if d.Kind != Stuck {
			return Drift{}, fmt.Errorf("drift %q: %s needs a value, e.g. %s:0.5@%v", p, name, name, d.At)
		}
		return d, nil
	}
	d.HasParam = true
	if d.Param, err = strconv.ParseFloat(param, 64); err != nil || math.IsNaN(d.Param) || math.IsInf(d.Param, 0) {
		return Drift{}, fmt.Errorf("drift %q: value %q is not a finite number", p, param)
	}
	if d.Kind == Variance && d.Param < 0 {
		return Drift{}, fmt.Errorf("drift %q: variance factor %v must be ≥ 0", p, d.Param)
	}
	return d, nil
}

// meanWindow is the time constant of the running mean that variance drift scales around:
// long against the signals' periods (vibration, gait, noise), short against a temperature's
// daily cycle, so the scaled deviation is the fast part of the signal.
const meanWindow = 5 * time.Second

// Source wraps another Source and applies drifts to what it reads. Like any Source it is
// read from one goroutine.
type Source struct {
	src    sensor.Source
	drifts []Drift
	rate   float64
	n      int64     // samples read so far
	mean   []float64 // running mean of the input per channel, for Variance
	prev   []float32 // last output, for Stuck
	held   [][]float32
}

// Wrap returns src with drifts applied. It takes ownership of src: Close closes it.
func Wrap(src sensor.Source, drifts []Drift) *Source {
	info := src.Info()
	s := &Source{src: src, drifts: drifts, rate: info.RateHz,
		mean: make([]float64, info.Channels), prev: make([]float32, info.Channels),
		held: make([][]float32, len(drifts))}
	return s
}

// Unwrap returns the wrapped source, e.g. to switch a simulated fault or activity.
func (s *Source) Unwrap() sensor.Source { return s.src }

// Drifts returns the scheduled changes.
func (s *Source) Drifts() []Drift { return s.drifts }

// Elapsed returns the sample time of the next sample: samples read so far divided by the rate.
func (s *Source) Elapsed() time.Duration {
	return time.Duration(float64(s.n) / s.rate * float64(time.Second))
}

// Read implements sensor.Source.
func (s *Source) Read(ctx context.Context, dst []float32) (time.Time, error) {
	ts, err := s.src.Read(ctx, dst)
	if err != nil {
		return ts, err
	}
	t := s.Elapsed()
	// Running mean of the input: a cumulative mean until the window has filled, then an
	// exponential one.
	alpha := 1 / min(float64(s.n+1), meanWindow.Seconds()*s.rate)
	for c, v := range dst {
		s.mean[c] += alpha * (float64(v) - s.mean[c])
	}
	for i, d := range s.drifts {
		if t < d.At {
			continue
		}
		switch d.Kind {
		case MeanShift:
			for c := range dst {
				dst[c] += float32(d.Param)
			}
		case Variance:
			for c, v := range dst {
				dst[c] = float32(s.mean[c] + d.Param*(float64(v)-s.mean[c]))
			}
		case Gradual:
			off := float32(d.Param * (t - d.At).Seconds())
			for c := range dst {
				dst[c] += off
			}
		case Stuck:
			if s.held[i] == nil {
				s.held[i] = make([]float32, len(dst))
				switch {
				case d.HasParam:
					for c := range s.held[i] {
						s.held[i][c] = float32(d.Param)
					}
				case s.n == 0: // stuck from the first sample: hold that one
					copy(s.held[i], dst)
				default:
					copy(s.held[i], s.prev)
				}
			}
			copy(dst, s.held[i])
		}
	}
	copy(s.prev, dst)
	s.n++
	return ts, nil
}

// Info implements sensor.Source: that of the wrapped source.
func (s *Source) Info() sensor.Info { return s.src.Info() }

// Close implements sensor.Source by closing the wrapped source.
func (s *Source) Close() error { return s.src.Close() }

func init() { sensor.Register(Kind, openDrift) }

func openDrift(args url.Values) (sensor.Source, error) {
	if err := sensor.CheckArgs(args, "source", "drift"); err != nil {
		return nil, err
	}
	spec := args.Get("source")
	if spec == "" {
		return nil, errors.New("no source given (source=KIND?ARGS, URL-escaped)")
	}
	if k, _, _ := strings.Cut(spec, "?"); k == Kind {
		return nil, errors.New("source is itself a drift wrapper; list every change in one drift argument")
	}
	ds, err := ParseDrifts(args.Get("drift"))
	if err != nil {
		return nil, err
	}
	src, err := sensor.Open(spec)
	if err != nil {
		return nil, err
	}
	return Wrap(src, ds), nil
}
