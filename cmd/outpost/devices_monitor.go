package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// `outpost devices monitor`: per-device drift thresholds and capture policy, outside any
// rollout (docs/monitoring.md, fleet/devicepolicy.go).

// monitorFlags are the settings flags as typed; apply changes only what was given.
type monitorFlags struct {
	drift                           wire.DriftOverrides
	capRandom, capLowConf, capDrift string
	capBand                         float64
	capHold                         time.Duration
	capPerHour                      int
	clear, clearDrift, clearCapture bool
}

var driftFlagNames = []string{"drift-psi", "drift-ks", "drift-js", "drift-cusum-h", "drift-window", "drift-min-samples"}
var captureFlagNames = []string{"capture-random", "capture-low-confidence", "capture-band", "capture-drift", "capture-drift-hold", "capture-per-hour"}

// changes reports whether any settings flag was given.
func (f *monitorFlags) changes(cmd *cobra.Command) bool {
	for _, n := range append(append([]string{"clear", "clear-drift", "clear-capture"}, driftFlagNames...), captureFlagNames...) {
		if cmd.Flags().Changed(n) {
			return true
		}
	}
	return false
}

// apply returns cur with the given flags applied: drift fields one by one (the others kept),
// a capture policy whole (capture fields belong together) when any capture flag is given.
func (f *monitorFlags) apply(cmd *cobra.Command, cur fleet.MonitorSettings) (fleet.MonitorSettings, error) {
	if f.clear {
		return fleet.MonitorSettings{}, nil
	}
	out := cur
	if f.clearDrift {
		out.Drift = nil
	}
	if f.clearCapture {
		out.Capture = nil
	}
	changed := func(n string) bool { return cmd.Flags().Changed(n) }
	if slices.ContainsFunc(driftFlagNames, changed) {
		d := wire.DriftOverrides{}
		if out.Drift != nil {
			d = *out.Drift
		}
		set := map[string]func(){
			"drift-psi": func() { d.PSI = f.drift.PSI }, "drift-ks": func() { d.KS = f.drift.KS },
			"drift-js": func() { d.JS = f.drift.JS }, "drift-cusum-h": func() { d.CUSUMH = f.drift.CUSUMH },
			"drift-window": func() { d.Window = f.drift.Window }, "drift-min-samples": func() { d.MinSamples = f.drift.MinSamples },
		}
		for _, n := range driftFlagNames {
			if changed(n) {
				set[n]()
			}
		}
		out.Drift = &d
		if d == (wire.DriftOverrides{}) {
			out.Drift = nil // every field back to 0: nothing of the device's own
		}
	}
	if slices.ContainsFunc(captureFlagNames, changed) {
		p := &wire.CapturePolicy{Band: f.capBand, DriftHoldS: f.capHold.Seconds(), MaxPerHour: f.capPerHour}
		var err error
		pct := func(flag, v string, into *float64) {
			if err == nil && v != "" {
				if *into, err = rollout.ParsePercent(v); err != nil {
					err = fmt.Errorf("--%s: %w", flag, err)
				}
			}
		}
		pct("capture-random", f.capRandom, &p.Random)
		pct("capture-low-confidence", f.capLowConf, &p.LowConfidence)
		pct("capture-drift", f.capDrift, &p.Drift)
		if err != nil {
			return cur, err
		}
		out.Capture = p
	}
	return out, out.Validate()
}

func newDevicesMonitorCmd() *cobra.Command { return newDevicesMonitorCmdFor(&monitorFlags{}) }

