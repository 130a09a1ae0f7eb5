// Package sim generates synthetic sensor signals. The sample-model trainer learns from them
// and the agent's simulated sensor reads them, so a model trained here sees the same signal
// on a demo device.
//
// Vibration models an accelerometer on a rotating machine (units: g, zero mean), sampled at
// a fixed rate. A healthy machine shows the shaft frequency (1x) and two harmonics plus
// broadband noise. Faults change the signal the way a vibration analyst would expect:
//
//   - Imbalance: the 1x amplitude rises about threefold.
//   - Bearing: an outer-race defect strikes about 3.58 times per revolution; each strike rings
//     a structural resonance (about 19 Hz at 50 Hz sampling) that decays within a few samples.
//   - Looseness: a 0.5x sub-harmonic, raised 2x/3x/4x harmonics and doubled noise.
//
// The output is a pure function of the config and of the SetFault calls between samples:
// randomness comes from a PCG seeded with Config.Seed, and the trigonometry from detmath, so
// the same seed gives bit-identical samples on every machine.
package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/outpost-ml/outpost/models/internal/detmath"
)

// Fault is a machine condition.
type Fault int

// The conditions Vibration can simulate.
const (
	FaultNone Fault = iota
	FaultImbalance
	FaultBearing
	FaultLooseness
)

// Faults lists every condition, healthy first.
var Faults = []Fault{FaultNone, FaultImbalance, FaultBearing, FaultLooseness}

var faultNames = [...]string{"none", "imbalance", "bearing", "looseness"}

// String returns the fault's name as ParseFault accepts it.
func (f Fault) String() string {
	if f >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// ParseFault parses a fault name: none, imbalance, bearing or looseness.
func ParseFault(s string) (Fault, error) {
	for i, n := range faultNames {
		if s == n {
			return Fault(i), nil
		}
	}
	return 0, fmt.Errorf("unknown vibration fault %q (want none, imbalance, bearing or looseness)", s)
}

// Defaults of VibrationConfig.
const (
	DefaultSampleRateHz = 50
	DefaultShaftHz      = 5 // 300 rpm: 3x stays well below the 25 Hz Nyquist limit at 50 Hz
)

// VibrationConfig configures a Vibration. Zero values take the defaults above.
type VibrationConfig struct {
	Seed         uint64  // seeds the machine's individual traits and its noise
	SampleRateHz float64 // samples per second, default 50
	ShaftHz      float64 // nominal shaft frequency, default 5; each seed runs up to 3% off it
	Fault        Fault   // initial condition
}

// Vibration is a simulated accelerometer. It is safe for concurrent use: a demo may call
// SetFault while a sampling loop calls Next.
type Vibration struct {
	fs float64 // sample rate, Hz

	// Per-machine traits, fixed at construction.
	dShaft  float64    // shaft phase step per sample, rad
	amp     [3]float64 // healthy 1x, 2x, 3x amplitudes, g
	phase0  [5]float64 // phase offsets of 1x..4x and the 0.5x sub-harmonic, rad
	noise   float64    // healthy noise standard deviation, g
	dStrike float64    // bearing strike phase step per sample (cycles)
	dRing   float64    // resonance phase step per sample, rad
	decay   float64    // resonance envelope factor per sample

	// mu guards the fields below.
	mu     sync.Mutex
	rng    *rand.Rand
	fault  Fault
	shaft  float64 // shaft phase, rad, kept in [0, 4pi) so the 0.5x term stays continuous
	strike float64 // bearing strike phase, cycles in [0, 1)
	ring   float64 // resonance phase, rad
	env    float64 // resonance envelope, g
}

// NewVibration returns a generator for cfg. It panics on nothing: out-of-range values are
// replaced by defaults (a negative or NaN rate or shaft frequency, an unknown fault).
func NewVibration(cfg VibrationConfig) *Vibration {
	fs := cfg.SampleRateHz
	if !(fs > 0) || math.IsInf(fs, 0) {
		fs = DefaultSampleRateHz
	}
	shaft := cfg.ShaftHz
	if !(shaft > 0) || shaft >= fs/2 {
		shaft = DefaultShaftHz
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6f7574706f7374)) // stream constant: "outpost"
	// Each machine differs a little: speed within ±3%, amplitudes within ±15%.
	jitter := func(spread float64) float64 { return 1 + float64(spread*(2*rng.Float64()-1)) }
	v := &Vibration{fs: fs, rng: rng, noise: 0.05}
	shaft = float64(shaft * jitter(0.03))
	v.dShaft = 2 * math.Pi * shaft / fs
	v.amp = [3]float64{float64(0.30 * jitter(0.15)), float64(0.12 * jitter(0.15)), float64(0.06 * jitter(0.15))}
	for i := range v.phase0 {
		v.phase0[i] = float64(2 * math.Pi * rng.Float64())
	}
	v.dStrike = float64(3.58*shaft) / fs
	ringHz := min(19, 0.38*fs)
	v.dRing = 2 * math.Pi * ringHz / fs
	v.decay = detmath.Exp(-1 / float64(0.03*fs)) // 30 ms time constant
	v.shaft = float64(4 * math.Pi * rng.Float64())
	v.strike = rng.Float64()
	v.SetFault(cfg.Fault)
	return v
}

