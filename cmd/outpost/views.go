package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// `outpost devices`, `outpost device ID` and `outpost results DEVICE`: the controller's views
// over its HTTP API (fleet/httpapi views.go).

func init() {
	register(newDeviceCmd)
	register(newResultsCmd)
}

// addDevicesList makes the bare `outpost devices` list the fleet.
func addDevicesList(c *cobra.Command) {
	var af apiFlags
	var sel []string
	var asJSON bool
	c.Short = "List devices (tags, presence, model, latest outcome); subcommands manage tags and credentials"
	c.Args = cobra.NoArgs
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		q := url.Values{}
		for _, s := range sel {
			if _, _, err := rollout.ParseSelector(s); err != nil {
				return err
			}
			q.Add("select", rollout.EscapeSelector(s)) // one flag is one selector, commas and all
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		var devs []httpapi.DeviceView
		path := "/v1/devices"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		if err := cl.do(cmd.Context(), "GET", path, "", nil, &devs); err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), devs)
		}
		return printDevices(cmd.OutOrStdout(), devs, time.Now())
	}
	af.add(c)
	c.Flags().StringArrayVar(&sel, "select", nil, "only devices with this tag (KEY=VALUE, taken literally, commas included; also id=, model=NAME or NAME@VERSION); repeat to require several")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
}

func printDevices(w io.Writer, devs []httpapi.DeviceView, now time.Time) error {
	t := newTable(w, "DEVICE", "ONLINE", "LAST SEEN", "MODEL", "AGENT", "LATEST", "EVENTS/1H", "RESULTS/1H", "INF/S", "P99 MS", "TAGS")
	for _, d := range devs {
		infs, p99 := "-", "-"
		if h := d.Health; h != nil {
			infs, p99 = strconv.FormatFloat(h.InferencesPerS, 'f', 1, 64), strconv.FormatFloat(h.LatencyP99Ms, 'f', 2, 64)
		}
		if err := t.row(d.ID, yesNo(d.Online), ago(d.LastSeen, now), modelName(d.Model.Name, d.Model.Version), dash(d.AgentVersion),
			latest(d.Latest), strconv.FormatUint(d.LastHour.Events, 10), strconv.FormatUint(d.LastHour.Results, 10), infs, p99, formatTags(d.Tags)); err != nil {
			return err
		}
	}
	if len(devs) == 0 {
		_, err := fmt.Fprintln(w, "no devices")
		return err
	}
	return t.render()
}

func newDeviceCmd() *cobra.Command {
	var af apiFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "device ID",
		Short: "Show one device: registry record, tags, health, model, update state and the last hour's model outputs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := af.client()
			if err != nil {
				return err
			}
			id := url.PathEscape(args[0])
			var d httpapi.DeviceView
			if err := cl.do(cmd.Context(), "GET", "/v1/devices/"+id, "", nil, &d); err != nil {
				return err
			}
			var bs []fleet.OutputBucket
			if err := cl.do(cmd.Context(), "GET", "/v1/devices/"+id+"/outputs?since=1h", "", nil, &bs); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), struct {
					Device  httpapi.DeviceView   `json:"device"`
					Outputs []fleet.OutputBucket `json:"outputs_last_hour"`
				}{d, bs})
			}
			return printDevice(cmd.OutOrStdout(), d, bs, time.Now())
		},
	}
	af.add(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return c
}

func printDevice(w io.Writer, d httpapi.DeviceView, bs []fleet.OutputBucket, now time.Time) error {
	kv := newTable(w, "FIELD", "VALUE")
	add := func(k, v string) { _ = kv.row(k, v) }
	add("device", d.ID)
	add("online", yesNo(d.Online))
	add("registered", ago(d.FirstSeen, now))
	add("last seen", ago(d.LastSeen, now))
	add("tags", formatTags(d.Tags))
	add("model", modelName(d.Model.Name, d.Model.Version))
	add("agent", dash(d.AgentVersion))
	add("update", formatUpdate(d.Update))
	if h := d.Health; h != nil {
		add("health at", h.Time.Local().Format(time.DateTime))
		add("inferences/s", strconv.FormatFloat(h.InferencesPerS, 'f', 1, 64))
		add("latency p50/p99", fmt.Sprintf("%.2f / %.2f ms", h.LatencyP50Ms, h.LatencyP99Ms))
		add("buffered", strconv.FormatUint(h.Buffered, 10))
		add("cpu", fmt.Sprintf("%.1f%%", h.CPUPercent))
		add("sensor", dash(h.SensorStatus))
	} else {
		add("health", "none yet")
	}
	add("results", fmt.Sprintf("%d stored, %d acked, %d duplicates, %d dropped, %d rejected", d.Results.Stored, d.Results.Acked, d.Results.Duplicates, d.Results.Dropped, d.Results.Rejected))
	add("latest", latest(d.Latest))
	if err := kv.render(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "model outputs, last hour:")
	sums := map[string]*fleet.OutputBucket{}
	for i := range bs {
		s := sums[bs[i].Model]
		if s == nil {
			s = &fleet.OutputBucket{Model: bs[i].Model}
			sums[bs[i].Model] = s
		}
		httpapi.MergeBucket(s, &bs[i])
	}
	if len(sums) == 0 {
		_, err := fmt.Fprintln(w, "no results")
		return err
	}
	t := newTable(w, "MODEL", "RESULTS", "EVENTS", "MEAN SCORE", "MIN", "MAX", "LABELS")
	for _, m := range slices.Sorted(maps.Keys(sums)) {
		s := sums[m]
		if err := t.row(m, strconv.FormatUint(s.Count, 10), strconv.FormatUint(s.Events, 10), score(s.ScoreSum/float64(max(s.Count, 1))),
			score(s.ScoreMin), score(s.ScoreMax), topLabels(s.Labels, 4)); err != nil {
			return err
		}
	}
	return t.render()
}