// newDevicesMonitorCmdFor binds the settings flags to mf (tests read them back).
func newDevicesMonitorCmdFor(mf *monitorFlags) *cobra.Command {
	var af apiFlags
	var selects []string
	var asJSON bool
	c := &cobra.Command{
		Use:   "monitor [ID...]",
		Short: "Show or set devices' own drift thresholds and data-capture policy",
		Long: `Show or set per-device monitoring settings: drift thresholds and window, and the
data-capture policy, outside any rollout. They are merged into the device's desired state
(the device's values win over its rollout's: drift field by field, the capture policy whole)
and published at once, even with no rollout running; a device whose update a rollout is
still following gets them when that update has its outcome.

With no ID and no --select, lists every device that has settings of its own. Flags change
only what they name; --clear removes all of a device's own settings.`,
		Example: `  outpost devices monitor dev-7 --drift-psi 0.4 --drift-window 500
  outpost devices monitor dev-7 --capture-random 5% --capture-per-hour 60
  outpost devices monitor --select site=north --capture-drift 100% --capture-drift-hold 10m
  outpost devices monitor dev-7 --clear`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := af.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ids := slices.Clone(args)
			if len(selects) > 0 {
				sel, err := selectByTags(cmd, cl, selects)
				if err != nil {
					return err
				}
				ids = append(ids, sel...)
			}
			slices.Sort(ids)
			ids = slices.Compact(ids)
			var out []rollout.PolicyStatus
			switch {
			case len(ids) == 0 && len(selects) > 0:
				return fmt.Errorf("--select %s: no device has these tags", strings.Join(selects, " "))
			case len(ids) == 0 && mf.changes(cmd):
				return fmt.Errorf("name the devices to change (ID... or --select KEY=VALUE)")
			case len(ids) == 0:
				if err := cl.do(ctx, "GET", "/v1/monitor-settings", "", nil, &out); err != nil {
					return err
				}
			default:
				for _, id := range ids {
					path := "/v1/devices/" + url.PathEscape(id) + "/monitor"
					var st rollout.PolicyStatus
					if err := cl.do(ctx, "GET", path, "", nil, &st); err != nil {
						return err
					}
					if mf.changes(cmd) {
						var cur fleet.MonitorSettings
						if st.Settings != nil {
							cur = st.Settings.MonitorSettings
						}
						next, err := mf.apply(cmd, cur)
						if err != nil {
							return err
						}
						st = rollout.PolicyStatus{}
						if next.Empty() {
							err = cl.do(ctx, "DELETE", path, "", nil, &st)
						} else {
							body, merr := json.Marshal(next)
							if merr != nil {
								return merr
							}
							err = cl.do(ctx, "PUT", path, "application/json", body, &st)
						}
						if err != nil {
							return fmt.Errorf("%s: %w", id, err)
						}
					}
					out = append(out, st)
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			return printPolicies(cmd.OutOrStdout(), out)
		},
	}
	af.add(c)
	f := c.Flags()
	f.StringArrayVar(&selects, "select", nil, "KEY=VALUE: the devices with this tag (repeat: all must match), resolved now")
	f.Float64Var(&mf.drift.PSI, "drift-psi", 0, "drift monitor PSI threshold (0: the rollout's, else the manifest's)")
	f.Float64Var(&mf.drift.KS, "drift-ks", 0, "drift monitor KS threshold (0: the rollout's, else the manifest's)")
	f.Float64Var(&mf.drift.JS, "drift-js", 0, "drift monitor Jensen-Shannon threshold (0: the rollout's, else the manifest's)")
	f.Float64Var(&mf.drift.CUSUMH, "drift-cusum-h", 0, "drift monitor CUSUM decision threshold (0: the rollout's, else the manifest's)")
	f.Int64Var(&mf.drift.MinSamples, "drift-min-samples", 0, "values a feature needs in a window before its scores count (0: the rollout's, else the manifest's)")
	f.Int64Var(&mf.drift.Window, "drift-window", 0, "drift monitor window in inferences (0: the rollout's, else the agent's --drift-window)")
	f.StringVar(&mf.capRandom, "capture-random", "", "capture this share of all windows for retraining")
	f.StringVar(&mf.capLowConf, "capture-low-confidence", "", "capture this share of windows whose score is within --capture-band of the model's threshold")
	f.Float64Var(&mf.capBand, "capture-band", 0, "half-width of the low-confidence band around the threshold, in score units")
	f.StringVar(&mf.capDrift, "capture-drift", "", "capture this share of windows while the device's drift monitor reports drift")
	f.DurationVar(&mf.capHold, "capture-drift-hold", 0, "keep the drift capture rate this long after the last drifted window")
	f.IntVar(&mf.capPerHour, "capture-per-hour", 0, fmt.Sprintf("most windows a device captures per hour (0: %d)", wire.DefaultCapturePerHour))
	f.BoolVar(&mf.clear, "clear", false, "remove all of the device's own settings")
	f.BoolVar(&mf.clearDrift, "clear-drift", false, "remove the device's own drift settings")
	f.BoolVar(&mf.clearCapture, "clear-capture", false, "remove the device's own capture policy")
	f.BoolVar(&asJSON, "json", false, "print the status as JSON")
	return c
}

// selectByTags returns the devices whose tags match every KEY=VALUE.
func selectByTags(cmd *cobra.Command, cl *apiClient, selects []string) ([]string, error) {
	want := map[string]string{}
	for _, s := range selects {
		k, v, err := rollout.ParseSelector(s)
		if err != nil {
			return nil, err
		}
		want[k] = v
	}
	var all map[string]map[string]string
	if err := cl.do(cmd.Context(), "GET", "/v1/tags", "", nil, &all); err != nil {
		return nil, err
	}
	var out []string
	for _, id := range slices.Sorted(maps.Keys(all)) {
		match := true
		for k, v := range want {
			if all[id][k] != v {
				match = false
			}
		}
		if match {
			out = append(out, id)
		}
	}
	return out, nil
}

func printPolicies(w io.Writer, ps []rollout.PolicyStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tOWN SETTINGS\tIN DESIRED STATE\tGEN\tSTATE")
	for _, p := range ps {
		own := "(none)"
		if p.Settings != nil {
			own = formatSettings(p.Settings.MonitorSettings)
		}
		state := "published"
		switch {
		case p.Pending != "":
			state = p.Pending
		case p.Generation == 0:
			state = "-"
		case !p.Published:
			state = "publishing"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Device, own, formatSettings(p.Effective), p.Generation, state)
	}
	return tw.Flush()
}

// formatSettings writes settings in one short line: "psi=0.4 window=500; capture random=5%".
func formatSettings(s fleet.MonitorSettings) string {
	num := func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }
	pct := func(v float64) string { return strconv.FormatFloat(v*100, 'g', 4, 64) + "%" }
	var parts []string
	if d := s.Drift; d != nil {
		for _, f := range []struct {
			name string
			v    float64
		}{{"psi", d.PSI}, {"ks", d.KS}, {"js", d.JS}, {"cusum_k", d.CUSUMK}, {"cusum_h", d.CUSUMH}} {
			if f.v != 0 {
				parts = append(parts, f.name+"="+num(f.v))
			}
		}
		if d.MinSamples != 0 {
			parts = append(parts, "min_samples="+strconv.FormatInt(d.MinSamples, 10))
		}
		if d.Window != 0 {
			parts = append(parts, "window="+strconv.FormatInt(d.Window, 10))
		}
	}
	if c := s.Capture; c != nil {
		cp := []string{"capture"}
		if c.Random != 0 {
			cp = append(cp, "random="+pct(c.Random))
		}
		if c.LowConfidence != 0 {
			cp = append(cp, "low_confidence="+pct(c.LowConfidence)+"±"+num(c.Band))
		}
		if c.Drift != 0 {
			cp = append(cp, "drift="+pct(c.Drift))
			if c.DriftHoldS != 0 {
				cp = append(cp, "hold="+(time.Duration(c.DriftHoldS*float64(time.Second))).String())
			}
		}
		if c.MaxPerHour != 0 {
			cp = append(cp, "per_hour="+strconv.Itoa(c.MaxPerHour))
		}
		if len(cp) == 1 {
			cp = append(cp, "off")
		}
		if len(parts) > 0 {
			parts[len(parts)-1] += ";"
		}
		parts = append(parts, strings.Join(cp, " "))
	}
	if len(parts) == 0 {
		return "(defaults)"
	}
	return strings.Join(parts, " ")
}