// SampleRateHz returns the sample rate in Hz.
func (v *Vibration) SampleRateHz() float64 { return v.fs }

// SetFault switches the simulated condition from the next sample on; an unknown fault is
// treated as FaultNone.
func (v *Vibration) SetFault(f Fault) {
	if f < 0 || int(f) >= len(faultNames) {
		f = FaultNone
	}
	v.mu.Lock()
	v.fault = f
	v.mu.Unlock()
}

// Fault returns the current condition.
func (v *Vibration) Fault() Fault {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.fault
}

// Next returns the next sample, in g.
func (v *Vibration) Next() float64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	a1, a2, a3, a4, sub := v.amp[0], v.amp[1], v.amp[2], 0.0, 0.0
	noise := v.noise
	switch v.fault {
	case FaultImbalance:
		a1 = float64(3 * a1)
	case FaultLooseness:
		a2 += 0.15
		a3 += 0.12
		sub = 0.15
		if 4*v.dShaft < 0.9*math.Pi { // keep 4x below 0.45 fs
			a4 = 0.10
		}
		noise = float64(2 * noise)
	}

	φ := v.shaft
	y := float64(a1 * detmath.Sin(φ+v.phase0[0]))
	y += float64(a2 * detmath.Sin(float64(2*φ)+v.phase0[1]))
	y += float64(a3 * detmath.Sin(float64(3*φ)+v.phase0[2]))
	if a4 != 0 {
		y += float64(a4 * detmath.Sin(float64(4*φ)+v.phase0[3]))
	}
	if sub != 0 {
		y += float64(sub * detmath.Sin(float64(0.5*φ)+v.phase0[4]))
	}

	// The bearing defect keeps striking in every condition (its phase runs on), but only a
	// damaged bearing rings.
	v.strike += v.dStrike
	if v.strike >= 1 {
		v.strike -= math.Floor(v.strike)
		if v.fault == FaultBearing {
			v.env = float64(0.6 * (0.7 + float64(0.6*v.rng.Float64())))
			if v.rng.Uint64()&1 == 1 {
				// Random polarity: a ringing that always starts upward would add a DC
				// offset, which an AC-coupled accelerometer does not show.
				v.env = -v.env
			}
			v.ring = math.Pi / 2 // start at the crest so the strike shows in this sample
		}
	}
	if v.env != 0 {
		y += float64(v.env * detmath.Sin(v.ring))
		v.ring += v.dRing
		if v.ring >= 2*math.Pi {
			v.ring -= 2 * math.Pi
		}
		v.env = float64(v.env * v.decay)
		if math.Abs(v.env) < 1e-6 {
			v.env = 0
		}
	}

	// Gaussian-like noise from the sum of four uniforms (Irwin–Hall, variance 1/3), which
	// needs no logarithm and so stays bit-identical across platforms.
	u := v.rng.Float64() + v.rng.Float64() + v.rng.Float64() + v.rng.Float64() - 2
	y += float64(float64(noise*math.Sqrt(3)) * u)

	v.shaft += v.dShaft
	if v.shaft >= 4*math.Pi {
		v.shaft -= 4 * math.Pi
	}
	return y
}

// Window fills dst with the next len(dst) samples and returns it.
func (v *Vibration) Window(dst []float64) []float64 {
	for i := range dst {
		dst[i] = v.Next()
	}
	return dst
}
