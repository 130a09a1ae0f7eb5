package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/monitor"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// `outpost feedback`, `outpost accuracy` and `outpost drift`: model monitoring from the
// controller's API (docs/monitoring.md).

func init() {
	register(newFeedbackCmd)
	register(newAccuracyCmd)
	register(newDriftCmd)
}

func newFeedbackCmd() *cobra.Command {
	var af apiFlags
	var epoch uint64
	var source string
	cmd := &cobra.Command{
		Use:   "feedback DEVICE SEQ LABEL",
		Short: "Attach a late label (the true outcome) to a stored result",
		Long: `Attach a label to the result DEVICE sent with sequence number SEQ: the true outcome,
a class label or, for anomaly models, "anomaly" or "normal". --epoch names the device's
sequence space when it has had more than one (0: its current one). A second label for the
same result replaces the first. outpost accuracy reads the labels back as figures.`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("SEQ %q: want a positive integer", args[1])
			}
			l := wire.FeedbackLabel{Device: args[0], Epoch: epoch, Seq: seq, Label: args[2], Source: source}
			if err := l.Validate(); err != nil {
				return err
			}
			cl, err := af.client()
			if err != nil {
				return err
			}
			body, err := wire.Encode(&wire.FeedbackBatch{Labels: []wire.FeedbackLabel{l}})
			if err != nil {
				return err
			}
			var ans httpapi.FeedbackAnswer
			if err := cl.do(cmd.Context(), "POST", "/v1/feedback", "application/json", body, &ans); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "labelled %s seq %d as %q\n", l.Device, l.Seq, l.Label)
			return nil
		},
	}
	cmd.Flags().Uint64Var(&epoch, "epoch", 0, "the result's sequence space (0: the device's current one)")
	cmd.Flags().StringVar(&source, "source", "cli", "who labelled it, kept with the label")
	af.add(cmd)
	return cmd
}

