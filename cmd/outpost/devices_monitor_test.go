package main

import (
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Flags change only what they name: drift fields one by one, the capture policy whole.
func TestMonitorFlagsApply(t *testing.T) {
	t.Parallel()
	cur := fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.4, Window: 500}, Capture: &wire.CapturePolicy{Random: 0.1, MaxPerHour: 60}}
	tests := []struct {
		args    []string
		want    fleet.MonitorSettings
		wantErr string
		line    string
	}{
		{[]string{"--drift-ks", "0.2"}, fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.4, KS: 0.2, Window: 500}, Capture: cur.Capture},
			"", "psi=0.4 ks=0.2 window=500; capture random=10% per_hour=60"},
		{[]string{"--capture-drift", "50%", "--capture-drift-hold", "10m"}, fleet.MonitorSettings{Drift: cur.Drift, Capture: &wire.CapturePolicy{Drift: 0.5, DriftHoldS: 600}},
			"", "psi=0.4 window=500; capture drift=50% hold=10m0s"},
		{[]string{"--clear-drift"}, fleet.MonitorSettings{Capture: cur.Capture}, "", "capture random=10% per_hour=60"},
		{[]string{"--drift-psi", "0", "--drift-window", "0"}, fleet.MonitorSettings{Capture: cur.Capture}, "", "capture random=10% per_hour=60"},
		{[]string{"--clear", "--drift-psi", "0.3"}, fleet.MonitorSettings{}, "", "(defaults)"},
		{[]string{"--drift-ks", "3"}, fleet.MonitorSettings{}, "drift override ks 3", ""},
		{[]string{"--capture-low-confidence", "20%"}, fleet.MonitorSettings{}, "band", ""},
		{[]string{"--capture-random", "lots"}, fleet.MonitorSettings{}, "--capture-random", ""},
	}
	for _, tc := range tests {
		mf := &monitorFlags{}
		cmd := newDevicesMonitorCmdFor(mf)
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		if !mf.changes(cmd) {
			t.Errorf("%v: no change seen", tc.args)
		}
		got, err := mf.apply(cmd, cur)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !fleet.SameMonitoring(got, tc.want) {
			t.Errorf("%v: %+v %+v, %v; want %+v %+v", tc.args, got.Drift, got.Capture, err, tc.want.Drift, tc.want.Capture)
		}
		if line := formatSettings(got); line != tc.line {
			t.Errorf("%v: printed %q, want %q", tc.args, line, tc.line)
		}
	}
}
