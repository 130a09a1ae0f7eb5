// Package replay plays back a recorded CSV file as a sensor and registers it with agent/sensor
// as kind "replay".
//
// The file has a header row "timestamp,NAME,NAME,..." (one channel per NAME; "time" is
// accepted for the first column) and one row per sample. Timestamps are RFC3339 (with
// optional fraction, e.g. 2025-01-02T15:04:05.04Z) or seconds as a decimal number (since
// the Unix epoch or any other origin); one file uses one form, and they strictly increase.
// The whole file is parsed when the source is opened, so a malformed row is reported, with
// its line number, before anything is replayed.
//
// Arguments:
//
//	file=PATH   the CSV file (required)
//	speed=S     1 (recorded speed, the default), a factor such as 2 or 0.5, or max
//	loop=B      true starts again from the first row after the last (default false)
//	rate=HZ     the recording's nominal sample rate; default: 1/median interval
//
// For example "replay?file=/var/lib/outpost/walk.csv&speed=max&loop=true".
//
// Info().RateHz is always the recording's nominal rate, the rate a model reading it must have
// been trained at; speed sets only how often the caller reads, Info().ReadHz: the nominal rate
// times S, or +Inf (as fast as the consumer takes samples) for max. Read stamps a sample with the time it is replayed, so the agent's
// timestamps stay monotonic across loops; Recorded gives the file's timestamp of the last
// sample read.
package replay

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/outpost-ml/outpost/agent/sensor"
)

// Kind is the registered sensor kind.
const Kind = "replay"

// MaxRateHz is the highest paced read rate (recorded rate times a numeric speed); faster
// replays use speed=max, which is unpaced.
const MaxRateHz = 100000

// ErrEnd is wrapped by Read's error once every row has been replayed and loop is off.
var ErrEnd = errors.New("end of recording")

// Options configures a Source.
type Options struct {
	Speed  float64 // 1 is recorded speed; +Inf is as fast as possible; 0 means 1
	Loop   bool
	RateHz float64 // nominal recorded rate; 0 means 1/median interval
}

// Source replays a Recording. It is not safe for concurrent use (sensor.Source's contract).
type Source struct {
	rec     *Recording
	name    string
	nominal float64 // recorded samples per second
	opts    Options
	next    int // row Read returns next
	loops   int // completed passes
	last    time.Time
}

// New returns a Source replaying rec; name identifies it in errors (the file path).
func New(rec *Recording, name string, opts Options) (*Source, error) {
	if opts.Speed == 0 {
		opts.Speed = 1
	}
	if !(opts.Speed > 0) {
		return nil, fmt.Errorf("replay %s: speed %v must be positive", name, opts.Speed)
	}
	if rec.Len() == 0 {
		return nil, fmt.Errorf("replay %s: no samples", name)
	}
	nominal := opts.RateHz
	if nominal == 0 {
		var err error
		if nominal, err = rec.NominalRateHz(); err != nil {
			return nil, fmt.Errorf("replay %s: %w (give rate=HZ)", name, err)
		}
	}
	if !(nominal > 0) || math.IsInf(nominal, 0) {
		return nil, fmt.Errorf("replay %s: rate %v Hz must be positive", name, nominal)
	}
	if !math.IsInf(opts.Speed, 1) && nominal*opts.Speed > MaxRateHz {
		return nil, fmt.Errorf("replay %s: %v Hz at speed %v exceeds %v Hz; use speed=max", name, nominal, opts.Speed, MaxRateHz)
	}
	return &Source{rec: rec, name: name, nominal: nominal, opts: opts}, nil
}

func init() { sensor.Register(Kind, open) }

func open(args url.Values) (sensor.Source, error) {
	if err := sensor.CheckArgs(args, "file", "speed", "loop", "rate"); err != nil {
		return nil, err
	}
	path := args.Get("file")
	if path == "" {
		return nil, errors.New("no file given (file=PATH)")
	}
	var o Options
	switch s := args.Get("speed"); s {
	case "", "1":
		o.Speed = 1
	case "max":
		o.Speed = math.Inf(1)
	default:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("speed %q must be max or a positive number", s)
		}
		o.Speed = f
	}
	if s := args.Get("loop"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("loop %q must be true or false", s)
		}
		o.Loop = b
	}
	if s := args.Get("rate"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("rate %q must be a positive number of Hz", s)
		}
		o.RateHz = f
	}
	rec, err := ParseFile(path)
	if err != nil {
		return nil, err
	}
	return New(rec, path, o)
}

// ParseFile parses the CSV file at path; errors name the file and line.
func ParseFile(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	rec, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", path, err)
	}
	return rec, nil
}

// Read implements sensor.Source: the next row's values, stamped now.
func (s *Source) Read(ctx context.Context, dst []float32) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	if s.next == s.rec.Len() {
		if !s.opts.Loop {
			return time.Time{}, fmt.Errorf("replay %s: %w after %d samples", s.name, ErrEnd, s.rec.Len())
		}
		s.next = 0
		s.loops++
	}
	copy(dst, s.rec.Row(s.next))
	s.last = s.rec.Time(s.next)
	s.next++
	return time.Now(), nil
}

// Recorded returns the file's timestamp of the sample Read returned last, and how many
// times the recording has wrapped around before it.
func (s *Source) Recorded() (t time.Time, loops int) { return s.last, s.loops }

// RecordedRateHz returns the recording's nominal sample rate: the rate a model reading this
// source must have been trained at, whatever the replay speed.
func (s *Source) RecordedRateHz() float64 { return s.nominal }

// Speed returns the replay speed: 1 is recorded speed, +Inf as fast as possible.
func (s *Source) Speed() float64 { return s.opts.Speed }

// Info implements sensor.Source. RateHz is the recorded rate; ReadHz, the rate to read at, is
// the recorded rate times the speed, or +Inf for speed=max.
func (s *Source) Info() sensor.Info {
	return sensor.Info{
		Kind:     Kind,
		RateHz:   s.nominal,
		ReadHz:   s.nominal * s.opts.Speed, // +Inf for speed=max
		Channels: len(s.rec.Channels),
		Names:    slices.Clone(s.rec.Channels),
	}
}

// Close implements sensor.Source; the file was closed after parsing.
func (s *Source) Close() error { return nil }
