package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// `outpost rollout create|list|status|pause|resume|abort`: rollouts over the controller's
// HTTP API (fleet/rollout has the engine, docs/updates.md the rules).

func init() { register(newRolloutCmd) }

func newRolloutCmd() *cobra.Command {
	c := &cobra.Command{Use: "rollout", Short: "Roll a registered model out to the fleet in gated waves"}
	c.AddCommand(newRolloutCreateCmd(), newRolloutListCmd(), newRolloutStatusCmd())
	for _, action := range []string{"pause", "resume", "abort"} {
		c.AddCommand(newRolloutActionCmd(action))
	}
	return c
}

// rolloutFlags are create's flags as typed; spec turns them into a RolloutSpec.
type rolloutFlags struct {
	selects                                         []string
	canary, waves, maxFailure, minAgreement, thresh string
	maxErrorRate                                    string
	probation, shadow                               time.Duration
	maxLatency, maxPSI                              float64
	drift                                           wire.DriftOverrides // --drift-*: the devices' drift monitor settings
	// Capture policy sent with the desired state (capture.go).
	capRandom, capLowConf, capDrift string
	capBand                         float64
	capHold                         time.Duration
	capPerHour                      int
}

func (f *rolloutFlags) spec(model string) (fleet.RolloutSpec, error) {
	s := fleet.RolloutSpec{Model: model, Select: f.selects, Probation: f.probation, Shadow: f.shadow,
		Gates: fleet.Gates{MaxP99LatencyRatio: f.maxLatency, MaxDriftPSI: f.maxPSI}}
	if f.drift != (wire.DriftOverrides{}) {
		d := f.drift
		s.Drift = &d
	}
	var err error
	pct := func(flag, v string, into *float64) {
		if err == nil && v != "" {
			if *into, err = rollout.ParsePercent(v); err != nil {
				err = fmt.Errorf("--%s: %w", flag, err)
			}
		}
	}
	pct("canary", f.canary, &s.Canary)
	pct("max-failure", f.maxFailure, &s.Gates.MaxFailure)
	pct("min-shadow-agreement", f.minAgreement, &s.Gates.MinShadowAgreement)
	pct("success-threshold", f.thresh, &s.SuccessThreshold)
	pct("max-error-rate", f.maxErrorRate, &s.Gates.MaxErrorRate)
	if f.capRandom != "" || f.capLowConf != "" || f.capDrift != "" {
		p := &wire.CapturePolicy{Band: f.capBand, DriftHoldS: f.capHold.Seconds(), MaxPerHour: f.capPerHour}
		pct("capture-random", f.capRandom, &p.Random)
		pct("capture-low-confidence", f.capLowConf, &p.LowConfidence)
		pct("capture-drift", f.capDrift, &p.Drift)
		s.Capture = p
	}
	if err == nil && f.waves != "" {
		if s.Waves, err = rollout.ParsePercents(f.waves); err != nil {
			err = fmt.Errorf("--waves: %w", err)
		}
	}
	if err != nil {
		return s, err
	}
	return s, rollout.Normalize(&s)
}