func newResultsCmd() *cobra.Command {
	var af apiFlags
	var since, until string
	var events, asJSON bool
	var limit int
	c := &cobra.Command{
		Use:   "results DEVICE",
		Short: "List a device's stored results, newest first",
		Example: `  outpost results pump-7 --since 1h
  outpost results pump-7 --since 2026-01-02T08:00:00Z --until 2026-01-02T09:00:00Z --events --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"since": {since}}
			if until != "" {
				q.Set("until", until)
			}
			if events {
				q.Set("events", "true")
			}
			if limit < 1 || limit > httpapi.MaxResults {
				return fmt.Errorf("--limit %d: want 1 to %d", limit, httpapi.MaxResults)
			}
			q.Set("limit", strconv.Itoa(limit))
			cl, err := af.client()
			if err != nil {
				return err
			}
			var rs []fleet.StoredResult
			if err := cl.do(cmd.Context(), "GET", "/v1/devices/"+url.PathEscape(args[0])+"/results?"+q.Encode(), "", nil, &rs); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), rs)
			}
			return printResults(cmd.OutOrStdout(), rs)
		},
	}
	af.add(c)
	f := c.Flags()
	f.StringVar(&since, "since", "1h", "from this time: a duration back from now (1h, 7d) or RFC 3339")
	f.StringVar(&until, "until", "", "up to this time (exclusive), same forms; default now")
	f.BoolVar(&events, "events", false, "only results that were events")
	f.IntVar(&limit, "limit", httpapi.DefaultResults, "at most this many results, the newest")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return c
}

func printResults(w io.Writer, rs []fleet.StoredResult) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(w, "no results in that window")
		return err
	}
	t := newTable(w, "SEQ", "TIME", "MODEL", "SCORE", "LABEL", "EVENT", "LATENCY", "FEEDBACK")
	for _, r := range rs {
		fb := "-"
		if r.Feedback != nil {
			fb = r.Feedback.Label
		}
		seq := strconv.FormatUint(r.Result.Seq, 10)
		if r.Epoch != 0 {
			seq = fmt.Sprintf("%s (epoch %x)", seq, r.Epoch)
		}
		if err := t.row(seq, r.Result.Time.Local().Format("2006-01-02 15:04:05.000"), r.Result.Model, score(r.Result.Score),
			dash(r.Result.Label), yesNo(r.Result.Event), fmt.Sprintf("%.2f ms", float64(r.Result.LatencyUs)/1000), fb); err != nil {
			return err
		}
	}
	return t.render()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string { return cmp.Or(s, "-") }

func modelName(name, version string) string {
	if name == "" {
		return "-"
	}
	return name + "@" + version
}

func score(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// ago prints how long before now t was, coarsely.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// latest is a device's latest outcome in short: label (or score), and "EVENT" when it was one.
func latest(l *httpapi.LatestOutcome) string {
	if l == nil {
		return "-"
	}
	s := cmp.Or(l.Label, "score")
	s += " " + score(l.Score)
	if l.Event {
		s += " EVENT"
	}
	return s
}

// topLabels lists the n most frequent labels as label=count.
func topLabels(m map[string]uint64, n int) string {
	if len(m) == 0 {
		return "-"
	}
	ls := slices.Collect(maps.Keys(m))
	slices.SortFunc(ls, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b)) })
	var parts []string
	for _, l := range ls[:min(n, len(ls))] {
		parts = append(parts, fmt.Sprintf("%s=%d", l, m[l]))
	}
	if len(ls) > n {
		parts = append(parts, "…")
	}
	return strings.Join(parts, " ")
}

// formatUpdate is a device's model-update state in one line: phase, candidate, progress,
// rollout and reason when there are any.
func formatUpdate(u *wire.UpdateStatus) string {
	if u == nil {
		return "-"
	}
	parts := []string{cmp.Or(u.Phase, "-")}
	if u.Target.Name != "" {
		parts = append(parts, modelName(u.Target.Name, u.Target.Version))
	}
	if u.Phase == wire.PhaseDownloading {
		parts = append(parts, fmt.Sprintf("%.0f%%", u.Progress*100))
	}
	if u.Rollout != "" {
		parts = append(parts, "rollout "+u.Rollout)
	}
	if u.Reason != "" {
		parts = append(parts, "("+u.Reason+")")
	}
	return strings.Join(parts, " ")
}
