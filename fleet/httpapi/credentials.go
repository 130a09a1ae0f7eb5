package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/outpost-ml/outpost/fleet/credentials"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Credentials issues and revokes device secrets (fleet/credentials.Store, with the embedded
// broker cutting off a revoked device's live session).
type Credentials interface {
	Issue(ctx context.Context, id string) (secret string, err error)
	Revoke(ctx context.Context, id string) error
	// MosquittoPasswd is a Mosquitto password file of the devices that may connect.
	MosquittoPasswd(ctx context.Context) ([]byte, error)
}

// IssuedCredentials answers POST /v1/devices/{id}/credentials. The secret exists only in this
// answer: the controller keeps a hash.
type IssuedCredentials struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// Revocation answers POST /v1/devices/{id}/revoke.
type Revocation struct {
	ID      string `json:"id"`
	Revoked bool   `json:"revoked"`
}

// MosquittoFiles answers GET /v1/credentials/mosquitto.
type MosquittoFiles struct {
	Passwd string `json:"passwd"`
}

func (a *api) credentialRoutes() []route {
	on := a.o.Credentials != nil
	return []route{
		{"POST /v1/devices/{id}/credentials", a.issueCredentials, on},
		{"POST /v1/devices/{id}/revoke", a.revokeDevice, on},
		{"GET /v1/credentials/mosquitto", a.mosquittoPasswd, on},
	}
}

// deviceID is the request's {id}, checked.
func deviceID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := wire.ValidDeviceID(id); err != nil {
		return "", fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return id, nil
}

func (a *api) issueCredentials(w http.ResponseWriter, r *http.Request) {
	id, err := deviceID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	secret, err := a.o.Credentials.Issue(r.Context(), id)
	if errors.Is(err, credentials.ErrReserved) {
		err = fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.o.Logger.Info("device credentials issued", "device", id) // never the secret
	if a.o.Registrar != nil {
		// After Issue, which refuses reserved ids. The secret is already replaced, so a
		// failure here must not lose it: the device is then listed from its first contact.
		if err := a.o.Registrar.Register(r.Context(), id); err != nil {
			a.o.Logger.Warn("device not registered before first contact", "device", id, "err", err)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, IssuedCredentials{ID: id, Secret: secret})
}

func (a *api) revokeDevice(w http.ResponseWriter, r *http.Request) {
	id, err := deviceID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.o.Credentials.Revoke(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	a.o.Logger.Info("device revoked", "device", id)
	writeJSON(w, http.StatusOK, Revocation{ID: id, Revoked: true})
}

func (a *api) mosquittoPasswd(w http.ResponseWriter, r *http.Request) {
	pw, err := a.o.Credentials.MosquittoPasswd(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, MosquittoFiles{Passwd: string(pw)})
}
