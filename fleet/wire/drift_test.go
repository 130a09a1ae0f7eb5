package wire

import (
	"strings"
	"testing"
	"time"
)

func TestDriftSummaryRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := DriftSummary{V: SchemaVersion, Device: "pump-7", Model: ModelRef{Name: "vib", Version: "1.0.0"},
		Window: 3, Start: t0, End: t0.Add(10 * time.Minute), Inferences: 1000,
		Features: []DriftFeature{{Name: "accel", Role: DriftInput, Count: 64000, Mean: 0.1, Std: 0.4,
			Min: -1.5, Max: 1.4, QuantileP: []float64{0.5}, Quantiles: []float64{0.09},
			Counts: []int64{32000, 32000}, Scored: true, PSI: 0.3, KS: 0.2, JS: 0.15, CUSUM: 1.2,
			Drifted: []string{ScorePSI, ScoreCUSUM}}}}
	data, err := Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeDriftSummary(data)
	if err != nil {
		t.Fatalf("DecodeDriftSummary(%s): %v", data, err)
	}
	if out.Features[0].Drifted[1] != ScoreCUSUM || out.Features[0].Counts[1] != 32000 || !out.End.Equal(in.End) {
		t.Errorf("round trip changed the summary: %+v", out)
	}
}

func TestDriftSummaryRejects(t *testing.T) {
	good := `"device":"d","model":{"name":"m","version":"1"},"window":1,"inferences":10`
	feat := func(f string) string {
		return `{"v":1,` + good + `,"features":[{"name":"a","role":"input","count":1,"mean":0,"std":0,"min":0,"max":0,"quantile_p":[],"quantiles":[],"counts":[1],"scored":false,"psi":0,"ks":0,"js":0,"cusum":0` + f + `}]}`
	}
	tests := []struct{ name, data, want string }{
		{"no version", `{` + good + `}`, "missing schema version"},
		{"future version", `{"v":2,` + good + `}`, "unsupported schema version"},
		{"negative inferences", `{"v":1,"inferences":-1}`, "negative"},
		{"end before start", `{"v":1,"start":"2026-01-02T00:00:00Z","end":"2026-01-01T00:00:00Z"}`, "before start"},
		{"bad role", strings.Replace(feat(""), `"input"`, `"middle"`, 1), "role"},
		{"unknown score", feat(`,"drifted":["magic"]`), "unknown score"},
		{"negative count", strings.Replace(feat(""), `"counts":[1]`, `"counts":[-1]`, 1), "negative bin count"},
		{"quantile mismatch", strings.Replace(feat(""), `"quantiles":[]`, `"quantiles":[1]`, 1), "quantiles for"},
		{"negative threshold", `{"v":1,` + good + `,"thresholds":{"psi":-1,"ks":0.1,"js":0.1,"cusum_h":1,"min_samples":1}}`, "threshold"},
		{"negative min samples", `{"v":1,` + good + `,"thresholds":{"psi":1,"ks":0.1,"js":0.1,"cusum_h":1,"min_samples":-5}}`, "min_samples"},
		{"not json", `{"v":1,`, "decode"},
		{"event of another kind", `{"v":1,` + good + `,"event":{"v":1,"kind":"update"}}`, "event kind"},
		{"event reason too long", `{"v":1,` + good + `,"event":{"v":1,"kind":"drift","reason":"` + strings.Repeat("x", MaxDriftEventReason+1) + `"}}`, "event reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeDriftSummary([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("DecodeDriftSummary(%s) = %v, want one line containing %q", tt.data, err, tt.want)
			}
		})
	}
	if _, err := DecodeDriftSummary([]byte(feat(""))); err != nil {
		t.Errorf("valid summary rejected: %v", err)
	}
	withEvent := `{"v":1,` + good + `,"event":{"v":1,"device":"d","ts":"2026-01-02T00:00:00Z","kind":"drift","reason":"drift in a (psi 0.9 > 0.6)"}}`
	if s, err := DecodeDriftSummary([]byte(withEvent)); err != nil || s.Event == nil || s.Event.Reason != "drift in a (psi 0.9 > 0.6)" {
		t.Errorf("summary with its event: %+v, %v", s, err)
	}
}

func FuzzDecodeDriftSummary(f *testing.F) {
	f.Add([]byte(`{"v":1,"device":"d","model":{"name":"m","version":"1"},"window":1,"inferences":10,"features":[{"name":"a","role":"input","count":1,"counts":[1],"quantile_p":[0.5],"quantiles":[0]}]}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"device":"d","window":2,"inferences":10,"features":[],"event":{"v":1,"kind":"drift","reason":"drift in a (psi 0.9 > 0.6)"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeDriftSummary(data)
		if err != nil {
			return
		}
		// Whatever decodes must survive a re-encode and decode unchanged in shape.
		again, err := Encode(s)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeDriftSummary(again); err != nil {
			t.Fatalf("re-decode of %s: %v", again, err)
		}
	})
}
