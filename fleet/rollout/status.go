package rollout

import (
	"github.com/outpost-ml/outpost/fleet"
)

// Status is a rollout with per-wave counts and gate figures, derived on every call.
type Status struct {
	fleet.Rollout
	WaveStatus []WaveStatus `json:"wave_status"`
}

// WaveStatus counts a wave's devices by outcome and gives its gate figures: the failure rate
// and, over the devices that reported them, the worst p99 latency ratio, the lowest shadow
// agreement and the highest drift PSI. Figures nobody reported yet are nil.
type WaveStatus struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Total      int    `json:"total"`
	Waiting    int    `json:"waiting"`     // not told yet (wave pending)
	InProgress int    `json:"in_progress"` // told, not finished
	Succeeded  int    `json:"succeeded"`
	Failed     int    `json:"failed"`
	RolledBack int    `json:"rolled_back"` // ordered back when the wave halted or was aborted

	FailureRate        float64  `json:"failure_rate"`
	P99LatencyRatio    *float64 `json:"p99_latency_ratio,omitempty"`
	ShadowAgreement    *float64 `json:"shadow_agreement,omitempty"`
	DriftPSI           *float64 `json:"drift_psi,omitempty"`
	SuccessRequirement int      `json:"success_requirement"` // devices that must succeed
}

// Summarize derives the status of r.
func Summarize(r fleet.Rollout) Status {
	s := Status{Rollout: r}
	for _, w := range r.Waves {
		ws := WaveStatus{Name: w.Name, State: w.State, Total: len(w.Devices)}
		ws.SuccessRequirement = ceilFrac(r.Spec.SuccessThreshold, ws.Total)
		worst := func(p **float64, v float64, better func(a, b float64) bool) {
			if *p == nil || better(v, **p) {
				x := v
				*p = &x
			}
		}
		higher := func(a, b float64) bool { return a > b }
		lower := func(a, b float64) bool { return a < b }
		for _, d := range w.Devices {
			switch {
			case d.Outcome == fleet.OutcomeSucceeded:
				ws.Succeeded++
			case d.Outcome == fleet.OutcomeFailed:
				ws.Failed++
			case d.Outcome == fleet.OutcomeRolledBack:
				ws.RolledBack++
			case d.Generation == 0:
				ws.Waiting++
			default:
				ws.InProgress++
			}
			if sh := d.Shadow; sh != nil && sh.Windows > 0 {
				worst(&ws.ShadowAgreement, sh.Agreement, lower)
				worst(&ws.P99LatencyRatio, sh.LatencyRatio, higher)
			}
			if p := d.Probation; p != nil && p.Windows > 0 {
				if p.LatencyRatio > 0 {
					worst(&ws.P99LatencyRatio, p.LatencyRatio, higher)
				}
				if p.DriftPSI > 0 {
					worst(&ws.DriftPSI, p.DriftPSI, higher)
				}
			}
		}
		if ws.Total > 0 {
			ws.FailureRate = float64(ws.Failed) / float64(ws.Total)
		}
		s.WaveStatus = append(s.WaveStatus, ws)
	}
	return s
}
