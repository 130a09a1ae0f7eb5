package sim

import (
	"math"
	"testing"
)

func magnitudes(w []float64) []float64 {
	out := make([]float64, 0, len(w)/3)
	for i := 0; i+3 <= len(w); i += 3 {
		out = append(out, math.Sqrt(w[i]*w[i]+w[i+1]*w[i+1]+w[i+2]*w[i+2]))
	}
	return out
}

func minMaxStd(x []float64) (lo, hi, std float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	var sum float64
	for _, v := range x {
		lo, hi, sum = min(lo, v), max(hi, v), sum+v
	}
	mean := sum / float64(len(x))
	for _, v := range x {
		std += (v - mean) * (v - mean)
	}
	return lo, hi, math.Sqrt(std / float64(len(x)))
}

// TestMotionActivities checks each activity shows the physics a classifier relies on, over
// many wearers: idle ~1 g steady, walking and running bounce, a fall has near-zero g
// (free fall) followed by a hard impact and then gravity off the vertical axis.
func TestMotionActivities(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		for _, a := range Activities {
			m := NewMotion(MotionConfig{Seed: seed})
			m.Window(make([]float64, 3*25)) // settle in idle for a second
			m.SetActivity(a)
			w := m.Window(make([]float64, 3*50))
			lo, hi, std := minMaxStd(magnitudes(w))
			switch a {
			case ActivityIdle:
				if std > 0.05 || lo < 0.9 || hi > 1.1 {
					t.Errorf("seed %d idle: |a| in [%.2f, %.2f] std %.3f, want steady 1 g", seed, lo, hi, std)
				}
			case ActivityWalk:
				if std < 0.08 || std > 0.45 {
					t.Errorf("seed %d walk: |a| std %.3f, want 0.08-0.45 g", seed, std)
				}
			case ActivityRun:
				if std < 0.25 || hi < 1.4 {
					t.Errorf("seed %d run: |a| std %.3f max %.2f, want > 0.25 and > 1.4 g", seed, std, hi)
				}
			case ActivityFall:
				if lo > 0.5 || hi < 1.4 {
					t.Errorf("seed %d fall: |a| in [%.2f, %.2f], want free fall < 0.5 g and impact > 1.4 g", seed, lo, hi)
				}
				// Lying afterwards: the sensor's z axis no longer carries most of gravity.
				after := m.Window(make([]float64, 3*25))
				var z float64
				for i := 2; i < len(after); i += 3 {
					z += after[i] / 25
				}
				if math.Abs(z) > 0.6 {
					t.Errorf("seed %d fall: mean z %.2f g after the fall, want lying (< 0.6)", seed, z)
				}
			}
		}
	}
}

func TestMotionDeterministic(t *testing.T) {
	a, b := NewMotion(MotionConfig{Seed: 3, Activity: ActivityRun}), NewMotion(MotionConfig{Seed: 3, Activity: ActivityRun})
	for i := 0; i < 1000; i++ {
		if i == 500 {
			a.SetActivity(ActivityFall)
			b.SetActivity(ActivityFall)
		}
		if x, y := a.Next(), b.Next(); x != y {
			t.Fatalf("sample %d differs: %v vs %v", i, x, y)
		}
	}
}

func TestParseActivity(t *testing.T) {
	for _, a := range Activities {
		got, err := ParseActivity(a.String())
		if err != nil || got != a {
			t.Errorf("ParseActivity(%q) = %v, %v", a.String(), got, err)
		}
	}
	if _, err := ParseActivity("swim"); err == nil {
		t.Error("ParseActivity(swim): no error")
	}
	m := NewMotion(MotionConfig{Seed: 1, SampleRateHz: math.NaN(), Activity: 42})
	if m.SampleRateHz() != DefaultMotionSampleRateHz || m.Activity() != ActivityIdle {
		t.Errorf("defaults: rate %v activity %v", m.SampleRateHz(), m.Activity())
	}
}
