// Command evaldrift measures the drift monitor on the simulated vibration sensor and writes
// the table in docs/monitoring.md (`make eval-drift`). Every run is deterministic: the signals
// come from fixed seeds and the monitor's clock is sample time, not the wall clock.
//
// Method. A baseline is computed, as the trainer would, from healthy machines (seeds 1–8).
// Each scenario then runs the monitor, with the default thresholds and windows of 1,000
// inferences (64-sample windows, stride 32, 50 Hz: 640 s each), on other machines (seeds
// 101…), through the agent's own drift injection (agent/sensor/simdrift). The drift starts
// on a window boundary after a 12-window warm-up; the delay is the number of windows from
// that onset to the first window a score flags (1 = the first drifted window). Shift sizes
// are in the baseline's standard deviation σ. Without drift, every flagged window counts as a
// false alarm.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/agent/drift"
	"github.com/outpost-ml/outpost/agent/sensor/simdrift"
	"github.com/outpost-ml/outpost/agent/sensor/simsensor"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/sim"
)

const (
	rateHz     = 50
	winSamples = 64
	stride     = 32
	inferences = drift.DefaultWindow
	// windowDur is one monitoring window in sample time.
	windowDur      = time.Duration(inferences*stride) * time.Second / rateHz
	warmup         = 12 // windows before the drift starts
	horizon        = 24 // windows after the onset in which a detection counts
	devices        = 4  // machines per drift scenario
	noDriftDays    = 8  // device-days without drift
	baselineSeeds  = 8
	baselineWindow = 500 // training windows per baseline seed
)

var scores = []string{wire.ScorePSI, wire.ScoreKS, wire.ScoreJS, wire.ScoreCUSUM}

func main() {
	doc := flag.String("doc", "", "rewrite the table between the eval-drift markers in this Markdown file (default: print it)")
	flag.Parse()
	if err := run(*doc, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "evaldrift:", err)
		os.Exit(1)
	}
}

