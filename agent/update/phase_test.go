package update

import (
	"math"
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	tests := []struct {
		from   string
		r      Result
		shadow bool
		want   string
	}{
		{Downloading, OK, false, Verifying},
		{Verifying, OK, false, Staging},
		{Staging, OK, false, Activating},
		{Staging, OK, true, Shadow},
		{Shadow, OK, true, Activating},
		{Activating, OK, false, Probation},
		{Probation, OK, false, Committed},
		// Refusals before activation leave the active model as it was.
		{Downloading, Refused, false, Failed},
		{Verifying, Refused, false, Failed},
		{Staging, Refused, true, Failed},
		{Shadow, Refused, true, Failed},
		{Downloading, Rollback, false, Failed},
		{Shadow, Rollback, true, Failed},
		// From activation on, the candidate may be active: back to the previous model.
		{Activating, Refused, false, RolledBack},
		{Probation, Refused, false, RolledBack},
		{Probation, Rollback, false, RolledBack},
		// Terminal phases stay put, except a committed model the controller recalls.
		{Committed, Rollback, false, RolledBack},
		{Committed, OK, false, Committed},
		{Committed, Refused, false, Committed},
		{Failed, OK, false, Failed},
		{RolledBack, Rollback, false, RolledBack},
		{Idle, OK, false, Idle},
	}
	for _, tt := range tests {
		if got := next(tt.from, tt.r, tt.shadow); got != tt.want {
			t.Errorf("next(%s, %s, shadow=%v) = %s, want %s", tt.from, tt.r, tt.shadow, got, tt.want)
		}
	}
}

func TestResume(t *testing.T) {
	tests := []struct {
		phase    string
		restarts int
		want     string
	}{
		{Idle, 0, Idle},
		{Downloading, 0, Downloading},
		{Verifying, 0, Verifying},
		{Staging, 0, Staging},
		{Shadow, 0, Shadow},
		{Activating, 0, Activating},
		{Probation, 0, Probation},
		{Probation, MaxProbationRestarts, RolledBack},
		{Probation, MaxProbationRestarts + 5, RolledBack},
		{Committed, 0, Committed},
		{RolledBack, 0, RolledBack},
		{Failed, 0, Failed},
		{"installing", 0, RolledBack}, // a newer agent's phase: never keep its candidate
	}
	for _, tt := range tests {
		if got := resume(tt.phase, tt.restarts); got != tt.want {
			t.Errorf("resume(%s, %d) = %s, want %s", tt.phase, tt.restarts, got, tt.want)
		}
	}
}

// Every phase reaches a terminal one whatever its work returns: the machine cannot stall.
func TestEveryPathEnds(t *testing.T) {
	for _, start := range []string{Downloading, Verifying, Staging, Shadow, Activating, Probation} {
		for _, shadow := range []bool{false, true} {
			for _, r := range []Result{OK, Refused, Rollback} {
				p := start
				for i := 0; !Terminal(p); i++ {
					if i > 10 {
						t.Fatalf("from %s with %s: no terminal phase after 10 steps", start, r)
					}
					p = next(p, r, shadow)
				}
			}
		}
	}
}

func TestVersionLess(t *testing.T) {
	tests := []struct {
		have, want string
		less       bool
	}{
		{"1.2.3", "1.2.4", true},
		{"v1.10.0", "1.9.9", false},
		{"1.2.3", "1.2.3", false},
		{"0.9.0-rc1", "1.0.0", true},
		{"dev", "1.0.0", false},
		{"1.0", "1.0.0", false},
		{"2.0.0", "", false},
	}
	for _, tt := range tests {
		if got := versionLess(tt.have, tt.want); got != tt.less {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tt.have, tt.want, got, tt.less)
		}
	}
}

func TestSeconds(t *testing.T) {
	tests := []struct {
		in   float64
		want time.Duration
	}{
		{0, 0}, {-3, 0}, {math.NaN(), 0}, {1.5, 1500 * time.Millisecond},
		{1e300, maxPhaseTime}, {math.Inf(1), maxPhaseTime},
	}
	for _, tt := range tests {
		if got := seconds(tt.in); got != tt.want {
			t.Errorf("seconds(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
