package agent

import (
	"testing"
	"time"
)

func TestResult(t *testing.T) {
	tests := []struct {
		name      string
		spec      ModelSpec
		out       []float32
		wantScore float64
		wantLabel string
		wantEvent bool
		wantErr   bool
	}{
		{"anomaly below", ModelSpec{OutputKind: OutputAnomaly, Threshold: 0.5}, []float32{0.25}, 0.25, "normal", false, false},
		{"anomaly at threshold", ModelSpec{OutputKind: OutputAnomaly, Threshold: 0.5}, []float32{0.5}, 0.5, "anomaly", true, false},
		{"classify normal", ModelSpec{OutputKind: OutputClassify, Labels: []string{"normal", "bearing"}, Threshold: 0.5}, []float32{0.75, 0.25}, 0.75, "normal", false, false},
		{"classify fault", ModelSpec{OutputKind: OutputClassify, Labels: []string{"normal", "bearing"}, Threshold: 0.5}, []float32{0.25, 0.75}, 0.75, "bearing", true, false},
		{"classify unsure", ModelSpec{OutputKind: OutputClassify, Labels: []string{"normal", "a", "b"}, Threshold: 0.5}, []float32{0.25, 0.375, 0.375}, 0.375, "a", false, false},
		{"classify no label", ModelSpec{OutputKind: OutputClassify, Labels: []string{"normal"}}, []float32{0, 1}, 1, "class1", true, false},
		{"anomaly labels", ModelSpec{OutputKind: OutputAnomaly, Labels: []string{"ok", "bad"}, Threshold: 0.5}, []float32{0.75}, 0.75, "bad", true, false},
		{"empty output", ModelSpec{OutputKind: OutputAnomaly}, nil, 0, "", false, true},
		{"NaN", ModelSpec{OutputKind: OutputAnomaly}, []float32{float32(nan())}, 0, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Agent{spec: tt.spec}
			r, err := a.result(time.Unix(1, 0), tt.out, 1500*time.Microsecond)
			if (err != nil) != tt.wantErr {
				t.Fatalf("result(%v) error = %v, want error %v", tt.out, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if r.Score != tt.wantScore || r.Label != tt.wantLabel || r.Event != tt.wantEvent || r.LatencyUs != 1500 {
				t.Fatalf("result(%v) = score %v label %q event %v latency %dus, want %v %q %v 1500us",
					tt.out, r.Score, r.Label, r.Event, r.LatencyUs, tt.wantScore, tt.wantLabel, tt.wantEvent)
			}
		})
	}
}

func nan() float64 { var z float64; return z / z }

func TestPercentiles(t *testing.T) {
	a := &Agent{}
	if p50, p95, p99 := a.percentilesLocked(); p50 != 0 || p95 != 0 || p99 != 0 {
		t.Fatalf("empty percentiles = %v %v %v", p50, p95, p99)
	}
	// More than the ring holds: only the newest latencyRing values count.
	for i := 1; i <= latencyRing+100; i++ {
		a.recordLatency(time.Duration(i))
	}
	p50, p95, p99 := a.percentilesLocked()
	lo := time.Duration(101) // oldest kept
	want := func(p float64) time.Duration { return lo + time.Duration(p*latencyRing) - 1 }
	if p50 != want(0.50) || p95 != want(0.95)+1 || p99 != want(0.99)+1 {
		t.Fatalf("percentiles = %v %v %v, want %v %v %v", p50, p95, p99, want(0.50), want(0.95)+1, want(0.99)+1)
	}
	if n := testing.AllocsPerRun(100, func() { a.recordLatency(time.Millisecond) }); n != 0 {
		t.Fatalf("recordLatency allocates %v times per call", n)
	}
}
