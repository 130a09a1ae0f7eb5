package simdrift

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/models/sim"
)

// Registered kinds of the simulated sources.
const (
	KindAccel       = "sim:accel"
	KindTemperature = "sim:temperature"
)

func init() {
	sensor.Register(KindAccel, openAccel)
	sensor.Register(KindTemperature, openTemperature)
}

// Accel is the simulated 3-axis accelerometer: x, y, z in g. Arguments of sim:accel:
//
//	seed=N        wearer and noise seed, an unsigned integer (default 1)
//	activity=A    idle, walk, run or fall (default idle)
//	rate=HZ       sample rate in Hz, in (0, 1000] (default 25, the activity models' rate)
//	drift=LIST    changes to inject (package comment)
type Accel struct{ m *sim.Motion }

// NewAccel returns a simulated accelerometer; cfg's zero fields take sim's defaults.
func NewAccel(cfg sim.MotionConfig) *Accel { return &Accel{m: sim.NewMotion(cfg)} }

func openAccel(args url.Values) (sensor.Source, error) {
	if err := sensor.CheckArgs(args, "seed", "activity", "rate", "drift"); err != nil {
		return nil, err
	}
	cfg := sim.MotionConfig{Seed: 1, SampleRateHz: sim.DefaultMotionSampleRateHz}
	var err error
	if cfg.Seed, err = seedArg(args); err != nil {
		return nil, err
	}
	if s := args.Get("activity"); s != "" {
		if cfg.Activity, err = sim.ParseActivity(s); err != nil {
			return nil, err
		}
	}
	if cfg.SampleRateHz, err = floatArg(args, "rate", cfg.SampleRateHz, 0, 1000); err != nil {
		return nil, err
	}
	ds, err := ParseDrifts(args.Get("drift"))
	if err != nil {
		return nil, err
	}
	return wrap(NewAccel(cfg), ds), nil
}

// Read implements sensor.Source: the next simulated sample, stamped now.
func (a *Accel) Read(ctx context.Context, dst []float32) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	v := a.m.Next()
	dst[0], dst[1], dst[2] = float32(v[0]), float32(v[1]), float32(v[2])
	return time.Now(), nil
}

// Info implements sensor.Source.
func (a *Accel) Info() sensor.Info {
	return sensor.Info{Kind: KindAccel, RateHz: a.m.SampleRateHz(), Channels: 3}
}

// Close implements sensor.Source.
func (a *Accel) Close() error { return nil }

// SetActivity switches the wearer's activity from the next sample on; safe from any goroutine.
func (a *Accel) SetActivity(act sim.Activity) { a.m.SetActivity(act) }

// Activity returns the current activity.
func (a *Accel) Activity() sim.Activity { return a.m.Activity() }

// TemperatureConfig configures a simulated temperature; start from DefaultTemperatureConfig.
type TemperatureConfig struct {
	Seed      uint64
	RateHz    float64       // samples per second; 0 means 1
	MeanC     float64       // mean temperature, °C
	AmpC      float64       // amplitude of the cycle, °C
	Period    time.Duration // cycle period; 0 means 24h
	NoiseC    float64       // white measurement noise, standard deviation °C
	WanderC   float64       // slow random wander, standard deviation °C
	WanderTau time.Duration // wander correlation time; 0 means 10m
}

// DefaultTemperatureConfig is a room: 21 °C ± 3 °C over a day, 0.3 °C wander, 0.05 °C noise.
var DefaultTemperatureConfig = TemperatureConfig{
	Seed: 1, RateHz: 1, MeanC: 21, AmpC: 3, Period: 24 * time.Hour,
	NoiseC: 0.05, WanderC: 0.3, WanderTau: 10 * time.Minute,
}

// Temperature is a simulated air temperature in °C: a sinusoidal cycle (a day, by default)
// plus a slow first-order autoregressive wander and white noise. Samples are a pure function
// of the seed and the sample index. It is safe for concurrent use.
type Temperature struct {
	cfg   TemperatureConfig
	phase float64 // of the cycle at sample 0, rad
	phi   float64 // AR(1) coefficient of the wander per sample
	innov float64 // wander innovation standard deviation per sample

	mu     sync.Mutex // guards the fields below
	rng    *rand.Rand
	n      int64
	wander float64
}