func newAccuracyCmd() *cobra.Command {
	var af apiFlags
	var device, model, since, bucket string
	var asJSON, buckets bool
	cmd := &cobra.Command{
		Use:   "accuracy",
		Short: "Accuracy, per-class precision and recall from late labels, per device and model version",
		Long: `Accuracy of each device's model versions over the labelled results (outpost feedback,
POST /v1/feedback, or the MQTT topic outpost/v1/feedback). For anomaly models (labels
"anomaly"/"normal") precision and recall are at the threshold the device applied.
--buckets adds one row per --bucket of result time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := af.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"device": device, "model": model, "since": since, "bucket": bucket} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var rep monitor.AccuracyReport
			if err := cl.do(cmd.Context(), "GET", "/v1/accuracy?"+q.Encode(), "", nil, &rep); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			rows := rep.Totals
			if buckets {
				rows = rep.Buckets
			}
			return printAccuracy(cmd.OutOrStdout(), rows, buckets)
		},
	}
	f := cmd.Flags()
	f.StringVar(&device, "device", "", "only this device")
	f.StringVar(&model, "model", "", "only this model: NAME or NAME@VERSION")
	f.StringVar(&since, "since", "", "results from this time on: RFC 3339, or a duration back from now (24h, 7d)")
	f.StringVar(&bucket, "bucket", "", "time bucket for --buckets (default 24h)")
	f.BoolVar(&buckets, "buckets", false, "one row per time bucket instead of one per device and model")
	f.BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	af.add(cmd)
	return cmd
}

func pct(p *float64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatFloat(100**p, 'f', 1, 64) + "%"
}

func printAccuracy(w io.Writer, rows []monitor.AccuracyRow, buckets bool) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no labelled results")
		return err
	}
	head := []string{"DEVICE", "MODEL"}
	if buckets {
		head = append(head, "FROM")
	}
	t := newTable(w, append(head, "LABELLED", "ACCURACY", "PRECISION / RECALL")...)
	for _, r := range rows {
		cells := []string{r.Device, r.Model}
		if buckets {
			cells = append(cells, r.Start.UTC().Format(time.RFC3339))
		}
		acc := r.Accuracy
		var pr string
		if a := r.Anomaly; a != nil {
			pr = fmt.Sprintf("anomaly %s / %s (tp %d fp %d fn %d tn %d)", pct(a.Precision), pct(a.Recall), a.TP, a.FP, a.FN, a.TN)
		} else {
			var parts []string
			for _, c := range slices.Sorted(maps.Keys(r.Classes)) {
				s := r.Classes[c]
				parts = append(parts, fmt.Sprintf("%s %s / %s", c, pct(s.Precision), pct(s.Recall)))
			}
			pr = strings.Join(parts, "; ")
		}
		if err := t.row(append(cells, strconv.Itoa(r.Labelled), pct(&acc), pr)...); err != nil {
			return err
		}
	}
	return t.render()
}

func newDriftCmd() *cobra.Command {
	var af apiFlags
	var device, model, since string
	var watch, asJSON bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "Fleet drift view: which devices drift, since when, on which features",
		Long: `Per model version, the devices whose inputs or outputs drift from the model's training
baseline, from the drift summaries the devices send (docs/monitoring.md). A device drifts from
its first window with a score over its threshold until two clean windows in a row.
--watch redraws the table every --interval until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if watch && asJSON {
				return errors.New("--watch and --json exclude each other")
			}
			if every < 100*time.Millisecond {
				return fmt.Errorf("--interval %v: at least 100ms", every)
			}
			cl, err := af.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"device": device, "model": model, "since": since} {
				if v != "" {
					q.Set(k, v)
				}
			}
			get := func(ctx context.Context) ([]monitor.ModelDrift, error) {
				var v []monitor.ModelDrift
				err := cl.do(ctx, "GET", "/v1/drift?"+q.Encode(), "", nil, &v)
				return v, err
			}
			out := cmd.OutOrStdout()
			for {
				v, err := get(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(out, v)
				}
				if watch {
					fmt.Fprint(out, "\x1b[H\x1b[2J") // home and clear: redraw in place
					fmt.Fprintf(out, "outpost drift  %s  (every %v, Ctrl-C to stop)\n", time.Now().Format(time.TimeOnly), every)
				}
				if err := printDrift(out, v); err != nil || !watch {
					return err
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(every):
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "only this model: NAME or NAME@VERSION")
	f.StringVar(&device, "device", "", "only this device")
	f.StringVar(&since, "since", "24h", "summaries from this time on: RFC 3339, or a duration back from now (empty: all)")
	f.BoolVar(&watch, "watch", false, "redraw every --interval")
	f.DurationVar(&every, "interval", 5*time.Second, "refresh period with --watch")
	f.BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	af.add(cmd)
	return cmd
}

func printDrift(w io.Writer, view []monitor.ModelDrift) error {
	if len(view) == 0 {
		_, err := fmt.Fprintln(w, "no drift summaries")
		return err
	}
	t := newTable(w, "MODEL", "DEVICE", "STATE", "SINCE", "WINDOWS", "WORST PSI", "FEATURES")
	for _, m := range view {
		for _, d := range m.Rows {
			state, since := "ok", "-"
			if d.Drifting {
				state = "DRIFTING"
			}
			if !d.Since.IsZero() {
				since = d.Since.UTC().Format(time.RFC3339)
			}
			var feats []string
			for _, f := range d.Features {
				feats = append(feats, f.Name+" ("+strings.Join(f.Drifted, ", ")+")")
			}
			if err := t.row(m.Model, d.Device, state, since, fmt.Sprintf("%d/%d", d.Drifted, d.Windows),
				strconv.FormatFloat(d.WorstPSI, 'f', 3, 64), strings.Join(feats, "; ")); err != nil {
				return err
			}
		}
	}
	if err := t.render(); err != nil {
		return err
	}
	var parts []string
	for _, m := range view {
		parts = append(parts, fmt.Sprintf("%s: %d of %d devices drifting", m.Model, m.Drifting, m.Devices))
	}
	_, err := fmt.Fprintln(w, strings.Join(parts, "; "))
	return err
}