func run(doc string, out io.Writer) error {
	start := time.Now()
	man, sigma, err := baseline()
	if err != nil {
		return err
	}
	type scenario struct {
		name string
		spec string // simdrift drift list
	}
	onset := time.Duration(warmup) * windowDur
	at := "@" + onset.String()
	scen := []scenario{
		{"mean shift 0.5σ", fmt.Sprintf("meanshift:%g", 0.5*sigma) + at},
		{"mean shift 1σ", fmt.Sprintf("meanshift:%g", sigma) + at},
		{"mean shift 2σ", fmt.Sprintf("meanshift:%g", 2*sigma) + at},
		{"variance ×2 (σ×√2)", "variance:1.41421356" + at},
		{"stuck at last value", "stuck" + at},
		{"gradual, 1σ per hour", fmt.Sprintf("gradual:%g", sigma/3600) + at},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Baseline σ of the healthy vibration channel: %.4f g. Windows of %d inferences (%v of sample time); thresholds: PSI > %g, KS > %g, JS > %g, CUSUM k = %g, h = %g; histogram scores need %d values.\n\n",
		sigma, inferences, windowDur, bundle.DefaultDriftThresholds.PSI, bundle.DefaultDriftThresholds.KS, bundle.DefaultDriftThresholds.JS,
		bundle.DefaultDriftThresholds.CUSUMK, bundle.DefaultDriftThresholds.CUSUMH, bundle.DefaultDriftThresholds.MinSamples)
	fmt.Fprintf(&b, "Detection delay in windows after the onset, worst of %d machines (— = not within %d windows):\n\n", devices, horizon)
	b.WriteString("| scenario | PSI | KS | JS | CUSUM | any |\n|---|---|---|---|---|---|\n")
	worst1σ := 0
	for _, sc := range scen {
		ds, err := simdrift.ParseDrifts(sc.spec)
		if err != nil {
			return err
		}
		worst := make([]int, len(scores)+1)
		best := make([]int, len(scores)+1)
		caught := make([]int, len(scores)+1)
		for k := range best {
			best[k] = horizon + 1
		}
		for d := range devices {
			feats, err := simulate(man, uint64(101+d), ds, warmup+horizon)
			if err != nil {
				return err
			}
			flags := flags(feats)
			for k := range worst {
				delay := horizon + 1 // not detected
				for w := warmup; w < len(flags); w++ {
					if flags[w][k] {
						delay = w - warmup + 1
						break
					}
				}
				worst[k], best[k] = max(worst[k], delay), min(best[k], delay)
				if delay <= horizon {
					caught[k]++
				}
			}
		}
		fmt.Fprintf(&b, "| %s |", sc.name)
		for k, v := range worst {
			switch {
			case v <= horizon:
				fmt.Fprintf(&b, " %d |", v)
			case caught[k] > 0:
				fmt.Fprintf(&b, " — (%d of %d machines, from %d) |", caught[k], devices, best[k])
			default:
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
		if sc.name == "mean shift 1σ" {
			worst1σ = worst[len(scores)]
		}
	}
	day := int((24 * time.Hour) / windowDur)
	alarms := make([]int, len(scores)+1)
	var peak [4]float64 // largest PSI, KS, JS, CUSUM seen without drift
	for d := range noDriftDays {
		feats, err := simulate(man, uint64(201+d), nil, day)
		if err != nil {
			return err
		}
		for _, f := range feats {
			peak[0], peak[1], peak[2], peak[3] = max(peak[0], f.PSI), max(peak[1], f.KS), max(peak[2], f.JS), max(peak[3], f.CUSUM)
		}
		for _, f := range flags(feats) {
			for k, v := range f {
				if v {
					alarms[k]++
				}
			}
		}
	}
	fmt.Fprintf(&b, "\nFalse alarms per device-day without drift (flagged windows of %d per day, %d device-days, machines %d–%d):\n\n", day, noDriftDays, 201, 200+noDriftDays)
	b.WriteString("| PSI | KS | JS | CUSUM | any |\n|---|---|---|---|---|\n|")
	for _, a := range alarms {
		fmt.Fprintf(&b, " %.2f |", float64(a)/noDriftDays)
	}
	fmt.Fprintf(&b, "\n\nLargest score in any window without drift: PSI %.3f, KS %.3f, JS %.3f, CUSUM %.3f.", peak[0], peak[1], peak[2], peak[3])
	fa := float64(alarms[len(scores)]) / noDriftDays
	fmt.Fprintf(&b, "\n\nTargets: 1σ mean shift detected within 5 windows: %s (worst %d); at most 1 false alarm per device-day: %s (%.2f).\n",
		verdict(worst1σ <= 5), worst1σ, verdict(fa <= 1), fa)
	table := b.String()
	slog.Info("evaldrift done", "elapsed", time.Since(start).Round(time.Millisecond))
	if doc == "" {
		_, err := io.WriteString(out, table)
		return err
	}
	return rewrite(doc, table)
}

// parseShift is a mean shift of d from the first sample.
func parseShift(d float64) ([]simdrift.Drift, error) {
	return simdrift.ParseDrifts(fmt.Sprintf("meanshift:%g@0s", d))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// baseline computes a manifest baseline of the healthy vibration channel over several
// machines, as a trainer would from its training windows.
func baseline() (*bundle.Manifest, float64, error) {
	var windows, outputs [][]float64
	for s := range baselineSeeds {
		v := sim.NewVibration(sim.VibrationConfig{Seed: uint64(1 + s), SampleRateHz: rateHz})
		for range baselineWindow {
			windows = append(windows, v.Window(make([]float64, winSamples)))
			outputs = append(outputs, nil)
		}
	}
	b, err := bundle.ComputeBaseline(fmt.Sprintf("healthy vibration, seeds 1-%d", baselineSeeds), []string{"accel"}, windows, outputs, nil)
	if err != nil {
		return nil, 0, err
	}
	return &bundle.Manifest{Baseline: b}, b.Inputs[0].Std, nil
}

// simulate runs one machine with drifts through the monitor for n windows and returns the
// channel's summary of each window.
func simulate(man *bundle.Manifest, seed uint64, ds []simdrift.Drift, n int) ([]wire.DriftFeature, error) {
	mon, err := drift.New(man, wire.ModelRef{Name: "eval", Version: "1.0.0"}, drift.Config{Device: "eval"})
	if err != nil {
		return nil, err
	}
	src := simdrift.Wrap(simsensor.NewVibration(simsensor.VibrationConfig{Seed: seed, SampleRateHz: rateHz}), ds)
	defer src.Close()
	ctx := context.Background()
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ring := make([]float32, winSamples)
	var sample [1]float32
	feats := make([]wire.DriftFeature, 0, n)
	for i := 0; len(feats) < n; i++ {
		if _, err := src.Read(ctx, sample[:]); err != nil {
			return nil, err
		}
		ring[i%winSamples] = sample[0]
		if i+1 < winSamples || (i+1-winSamples)%stride != 0 {
			continue
		}
		// The monitor takes the window's samples in any order, so the ring goes in as it is.
		r := mon.Observe(epoch.Add(time.Duration(i)*time.Second/rateHz), ring, nil)
		if r == nil {
			continue
		}
		feats = append(feats, r.Summary.Features[0])
	}
	return feats, nil
}

// flags says, per window, whether each score (and any score, last) flagged the feature.
func flags(feats []wire.DriftFeature) [][]bool {
	out := make([][]bool, len(feats))
	for w, df := range feats {
		out[w] = make([]bool, len(scores)+1)
		for _, d := range df.Drifted {
			for k, s := range scores {
				if d == s {
					out[w][k] = true
				}
			}
			out[w][len(scores)] = true
		}
	}
	return out
}

const (
	beginMarker = "<!-- eval-drift:begin (make eval-drift rewrites this part) -->"
	endMarker   = "<!-- eval-drift:end -->"
)

// rewrite replaces the text between the markers in path with table.
func rewrite(path, table string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q … %q markers", path, beginMarker, endMarker)
	}
	s = s[:i+len(beginMarker)] + "\n" + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
