package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/outpost-ml/outpost/fleet/credentials"
)

// EnrollTokens issues one-time enrollment tokens (fleet/credentials.Store). The routes are
// served when Options.Credentials also implements it.
type EnrollTokens interface {
	IssueToken(ctx context.Context, spec credentials.TokenSpec) (string, credentials.TokenRecord, error)
}

// TokenRequest is the body of POST /v1/enroll-tokens: a fixed device id or an id prefix
// (neither: credentials.DefaultEnrollPrefix), and a lifetime ("24h"; empty: the default).
type TokenRequest struct {
	DeviceID string `json:"device_id,omitempty"`
	Prefix   string `json:"prefix,omitempty"`
	TTL      string `json:"ttl,omitempty"`
}

// IssuedToken answers it. The token exists only in this answer: the controller keeps a hash.
type IssuedToken struct {
	Token    string    `json:"token"`
	ID       string    `json:"id"` // the token's public id part
	DeviceID string    `json:"device_id,omitempty"`
	Prefix   string    `json:"prefix,omitempty"`
	Expires  time.Time `json:"expires"`
}

func (a *api) enrollRoutes() []route {
	_, ok := a.o.Credentials.(EnrollTokens)
	return []route{{"POST /v1/enroll-tokens", a.issueToken, ok}}
}

func (a *api) issueToken(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	if err != nil {
		a.fail(w, r, fmt.Errorf("%w: read token request: %v", errBadRequest, err))
		return
	}
	var req TokenRequest
	if err := json.Unmarshal(body, &req); err != nil {
		a.fail(w, r, fmt.Errorf("%w: token request: %v", errBadRequest, err))
		return
	}
	spec := credentials.TokenSpec{DeviceID: req.DeviceID, Prefix: req.Prefix}
	if req.TTL != "" {
		if spec.TTL, err = time.ParseDuration(req.TTL); err != nil {
			a.fail(w, r, fmt.Errorf("%w: ttl: %v", errBadRequest, err))
			return
		}
	}
	tok, rec, err := a.o.Credentials.(EnrollTokens).IssueToken(r.Context(), spec)
	if errors.Is(err, credentials.ErrTokenSpec) {
		err = fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.o.Logger.Info("enrollment token issued", "token_id", rec.ID, "device", rec.DeviceID, "prefix", rec.Prefix, "expires", rec.Expires) // never the token
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, IssuedToken{Token: tok, ID: rec.ID, DeviceID: rec.DeviceID, Prefix: rec.Prefix, Expires: rec.Expires})
}