// NewTemperature returns a generator for cfg.
func NewTemperature(cfg TemperatureConfig) *Temperature {
	if !(cfg.RateHz > 0) {
		cfg.RateHz = 1
	}
	if cfg.Period <= 0 {
		cfg.Period = 24 * time.Hour
	}
	if cfg.WanderTau <= 0 {
		cfg.WanderTau = 10 * time.Minute
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x74656d70)) // stream constant: "temp"
	t := &Temperature{cfg: cfg, rng: rng, phase: 2 * math.Pi * rng.Float64()}
	t.phi = math.Exp(-1 / (cfg.WanderTau.Seconds() * cfg.RateHz))
	t.innov = cfg.WanderC * math.Sqrt(1-t.phi*t.phi) // keeps the wander's variance at WanderC²
	t.wander = cfg.WanderC * rng.NormFloat64()
	return t
}

// Next returns the next sample in °C.
func (t *Temperature) Next() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	sec := float64(t.n) / t.cfg.RateHz
	cycle := t.cfg.AmpC * math.Sin(2*math.Pi*sec/t.cfg.Period.Seconds()+t.phase)
	v := t.cfg.MeanC + cycle + t.wander + t.cfg.NoiseC*t.rng.NormFloat64()
	t.wander = t.phi*t.wander + t.innov*t.rng.NormFloat64()
	t.n++
	return v
}

// Read implements sensor.Source: the next simulated sample, stamped now.
func (t *Temperature) Read(ctx context.Context, dst []float32) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	dst[0] = float32(t.Next())
	return time.Now(), nil
}

// Info implements sensor.Source.
func (t *Temperature) Info() sensor.Info {
	return sensor.Info{Kind: KindTemperature, RateHz: t.cfg.RateHz, Channels: 1}
}

// Close implements sensor.Source.
func (t *Temperature) Close() error { return nil }

// Arguments of sim:temperature:
//
//	seed=N       seed (default 1)
//	rate=HZ      sample rate in Hz, in (0, 1000] (default 1)
//	mean=C       mean °C (default 21)
//	amp=C        cycle amplitude °C, in [0, 1000] (default 3)
//	period=D     cycle period, a Go duration (default 24h)
//	noise=C      white noise standard deviation °C, in [0, 100] (default 0.05)
//	drift=LIST   changes to inject (package comment)
func openTemperature(args url.Values) (sensor.Source, error) {
	if err := sensor.CheckArgs(args, "seed", "rate", "mean", "amp", "period", "noise", "drift"); err != nil {
		return nil, err
	}
	cfg := DefaultTemperatureConfig
	var err error
	if cfg.Seed, err = seedArg(args); err != nil {
		return nil, err
	}
	if cfg.RateHz, err = floatArg(args, "rate", cfg.RateHz, 0, 1000); err != nil {
		return nil, err
	}
	if cfg.MeanC, err = floatArg(args, "mean", cfg.MeanC, -273.15, 1000); err != nil {
		return nil, err
	}
	if cfg.AmpC, err = nonNegArg(args, "amp", cfg.AmpC, 1000); err != nil {
		return nil, err
	}
	if cfg.NoiseC, err = nonNegArg(args, "noise", cfg.NoiseC, 100); err != nil {
		return nil, err
	}
	if s := args.Get("period"); s != "" {
		if cfg.Period, err = time.ParseDuration(s); err != nil || cfg.Period <= 0 {
			return nil, fmt.Errorf("period %q must be a positive duration such as 24h or 90s", s)
		}
	}
	ds, err := ParseDrifts(args.Get("drift"))
	if err != nil {
		return nil, err
	}
	return wrap(NewTemperature(cfg), ds), nil
}

func wrap(src sensor.Source, ds []Drift) sensor.Source {
	if len(ds) == 0 {
		return src
	}
	return Wrap(src, ds)
}

func seedArg(args url.Values) (uint64, error) {
	s := args.Get("seed")
	if s == "" {
		return 1, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("seed %q is not an unsigned integer", s)
	}
	return v, nil
}

// floatArg parses a finite number in (lo, hi].
func floatArg(args url.Values, key string, def, lo, hi float64) (float64, error) {
	s := args.Get(key)
	if s == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f <= lo || f > hi {
		return 0, fmt.Errorf("%s %q must be a number in (%v, %v]", key, s, lo, hi)
	}
	return f, nil
}

// nonNegArg parses a finite number in [0, hi].
func nonNegArg(args url.Values, key string, def, hi float64) (float64, error) {
	s := args.Get(key)
	if s == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f >= 0) || f > hi {
		return 0, fmt.Errorf("%s %q must be a number in [0, %v]", key, s, hi)
	}
	return f, nil
}
