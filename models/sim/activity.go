package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/outpost-ml/outpost/models/internal/detmath"
)

// Activity is a human activity seen by a 3-axis accelerometer worn at the waist.
type Activity int

// The activities Motion can simulate.
const (
	ActivityIdle Activity = iota // standing or sitting: gravity and a little sway
	ActivityWalk                 // steps at 1.5-2.3 Hz, vertical bounce 0.2-0.5 g
	ActivityRun                  // strides at 2.2-3.0 Hz, vertical bounce 0.45-1.1 g with heel strikes
	ActivityFall                 // free fall, impact, then lying still (sideways gravity)
)

// Activities lists every activity in label order.
var Activities = []Activity{ActivityIdle, ActivityWalk, ActivityRun, ActivityFall}

var activityNames = [...]string{"idle", "walk", "run", "fall"}

// String returns the activity's name as ParseActivity accepts it.
func (a Activity) String() string {
	if a >= 0 && int(a) < len(activityNames) {
		return activityNames[a]
	}
	return fmt.Sprintf("Activity(%d)", int(a))
}

// ParseActivity parses an activity name: idle, walk, run or fall.
func ParseActivity(s string) (Activity, error) {
	for i, n := range activityNames {
		if s == n {
			return Activity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown activity %q (want idle, walk, run or fall)", s)
}

// DefaultMotionSampleRateHz is MotionConfig's default rate: plenty for gait (below 10 Hz).
const DefaultMotionSampleRateHz = 25

// MotionConfig configures a Motion. Zero values take defaults.
type MotionConfig struct {
	Seed         uint64  // seeds the wearer's traits (gait, sensor tilt) and the noise
	SampleRateHz float64 // default 25
	Activity     Activity
}

// lying is the pose after a fall; Next draws it like idle with gravity along the body's
// forward axis.
const lying Activity = -1

// fall phases, in samples after SetActivity(ActivityFall).
type fallPhase int

const (
	fallPending fallPhase = iota // still doing the previous activity
	fallFree                     // free fall: the accelerometer reads about 0 g
	fallImpact                   // a few samples of a hard, randomly directed hit
	fallLying                    // lying still, gravity along the body's forward axis
)

// Motion is a simulated waist-worn 3-axis accelerometer (units: g; at rest it reads 1 g
// upward). Each wearer (seed) has a gait frequency, stride strength and a sensor mounting
// tilt of its own. Like Vibration, the samples are a pure function of the seed and the
// SetActivity calls, and it is safe for concurrent use.
type Motion struct {
	fs      float64
	rot     [3][3]float64 // body frame (forward, lateral, up) to sensor frame
	walkHz  float64
	runHz   float64
	walkAmp float64
	runAmp  float64
	phase0  [3]float64

	// mu guards the fields below.
	mu        sync.Mutex
	rng       *rand.Rand
	act       Activity
	prev      Activity // what a fall interrupts
	phase     float64  // gait phase, rad
	sway      float64  // slow sway phase, rad
	fall      fallPhase
	fallLeft  int        // samples left in the current fall phase
	impact    [3]float64 // impact direction and strength, body frame, g
	lyingTilt float64
	freeG     float64 // residual reading during free fall, g
}

// NewMotion returns a generator for cfg; out-of-range values take defaults.
func NewMotion(cfg MotionConfig) *Motion {
	fs := cfg.SampleRateHz
	if !(fs > 0) || math.IsInf(fs, 0) {
		fs = DefaultMotionSampleRateHz
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6d6f74696f6e)) // stream constant: "motion"
	u := func(lo, hi float64) float64 { return lo + float64((hi-lo)*rng.Float64()) }
	m := &Motion{fs: fs, rng: rng}
	m.walkHz, m.runHz = u(1.5, 2.3), u(2.2, 3.0)
	m.walkAmp, m.runAmp = u(0.2, 0.5), u(0.45, 1.1)
	for i := range m.phase0 {
		m.phase0[i] = u(0, 2*math.Pi)
	}
	// Mounting tilt: rotate about the forward axis by a and the lateral axis by b, up to
	// about 17 degrees each, so "up" is not always exactly the sensor's z axis.
	a, b := u(-0.3, 0.3), u(-0.3, 0.3)
	ca, sa, cb, sb := detmath.Cos(a), detmath.Sin(a), detmath.Cos(b), detmath.Sin(b)
	// rot = Ry(b) * Rx(a); rows are sensor axes, columns body axes.
	m.rot = [3][3]float64{
		{cb, float64(sb * sa), float64(sb * ca)},
		{0, ca, -sa},
		{-sb, float64(cb * sa), float64(cb * ca)},
	}
	m.phase = u(0, 2*math.Pi)
	m.sway = u(0, 2*math.Pi)
	m.SetActivity(cfg.Activity)
	return m
}

// SampleRateHz returns the sample rate in Hz.
func (m *Motion) SampleRateHz() float64 { return m.fs }

// SetActivity switches activity from the next sample on. A fall starts 0.2-0.8 s later (the
// previous activity goes on until then), lasts 0.15-0.35 s of free fall (0.05-0.4 g) and 0.12 s of impact (1.5-4 g),
// and leaves the wearer lying until the next SetActivity. Unknown values mean ActivityIdle.
func (m *Motion) SetActivity(a Activity) {
	if a < 0 || int(a) >= len(activityNames) {
		a = ActivityIdle
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a == ActivityFall && m.act != ActivityFall {
		m.prev = m.act
		m.fall = fallPending
		m.fallLeft = m.samples(0.2 + float64(0.6*m.rng.Float64()))
	}
	m.act = a
}

// Activity returns the current activity.
func (m *Motion) Activity() Activity {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.act
}

func (m *Motion) samples(seconds float64) int { return max(1, int(math.Round(seconds*m.fs))) }

// noise is roughly Gaussian with standard deviation sd (Irwin-Hall of four uniforms).
func (m *Motion) noise(sd float64) float64 {
	u := m.rng.Float64() + m.rng.Float64() + m.rng.Float64() + m.rng.Float64() - 2
	return float64(float64(sd*math.Sqrt(3)) * u)
}

// Next returns the next sample: acceleration along the sensor's x, y and z axes, in g.
func (m *Motion) Next() [3]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	act := m.act
	if act == ActivityFall {
		act = m.advanceFall()
	}
	var body [3]float64 // forward, lateral, up
	switch act {
	case ActivityIdle:
		body = [3]float64{
			float64(0.01*detmath.Sin(m.sway)) + m.noise(0.01),
			float64(0.01*detmath.Sin(float64(0.7*m.sway)+m.phase0[1])) + m.noise(0.01),
			1 + m.noise(0.01),
		}
	case ActivityWalk, ActivityRun:
		amp, hz, sd := m.walkAmp, m.walkHz, 0.06
		if act == ActivityRun {
			amp, hz, sd = m.runAmp, m.runHz, 0.1
		}
		p := m.phase
		up := float64(amp*detmath.Sin(p)) + float64(float64(0.3*amp)*detmath.Sin(float64(2*p)+m.phase0[0]))
		if act == ActivityRun && detmath.Sin(p) > 0.9 {
			up += float64(0.6 * amp) // heel strike
		}
		body = [3]float64{
			float64(float64(0.45*amp)*detmath.Sin(p+m.phase0[1])) + m.noise(sd),
			float64(float64(0.25*amp)*detmath.Sin(float64(0.5*p)+m.phase0[2])) + m.noise(sd), // sway at half the step rate
			1 + up + m.noise(sd),
		}
		m.phase += 2 * math.Pi * hz / m.fs
		if m.phase >= 4*math.Pi {
			m.phase -= 4 * math.Pi
		}
	case lying:
		body = [3]float64{
			detmath.Cos(m.lyingTilt) + m.noise(0.01),
			detmath.Sin(m.lyingTilt) + m.noise(0.01),
			0.05 + m.noise(0.01),
		}
	case ActivityFall: // the free-fall and impact phases; advanceFall mapped the others
		if m.fall == fallFree {
			body = [3]float64{m.noise(0.05), m.noise(0.05), m.freeG + m.noise(0.05)}
		} else {
			body = [3]float64{m.impact[0] + m.noise(0.2), m.impact[1] + m.noise(0.2), m.impact[2] + m.noise(0.2)}
		}
	}
	m.sway += 2 * math.Pi * 0.3 / m.fs
	if m.sway >= 2*math.Pi {
		m.sway -= 2 * math.Pi
	}
	var out [3]float64
	for i := range out {
		out[i] = float64(m.rot[i][0]*body[0]) + float64(m.rot[i][1]*body[1]) + float64(m.rot[i][2]*body[2])
	}
	return out
}

// advanceFall steps the fall sequence and returns the activity whose signal this sample
// shows: the interrupted activity while pending, ActivityFall during free fall and impact,
// and a lying pose (idle, rotated) afterwards.
func (m *Motion) advanceFall() Activity {
	for m.fallLeft <= 0 && m.fall != fallLying {
		m.fall++
		switch m.fall {
		case fallFree:
			m.fallLeft = m.samples(0.15 + float64(0.2*m.rng.Float64()))
			m.freeG = 0.05 + float64(0.35*m.rng.Float64())
		case fallImpact:
			m.fallLeft = m.samples(0.12)
			s := 1.5 + float64(2.5*m.rng.Float64())
			d := float64(2 * math.Pi * m.rng.Float64())
			m.impact = [3]float64{float64(s * detmath.Cos(d)), float64(float64(0.5*s) * detmath.Sin(d)), float64(0.6 * s)}
		case fallLying:
			m.lyingTilt = float64(0.4 * (2*m.rng.Float64() - 1))
		}
	}
	m.fallLeft--
	switch m.fall {
	case fallPending:
		return m.prev
	case fallLying:
		return lying
	}
	return ActivityFall
}

// Window fills dst (length a multiple of 3) with the next len(dst)/3 samples, x y z of one
// instant adjacent, and returns it.
func (m *Motion) Window(dst []float64) []float64 {
	for i := 0; i+3 <= len(dst); i += 3 {
		s := m.Next()
		copy(dst[i:i+3], s[:])
	}
	return dst
}
