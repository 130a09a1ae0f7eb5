package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/rollout"
)

// Policies are per-device monitoring settings (fleet/rollout.Engine: policy.go).
type Policies interface {
	Policy(device string) rollout.PolicyStatus
	Policies() []rollout.PolicyStatus
	SetPolicy(ctx context.Context, device string, s fleet.MonitorSettings) (rollout.PolicyStatus, error)
}

// MaxPolicyBody bounds a PUT of monitoring settings.
const MaxPolicyBody = 16 << 10

func (a *api) policyRoutes() []route {
	on := a.o.Policies != nil
	return []route{
		{"GET /v1/monitor-settings", a.listPolicies, on},
		{"GET /v1/devices/{id}/monitor", a.getPolicy, on},
		{"PUT /v1/devices/{id}/monitor", a.putPolicy, on},
		{"DELETE /v1/devices/{id}/monitor", a.deletePolicy, on},
	}
}

func (a *api) listPolicies(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.o.Policies.Policies())
}

func (a *api) getPolicy(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.o.Policies.Policy(r.PathValue("id")))
}

// DecodeMonitorSettings reads monitoring settings strictly: unknown fields and trailing data
// are errors, and so are out-of-range values.
func DecodeMonitorSettings(data []byte) (fleet.MonitorSettings, error) {
	var s fleet.MonitorSettings
	if err := decodeStrict(data, &s, "monitoring settings"); err != nil {
		return s, err
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return s, nil
}

func (a *api) putPolicy(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPolicyBody))
	if err != nil {
		a.fail(w, r, fmt.Errorf("read monitoring settings: %w", err))
		return
	}
	s, err := DecodeMonitorSettings(body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setPolicy(w, r, s)
}

func (a *api) deletePolicy(w http.ResponseWriter, r *http.Request) {
	a.setPolicy(w, r, fleet.MonitorSettings{})
}

func (a *api) setPolicy(w http.ResponseWriter, r *http.Request, s fleet.MonitorSettings) {
	id := r.PathValue("id")
	st, err := a.o.Policies.SetPolicy(r.Context(), id, s)
	if rollout.IsBadPolicy(err) {
		err = fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.o.Logger.Info("monitoring settings changed", "device", id, "drift", s.Drift != nil, "capture", s.Capture != nil, "generation", st.Generation, "pending", st.Pending)
	writeJSON(w, http.StatusOK, st)
}
