// Package simsensor registers simulated sensors with agent/sensor. Import it for its side
// effect. The signals come from models/sim, the same generator the sample models were
// trained on, so a simulated device behaves like the machine the model knows.
//
// Kind "sim:vibration" is a one-channel accelerometer on a rotating machine (g). Arguments:
//
//	seed=N      machine and noise seed, an unsigned integer (default 1)
//	fault=F     initial condition: none, imbalance, bearing or looseness (default none)
//	rate=HZ     sample rate in Hz, in (0, 10000] (default 50)
//	shaft=HZ    nominal shaft frequency in Hz, below rate/2 (default 5)
//
// For example "sim:vibration?seed=3&fault=bearing&rate=50".
package simsensor

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"time"

	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/models/sim"
)

// KindVibration is the registered kind of the simulated vibration sensor.
const KindVibration = "sim:vibration"

func init() { sensor.Register(KindVibration, openVibration) }

// Vibration is the simulated vibration Source. SetFault may be called from any goroutine,
// e.g. by a demo injecting a fault while the agent samples.
type Vibration struct {
	v *sim.Vibration
}

// VibrationConfig is the parsed form of the sim:vibration arguments.
type VibrationConfig = sim.VibrationConfig

// NewVibration returns a simulated vibration source; cfg's zero fields take sim's defaults.
func NewVibration(cfg VibrationConfig) *Vibration { return &Vibration{v: sim.NewVibration(cfg)} }

func openVibration(args url.Values) (sensor.Source, error) {
	if err := sensor.CheckArgs(args, "seed", "fault", "rate", "shaft"); err != nil {
		return nil, err
	}
	cfg := VibrationConfig{Seed: 1, SampleRateHz: sim.DefaultSampleRateHz, ShaftHz: sim.DefaultShaftHz}
	if s := args.Get("seed"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seed %q is not an unsigned integer", s)
		}
		cfg.Seed = seed
	}
	if s := args.Get("fault"); s != "" {
		f, err := sim.ParseFault(s)
		if err != nil {
			return nil, err
		}
		cfg.Fault = f
	}
	var err error
	if cfg.SampleRateHz, err = hz(args, "rate", cfg.SampleRateHz, 10000); err != nil {
		return nil, err
	}
	if cfg.ShaftHz, err = hz(args, "shaft", cfg.ShaftHz, cfg.SampleRateHz/2); err != nil {
		return nil, err
	}
	if cfg.ShaftHz >= cfg.SampleRateHz/2 {
		return nil, fmt.Errorf("shaft %v Hz must be below half the rate (%v Hz)", cfg.ShaftHz, cfg.SampleRateHz/2)
	}
	return NewVibration(cfg), nil
}

// hz parses a frequency argument in (0, limit].
func hz(args url.Values, key string, def, limit float64) (float64, error) {
	s := args.Get(key)
	if s == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f <= 0 || f > limit {
		return 0, fmt.Errorf("%s %q must be a number of Hz in (0, %v]", key, s, limit)
	}
	return f, nil
}

// Read implements sensor.Source: the next simulated sample, stamped now.
func (s *Vibration) Read(ctx context.Context, dst []float32) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	dst[0] = float32(s.v.Next())
	return time.Now(), nil
}

// Info implements sensor.Source.
func (s *Vibration) Info() sensor.Info {
	return sensor.Info{Kind: KindVibration, RateHz: s.v.SampleRateHz(), Channels: 1}
}

// Close implements sensor.Source.
func (s *Vibration) Close() error { return nil }

// SetFault switches the simulated machine condition from the next sample on.
func (s *Vibration) SetFault(f sim.Fault) { s.v.SetFault(f) }

// Fault returns the current simulated condition.
func (s *Vibration) Fault() sim.Fault { return s.v.Fault() }
