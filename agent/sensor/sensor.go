// Package sensor is the contract between the agent and its sample sources, plus a registry of
// drivers by kind, in the manner of database/sql: a driver package registers itself in init and
// a source is opened from a spec string such as "sim:vibration?seed=3&fault=bearing".
//
// A spec is KIND[?ARGS]: KIND names a registered driver ("sim:vibration"), ARGS is a URL query
// whose keys each driver documents. Drivers reject arguments they do not know.
package sensor

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Info describes a Source.
type Info struct {
	Kind string // the registered kind it was opened with
	// RateHz is the data's sample rate in samples per second: the rate a model reading this
	// source must have been trained at.
	RateHz float64
	// ReadHz is how often the caller should read, in reads per second, when that differs
	// from RateHz: a replay at speed 2 has twice its RateHz, and +Inf means as fast as
	// possible (the caller then also waits for its consumer rather than drop samples).
	// 0 means RateHz, which is right for every live sensor.
	ReadHz   float64
	Channels int      // values per sample
	Names    []string // channel names, len Channels; nil when the driver names none
}

// ReadInterval returns the time between two reads, or 0 for as fast as possible.
func (i Info) ReadInterval() time.Duration {
	hz := i.ReadHz
	if hz == 0 {
		hz = i.RateHz
	}
	if math.IsInf(hz, 1) || !(hz > 0) {
		return 0
	}
	return time.Duration(float64(time.Second) / hz)
}

// ChannelNames returns Names, or KIND.0, KIND.1, … when the driver names no channels.
func (i Info) ChannelNames() []string {
	if len(i.Names) == i.Channels {
		return slices.Clone(i.Names)
	}
	names := make([]string, i.Channels)
	for c := range names {
		names[c] = fmt.Sprintf("%s.%d", i.Kind, c)
	}
	return names
}

// Source produces samples. The caller paces reads (see Info.ReadInterval); a Source must not
// sleep to pace itself. Reads are paced on average, not one by one: the agent reads a source
// faster than its timers (about 1 kHz) in short bursts of the reads due, so a source that fast
// must keep its samples until read (a FIFO). Read and Close are called from one goroutine.
type Source interface {
	// Read fills dst (len Info().Channels) with one sample and returns when it was taken.
	// It blocks at most until ctx ends. An error is transient unless the caller decides
	// otherwise; the agent counts it and retries with backoff.
	Read(ctx context.Context, dst []float32) (time.Time, error)
	Info() Info
	Close() error
}

// Driver opens a Source from the ARGS of a spec.
type Driver func(args url.Values) (Source, error)

var (
	mu      sync.RWMutex // guards drivers
	drivers = map[string]Driver{}
)

// Register makes a driver available under kind. It panics if kind is empty or registered
// twice, since both are programming errors found at init.
func Register(kind string, d Driver) {
	mu.Lock()
	defer mu.Unlock()
	if kind == "" || d == nil {
		panic("sensor: Register with empty kind or nil driver")
	}
	if _, dup := drivers[kind]; dup {
		panic("sensor: Register called twice for kind " + kind)
	}
	drivers[kind] = d
}

// Kinds lists the registered kinds, sorted.
func Kinds() []string {
	mu.RLock()
	defer mu.RUnlock()
	ks := make([]string, 0, len(drivers))
	for k := range drivers {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Open opens the source described by spec (KIND[?ARGS]).
func Open(spec string) (Source, error) {
	kind, rawArgs, _ := strings.Cut(spec, "?")
	mu.RLock()
	d, ok := drivers[kind]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("sensor %q: unknown kind %q (known: %s)", spec, kind, strings.Join(Kinds(), ", "))
	}
	args, err := url.ParseQuery(rawArgs)
	if err != nil {
		return nil, fmt.Errorf("sensor %q: arguments: %w", spec, err)
	}
	src, err := d(args)
	if err != nil {
		return nil, fmt.Errorf("sensor %q: %w", spec, err)
	}
	return src, nil
}

// CheckArgs returns an error naming the first key of args not in known; drivers use it so a
// misspelt argument is reported instead of silently ignored.
func CheckArgs(args url.Values, known ...string) error {
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			return fmt.Errorf("unknown argument %q (known: %s)", k, strings.Join(known, ", "))
		}
		if len(args[k]) > 1 {
			return fmt.Errorf("argument %q given %d times", k, len(args[k]))
		}
	}
	return nil
}