func newRolloutCreateCmd() *cobra.Command {
	var af apiFlags
	var rf rolloutFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "create NAME@VERSION",
		Short: "Start a rollout: canary first, then the waves, each gated on the model's behaviour",
		Example: `  outpost rollout create vibration-anomaly-f32@1.1.0 --select site=north --canary 5% \
    --waves 25%,50%,100% --probation 10m --shadow 5m --max-failure 2% \
    --max-p99-latency-ratio 1.5 --min-shadow-agreement 95% --max-drift-psi 0.2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := registry.ParseRef(args[0]); err != nil {
				return err
			}
			spec, err := rf.spec(args[0])
			if err != nil {
				return err
			}
			cl, err := af.client()
			if err != nil {
				return err
			}
			body, err := json.Marshal(spec)
			if err != nil {
				return err
			}
			var st rollout.Status
			if err := cl.do(cmd.Context(), "POST", "/v1/rollouts", "application/json", body, &st); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rollout %s created: %s to %d devices in %d waves (%d skipped); follow it with: outpost rollout status %s --watch\n",
				st.ID, spec.Model, devicesIn(st.Rollout), len(st.Waves), len(st.Skipped), st.ID)
			return nil
		},
	}
	af.add(c)
	f := c.Flags()
	f.StringArrayVar(&rf.selects, "select", nil, "device tag KEY=VALUE the devices must have (repeatable; keys id and model match the device id and the model it runs)")
	f.StringVar(&rf.canary, "canary", "5%", "share of the selected devices in the canary wave")
	f.StringVar(&rf.waves, "waves", "25%,50%,100%", "cumulative shares of the selection after the canary; the last must be 100%")
	f.DurationVar(&rf.probation, "probation", rollout.DefaultProbation, "how long a device watches the activated model before committing it")
	f.DurationVar(&rf.shadow, "shadow", 0, "run the candidate beside the active model this long before activating it (0: no shadow)")
	f.StringVar(&rf.maxFailure, "max-failure", "0%", "halt when more than this share of a wave's devices fail")
	f.StringVar(&rf.thresh, "success-threshold", "100%", "share of a wave that must succeed before the next wave starts")
	f.Float64Var(&rf.maxLatency, "max-p99-latency-ratio", 0, "fail a device whose candidate p99 latency exceeds this multiple of the previous model's (0: off)")
	f.StringVar(&rf.minAgreement, "min-shadow-agreement", "", "fail a device whose shadow windows agree with the active model less than this (needs --shadow)")
	f.Float64Var(&rf.maxPSI, "max-drift-psi", 0, "fail a device whose drift PSI against the model's baseline exceeds this in probation (0: off)")
	f.StringVar(&rf.maxErrorRate, "max-error-rate", "", "fail a device whose share of failed windows in probation exceeds this")
	f.Float64Var(&rf.drift.PSI, "drift-psi", 0, "drift monitor PSI threshold on the rollout's devices (0: the manifest's)")
	f.Float64Var(&rf.drift.KS, "drift-ks", 0, "drift monitor KS threshold (0: the manifest's)")
	f.Float64Var(&rf.drift.JS, "drift-js", 0, "drift monitor Jensen-Shannon threshold (0: the manifest's)")
	f.Float64Var(&rf.drift.CUSUMH, "drift-cusum-h", 0, "drift monitor CUSUM decision threshold (0: the manifest's)")
	f.Int64Var(&rf.drift.Window, "drift-window", 0, "drift monitor window in inferences (0: the agent's --drift-window)")
	f.StringVar(&rf.capRandom, "capture-random", "", "capture this share of all windows for retraining (docs/monitoring.md; default: no capture)")
	f.StringVar(&rf.capLowConf, "capture-low-confidence", "", "capture this share of windows whose score is within --capture-band of the model's threshold")
	f.Float64Var(&rf.capBand, "capture-band", 0, "half-width of the low-confidence band around the threshold, in score units")
	f.StringVar(&rf.capDrift, "capture-drift", "", "capture this share of windows while the device's drift monitor reports drift")
	f.DurationVar(&rf.capHold, "capture-drift-hold", 0, "keep the drift capture rate this long after the last drifted window")
	f.IntVar(&rf.capPerHour, "capture-per-hour", 0, fmt.Sprintf("most windows a device captures per hour (0: %d)", wire.DefaultCapturePerHour))
	f.BoolVar(&asJSON, "json", false, "print the new rollout as JSON")
	return c
}

func devicesIn(r fleet.Rollout) int {
	n := 0
	for _, w := range r.Waves {
		n += len(w.Devices)
	}
	return n
}

func newRolloutListCmd() *cobra.Command {
	var af apiFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List rollouts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := af.client()
			if err != nil {
				return err
			}
			var all []rollout.Status
			if err := cl.do(cmd.Context(), "GET", "/v1/rollouts", "", nil, &all); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), all)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tMODEL\tSTATE\tWAVE\tDEVICES\tSUCCEEDED\tFAILED\tCREATED")
			for _, s := range all {
				var ok, failed int
				for _, w := range s.WaveStatus {
					ok += w.Succeeded
					failed += w.Failed
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.ID, s.Spec.Model, s.State, s.Waves[s.Wave].Name, devicesIn(s.Rollout), ok, failed, s.Created.Local().Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		},
	}
	af.add(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newRolloutStatusCmd() *cobra.Command {
	var af apiFlags
	var asJSON, watch bool
	var every time.Duration
	c := &cobra.Command{
		Use:   "status ID",
		Short: "Show a rollout: a progress bar per wave (done / in progress / failed) and the gate figures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := af.client()
			if err != nil {
				return err
			}
			if every <= 0 {
				return fmt.Errorf("--interval %s: want a positive duration", every)
			}
			w := cmd.OutOrStdout()
			tty := isTerminal(w)
			var last []byte
			for {
				var st rollout.Status
				if err := cl.do(cmd.Context(), "GET", "/v1/rollouts/"+args[0], "", nil, &st); err != nil {
					return err
				}
				var buf bytes.Buffer
				if asJSON {
					b, _ := json.Marshal(st)
					buf.Write(append(b, '\n')) // one line per change: easy for scripts to follow
				} else {
					renderStatus(&buf, st)
				}
				if !bytes.Equal(buf.Bytes(), last) {
					if tty && watch && !asJSON {
						io.WriteString(w, "\033[H\033[2J") // redraw in place
					} else if last != nil && !asJSON {
						fmt.Fprintln(w)
					}
					w.Write(buf.Bytes())
					last = buf.Bytes()
				}
				if !watch || finished(st) {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(every):
				}
			}
		},
	}
	af.add(c)
	c.Flags().BoolVar(&watch, "watch", false, "redraw until the rollout completes, halts or is aborted")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (with --watch: one line per change)")
	c.Flags().DurationVar(&every, "interval", 2*time.Second, "poll interval with --watch")
	return c
}

// finished: no device of the rollout can still change its outcome.
func finished(st rollout.Status) bool {
	if st.State == fleet.RolloutRunning || st.State == fleet.RolloutPaused {
		return false
	}
	for _, w := range st.WaveStatus {
		if w.InProgress > 0 {
			return false
		}
	}
	return true
}

const barWidth = 30

// bar draws a wave's devices as a fixed-width bar: █ succeeded, ▒ in progress, ✗ failed or
// rolled back, · not yet told. Each kind gets at least one cell when it has any device.
func bar(ws rollout.WaveStatus) string {
	if ws.Total == 0 {
		return strings.Repeat(" ", barWidth)
	}
	counts := []int{ws.Succeeded, ws.InProgress, ws.Failed + ws.RolledBack, ws.Waiting}
	glyphs := []string{"█", "▒", "✗", "·"}
	cells := make([]int, len(counts))
	used := 0
	for i, n := range counts {
		if n > 0 {
			cells[i] = max(1, n*barWidth/ws.Total)
			used += cells[i]
		}
	}
	// Give rounding leftovers (or take the excess) from the largest segment.
	big := 0
	for i := range counts {
		if counts[i] > counts[big] {
			big = i
		}
	}
	cells[big] += barWidth - used
	var b strings.Builder
	for i, c := range cells {
		b.WriteString(strings.Repeat(glyphs[i], max(0, c)))
	}
	return b.String()
}

func renderStatus(w io.Writer, st rollout.Status) {
	fmt.Fprintf(w, "rollout %s  %s  %s", st.ID, st.Spec.Model, strings.ToUpper(st.State))
	if st.State == fleet.RolloutRunning || st.State == fleet.RolloutPaused {
		fmt.Fprintf(w, "  (wave %d of %d: %s)", st.Wave+1, len(st.Waves), st.Waves[st.Wave].Name)
	}
	fmt.Fprintln(w)
	if st.Reason != "" {
		fmt.Fprintf(w, "reason: %s\n", st.Reason)
	}
	g := st.Spec.Gates
	var gates []string
	gates = append(gates, "failure ≤ "+rollout.Percent(g.MaxFailure))
	if g.MaxP99LatencyRatio > 0 {
		gates = append(gates, fmt.Sprintf("p99 ratio ≤ %.2f", g.MaxP99LatencyRatio))
	}
	if g.MinShadowAgreement > 0 {
		gates = append(gates, "shadow agreement ≥ "+rollout.Percent(g.MinShadowAgreement))
	}
	if g.MaxDriftPSI > 0 {
		gates = append(gates, fmt.Sprintf("drift PSI ≤ %.2f", g.MaxDriftPSI))
	}
	if g.MaxErrorRate > 0 {
		gates = append(gates, "error rate ≤ "+rollout.Percent(g.MaxErrorRate))
	}
	fmt.Fprintf(w, "gates: %s; success threshold %s; probation %s, shadow %s\n\n", strings.Join(gates, ", "), rollout.Percent(st.Spec.SuccessThreshold), st.Spec.Probation, st.Spec.Shadow)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tSTATE\tPROGRESS\tDONE\tRUNNING\tFAILED\tBACK\tFAILURE\tP99 RATIO\tAGREEMENT\tDRIFT PSI")
	opt := func(p *float64, f func(float64) string) string {
		if p == nil {
			return "-"
		}
		return f(*p)
	}
	ratio := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	for _, ws := range st.WaveStatus {
		fmt.Fprintf(tw, "%s\t%s\t[%s]\t%d/%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", ws.Name, ws.State, bar(ws), ws.Succeeded, ws.Total,
			ws.InProgress, ws.Failed, ws.RolledBack, rollout.Percent(ws.FailureRate),
			opt(ws.P99LatencyRatio, ratio), opt(ws.ShadowAgreement, rollout.Percent), opt(ws.DriftPSI, ratio))
	}
	tw.Flush()
	// Failed devices, with why: the operator's next question.
	var failed []string
	for _, wv := range st.Waves {
		for _, d := range wv.Devices {
			if d.Outcome == fleet.OutcomeFailed {
				failed = append(failed, fmt.Sprintf("  %s: %s", d.ID, d.Reason))
			}
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\nfailed devices:\n%s\n", strings.Join(failed, "\n"))
	}
	if len(st.Skipped) > 0 {
		fmt.Fprintf(w, "\nskipped: %d device(s) (first: %s: %s)\n", len(st.Skipped), st.Skipped[0].ID, st.Skipped[0].Reason)
	}
}

func newRolloutActionCmd(action string) *cobra.Command {
	var af apiFlags
	short := map[string]string{
		"pause":  "Stop a rollout from starting further waves (gates keep watching)",
		"resume": "Continue a paused rollout",
		"abort":  "Stop a rollout for good; unfinished devices of its current wave roll back",
	}[action]
	c := &cobra.Command{
		Use:   action + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := af.client()
			if err != nil {
				return err
			}
			var st rollout.Status
			if err := cl.do(cmd.Context(), "POST", "/v1/rollouts/"+args[0]+"/"+action, "", nil, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rollout %s is %s\n", st.ID, st.State)
			return nil
		},
	}
	af.add(c)
	return c
}
