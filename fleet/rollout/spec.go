package rollout

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/registry"
)

// Defaults of a rollout spec when the operator leaves them out.
const (
	DefaultCanary    = 0.05
	DefaultProbation = 10 * time.Minute
)

// DefaultWaves are the cumulative wave sizes after the canary.
var DefaultWaves = []float64{0.25, 0.5, 1}

// Normalize fills defaults into s and checks it; the error is one line.
func Normalize(s *fleet.RolloutSpec) error {
	if _, _, err := registry.ParseRef(s.Model); err != nil {
		return err
	}
	for _, sel := range s.Select {
		if _, _, err := ParseSelector(sel); err != nil {
			return err
		}
	}
	if s.Capture != nil {
		if err := s.Capture.Validate(); err != nil {
			return err
		}
	}
	if s.Canary == 0 {
		s.Canary = DefaultCanary
	}
	if len(s.Waves) == 0 {
		s.Waves = DefaultWaves
	}
	if s.SuccessThreshold == 0 {
		s.SuccessThreshold = 1
	}
	if s.Probation == 0 {
		s.Probation = DefaultProbation
	}
	frac := func(name string, v float64) error {
		if math.IsNaN(v) || v < 0 || v > 1 {
			return fmt.Errorf("%s %v: want a fraction from 0 to 1 (0%% to 100%%)", name, v)
		}
		return nil
	}
	if err := frac("canary", s.Canary); err != nil {
		return err
	}
	if s.Canary == 1 {
		return fmt.Errorf("canary 100%%: a canary must be a part of the selection")
	}
	prev := s.Canary
	for i, w := range s.Waves {
		if err := frac("wave", w); err != nil {
			return err
		}
		if w <= prev {
			return fmt.Errorf("waves must grow: wave %d (%s) is not above %s", i+1, Percent(w), Percent(prev))
		}
		prev = w
	}
	if prev != 1 {
		return fmt.Errorf("the last wave is %s: it must be 100%%", Percent(prev))
	}
	for _, g := range []struct {
		name string
		v    float64
	}{{"success threshold", s.SuccessThreshold}, {"max failure", s.Gates.MaxFailure}, {"min shadow agreement", s.Gates.MinShadowAgreement}, {"max error rate", s.Gates.MaxErrorRate}} {
		if err := frac(g.name, g.v); err != nil {
			return err
		}
	}
	if s.SuccessThreshold == 0 {
		return fmt.Errorf("success threshold 0%%: at least one device must succeed")
	}
	for _, g := range []struct {
		name string
		v    float64
	}{{"max p99 latency ratio", s.Gates.MaxP99LatencyRatio}, {"max drift psi", s.Gates.MaxDriftPSI}} {
		if math.IsNaN(g.v) || math.IsInf(g.v, 0) || g.v < 0 {
			return fmt.Errorf("%s %v: want a positive number (0 disables it)", g.name, g.v)
		}
	}
	if s.Probation < 0 || s.Shadow < 0 || s.Probation > 30*24*time.Hour || s.Shadow > 30*24*time.Hour {
		return fmt.Errorf("probation %s, shadow %s: want 0 to 30 days", s.Probation, s.Shadow)
	}
	if s.Drift != nil {
		if err := s.Drift.Validate(); err != nil {
			return err
		}
	}
	if s.Gates.MinShadowAgreement > 0 && s.Shadow == 0 {
		return fmt.Errorf("min shadow agreement needs a shadow period (--shadow)")
	}
	return nil
}

// ParseSelector splits KEY=VALUE. Keys are device tags, or "id" (the device id) and "model"
// (the name of the model the device runs).
func ParseSelector(s string) (key, value string, err error) {
	key, value, ok := strings.Cut(s, "=")
	if !ok || key == "" || value == "" || strings.ContainsAny(key, " \t\n=") {
		return "", "", fmt.Errorf("selector %q: want KEY=VALUE", s)
	}
	return key, value, nil
}

// ParsePercent reads "5%" or "0.05" as a fraction; values above 1 without a % sign are
// refused, so "5" is not silently read as 500%.
func ParsePercent(s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(t, "%"), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a percentage (like 5%% or 0.05)", s)
	}
	if pct {
		v /= 100
	}
	if v < 0 || v > 1 {
		return 0, fmt.Errorf("%q is outside 0%% to 100%%", s)
	}
	return v, nil
}

// ParsePercents reads a comma-separated list such as "25%,50%,100%".
func ParsePercents(s string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		v, err := ParsePercent(p)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Percent formats a fraction as a percentage with up to two decimals.
func Percent(v float64) string {
	return strconv.FormatFloat(math.Round(v*10000)/100, 'f', -1, 64) + "%"
}
