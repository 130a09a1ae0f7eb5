package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet"
)

// retentionConfig holds the --retain-* periods of outpost serve.
type retentionConfig struct {
	RetainResults, RetainHealth, RetainSummaries, RetainDrift, RetainCaptures time.Duration
}

// days is a duration flag that also takes days ("30d"), as retention periods are spoken of;
// "0" keeps forever.
type days struct{ d *time.Duration }

func (v days) String() string {
	if v.d == nil {
		return ""
	}
	if *v.d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", *v.d/(24*time.Hour))
	}
	return v.d.String()
}

func (v days) Set(s string) error {
	d, err := parseDays(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (days) Type() string { return "duration" }

// parseDays reads "30d", a Go duration ("720h") or "0".
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q: want whole days like 30d, or a duration like 12h", s)
		}
		return time.Duration(v) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want whole days like 30d, or a duration like 12h", s)
	}
	return d, nil
}

func addRetentionFlags(cmd *cobra.Command, cfg *retentionConfig) {
	cfg.RetainResults, cfg.RetainHealth = fleet.DefaultRetainResults, fleet.DefaultRetainHealth
	cfg.RetainSummaries, cfg.RetainDrift = fleet.DefaultRetainSummaries, fleet.DefaultRetainDrift
	cfg.RetainCaptures = fleet.DefaultCaptureRetainAge
	f := cmd.Flags()
	f.Var(days{&cfg.RetainResults}, "retain-results", "keep stored results this long after they were received (e.g. 30d, 12h; 0 keeps forever)")
	f.Var(days{&cfg.RetainHealth}, "retain-health", "keep health history (one point per device per minute) this long")
	f.Var(days{&cfg.RetainSummaries}, "retain-summaries", "keep per-minute model-output summaries this long")
	f.Var(days{&cfg.RetainDrift}, "retain-drift", "keep drift summaries this long after they were received")
	f.Var(days{&cfg.RetainCaptures}, "retain-captures", "keep captured windows this long after they were received (see also --retain-captures-count)")
}

// retention builds the pruning loop; captures are pruned too when the store keeps them, at
// most keepCaptures of them (≤ 0: no count limit).
func (c retentionConfig) retention(store fleet.ViewStore, keepCaptures int) *fleet.Retention {
	r := &fleet.Retention{Store: store, Results: c.RetainResults, Health: c.RetainHealth,
		Summaries: c.RetainSummaries, Drift: c.RetainDrift}
	if cs, ok := store.(fleet.CaptureStore); ok {
		r.Captures, r.CaptureAge, r.CaptureCount = cs, c.RetainCaptures, max(keepCaptures, 0)
	}
	return r
}
