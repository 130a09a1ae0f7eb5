package main

import (
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// The rollout's capture flags become the spec's capture policy, checked.
func TestRolloutCaptureFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    rolloutFlags
		want *wire.CapturePolicy
		err  string
	}{
		{"none", rolloutFlags{}, nil, ""},
		{"random", rolloutFlags{capRandom: "5%", capPerHour: 60}, &wire.CapturePolicy{Random: 0.05, MaxPerHour: 60}, ""},
		{"all", rolloutFlags{capRandom: "1%", capLowConf: "100%", capBand: 0.1, capDrift: "50%", capHold: time.Minute},
			&wire.CapturePolicy{Random: 0.01, LowConfidence: 1, Band: 0.1, Drift: 0.5, DriftHoldS: 60}, ""},
		{"over 100%", rolloutFlags{capRandom: "150%"}, nil, "capture-random"},
		{"no band", rolloutFlags{capLowConf: "50%"}, nil, "needs a band"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.f.spec("vib@1.0.0")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (s.Capture == nil) != (tc.want == nil) || s.Capture != nil && *s.Capture != *tc.want {
				t.Errorf("capture %+v, want %+v", s.Capture, tc.want)
			}
		})
	}
}

func TestCaptureExportArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"capture", "export", "--format", "npy", "out"}, "--model is required"},
		{[]string{"capture", "export", "--model", "m", "--format", "parquet", "out"}, "--format"},
		{[]string{"capture", "export", "--model", "m", "--since", "last week", "out"}, "--since"},
		{[]string{"capture", "export", "--model", "m", "--device", "a/b", "out"}, "--device"},
		{[]string{"capture", "export", "--model", "m"}, "arg"},
	} {
		if _, err := cli(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
