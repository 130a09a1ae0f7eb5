package bundle

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDriftThresholds(t *testing.T) {
	tests := []struct {
		name string
		set  *DriftThresholds
		want string // validation error, "" for none
		eff  DriftThresholds
	}{
		{"absent", nil, "", DefaultDriftThresholds},
		{"psi only", &DriftThresholds{PSI: 0.1}, "", func() DriftThresholds { d := DefaultDriftThresholds; d.PSI = 0.1; return d }()},
		{"all", &DriftThresholds{PSI: 1, KS: 0.2, JS: 0.3, CUSUMK: 0.5, CUSUMH: 4, MinSamples: 10},
			"", DriftThresholds{PSI: 1, KS: 0.2, JS: 0.3, CUSUMK: 0.5, CUSUMH: 4, MinSamples: 10}},
		{"negative psi", &DriftThresholds{PSI: -1}, "drift: psi threshold -1", DriftThresholds{}},
		{"ks above 1", &DriftThresholds{KS: 1.5}, "drift: ks threshold 1.5", DriftThresholds{}},
		{"negative min samples", &DriftThresholds{MinSamples: -3}, "drift: min_samples -3", DriftThresholds{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validManifest()
			m.Drift = tt.set
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeManifest(data)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("DecodeManifest = %v, want error containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if eff := got.Drift.WithDefaults(); eff != tt.eff {
				t.Errorf("WithDefaults = %+v, want %+v", eff, tt.eff)
			}
			if tt.set == nil && strings.Contains(string(data), `"drift"`) {
				t.Errorf("a manifest without thresholds encodes a drift field: %s", data)
			}
		})
	}
}
