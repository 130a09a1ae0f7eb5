// Package httpapi is the controller's HTTP JSON API, the one the `outpost` CLI talks to:
// the model registry (push, list, show), rollouts (create, status, pause, resume, abort),
// device tags and credentials, and the views of devices, results, health and model outputs.
// docs/openapi.yaml documents every route (Routes; a test keeps the two in step).
// Every request carries the API token (Authorization: Bearer …) from the token file in the
// controller's data directory.
package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/fleet/rollout"
)

// Registry is the model registry (fleet/registry.Registry).
type Registry interface {
	Push(ctx context.Context, pkg []byte) (fleet.Model, error)
	List(ctx context.Context) ([]fleet.Model, error)
	Get(ctx context.Context, ref string) (fleet.Model, error)
}

// Rollouts is the rollout engine (fleet/rollout.Engine).
type Rollouts interface {
	Create(ctx context.Context, spec fleet.RolloutSpec) (fleet.Rollout, error)
	Get(id string) (fleet.Rollout, error)
	List() []fleet.Rollout
	Pause(ctx context.Context, id string) (fleet.Rollout, error)
	Resume(ctx context.Context, id string) (fleet.Rollout, error)
	Abort(ctx context.Context, id string) (fleet.Rollout, error)
}

// Fleet is the live device table (fleet.Controller).
type Fleet interface {
	Devices() []fleet.DeviceStatus
}

// Registrar adds a device to the registry before its first contact (fleet.Controller).
type Registrar interface {
	Register(ctx context.Context, id string) error
}

// Tags stores device tags (fleet.Store satisfies it); rollouts select devices by them.
type Tags interface {
	SetDeviceTags(ctx context.Context, device string, tags map[string]string) error
	DeviceTags(ctx context.Context) (map[string]map[string]string, error)
}

// Limits on request bodies.
const (
	MaxSpecBody = 64 << 10
	// TokenFile is the API token's file name in the data directory.
	TokenFile = "api-token"
)

// Options configure New.
type Options struct {
	Registry Registry
	Rollouts Rollouts
	Fleet    Fleet
	// Registrar, when set, is told of every device issued credentials, so the device is
	// listed (never seen) before it first connects.
	Registrar  Registrar
	Tags       Tags
	Token      string // required
	MaxPackage int64  // default registry.DefaultMaxPackage
	Logger     *slog.Logger

	// Credentials, when set, serves the device credential routes (credentials.go).
	Credentials Credentials
	// Views, when set, serves the device, results, health and outputs views (views.go).
	Views Views
	// Monitoring, when set, serves feedback, accuracy and drift (monitoring.go).
	Monitoring Monitoring
	// Captures, when set, serves GET /v1/captures (captures.go).
	Captures Captures
	// Policies, when set, serves per-device monitoring settings (monitorsettings.go).
	Policies Policies
}

// New returns the API's handler.
func New(o Options) (http.Handler, error) {
	if o.Registry == nil || o.Rollouts == nil || o.Fleet == nil || o.Tags == nil {
		return nil, errors.New("http api: registry, rollouts, fleet and tags are required")
	}
	if len(o.Token) < 16 {
		return nil, errors.New("http api: token shorter than 16 characters")
	}
	if o.MaxPackage <= 0 {
		o.MaxPackage = registry.DefaultMaxPackage
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{o: o}
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		if rt.on {
			mux.HandleFunc(rt.pattern, rt.handler)
		}
	}
	return a.auth(mux), nil
}

// route is one pattern the API serves; on is false when its backing service is not configured.
type route struct {
	pattern string
	handler http.HandlerFunc
	on      bool
}

// routes is every route of the API, the one list New serves from and Routes reports.
func (a *api) routes() []route {
	views := a.o.Views != nil
	rs := []route{
		{"POST /v1/models", a.pushModel, true},
		{"GET /v1/models", a.listModels, true},
		{"GET /v1/models/{ref}", a.showModel, true},
		{"POST /v1/rollouts", a.createRollout, true},
		{"GET /v1/rollouts", a.listRollouts, true},
		{"GET /v1/rollouts/{id}", a.getRollout, true},
		{"POST /v1/rollouts/{id}/{action}", a.changeRollout, true},
		{"GET /v1/tags", a.listTags, true},
		{"PUT /v1/devices/{id}/tags", a.setTags, true},
		// Views (views.go).
		{"GET /v1/devices", a.listDevices, views},
		{"GET /v1/devices/{id}", a.getDevice, views},
		{"GET /v1/devices/{id}/results", a.deviceResults, views},
		{"GET /v1/devices/{id}/health", a.deviceHealth, views},
		{"GET /v1/devices/{id}/outputs", a.deviceOutputs, views},
		{"GET /v1/outputs", a.fleetOutputs, views},
		// Captures (captures.go).
		{"GET /v1/captures", a.listCaptures, a.o.Captures != nil},
	}
	rs = append(rs, a.credentialRoutes()...)
	rs = append(rs, a.enrollRoutes()...) // enroll.go
	rs = append(rs, a.policyRoutes()...) // monitorsettings.go
	return append(rs, a.monitoringRoutes()...)
}

// Routes lists every route pattern ("METHOD /path/{param}") the API can serve, for the test
// that keeps docs/openapi.yaml in step with it.
func Routes() []string {
	var out []string
	for _, rt := range (&api{}).routes() {
		out = append(out, rt.pattern)
	}
	return out
}

type api struct{ o Options }

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

func (a *api) auth(next http.Handler) http.Handler {
	want := []byte("Bearer " + a.o.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outpost"`)
			writeJSON(w, http.StatusUnauthorized, Error{"missing or wrong API token (see " + TokenFile + " in the controller's data directory)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing to do
}

// fail answers err with the status its kind calls for, in one line.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, fleet.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, registry.ErrConflict), errors.Is(err, rollout.ErrState), errors.Is(err, rollout.ErrUnpublished):
		status = http.StatusConflict
	case errors.Is(err, registry.ErrRefused), errors.Is(err, rollout.ErrNoDevices), errors.Is(err, errBadRequest):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, registry.ErrNoKeys), errors.Is(err, rollout.ErrNotLeader):
		status = http.StatusServiceUnavailable
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if status == http.StatusInternalServerError {
		a.o.Logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", msg)
	}
	writeJSON(w, status, Error{msg})
}

var errBadRequest = errors.New("bad request")

func (a *api) pushModel(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.o.MaxPackage))
	if err != nil {
		a.fail(w, r, fmt.Errorf("read package: %w", err))
		return
	}
	m, err := a.o.Registry.Push(r.Context(), body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.o.Logger.Info("model pushed", "model", m.Name+"@"+m.Version, "release", m.Release, "published", m.Published)
	m.Manifest = nil
	writeJSON(w, http.StatusCreated, m)
}

func (a *api) listModels(w http.ResponseWriter, r *http.Request) {
	ms, err := a.o.Registry.List(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for i := range ms {
		ms[i].Manifest = nil
	}
	if ms == nil {
		ms = []fleet.Model{}
	}
	writeJSON(w, http.StatusOK, ms)
}

func (a *api) showModel(w http.ResponseWriter, r *http.Request) {
	m, err := a.o.Registry.Get(r.Context(), r.PathValue("ref"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var running []string
	for _, d := range a.o.Fleet.Devices() {
		if d.Model.Name == m.Name && d.Model.Version == m.Version {
			running = append(running, d.ID)
		}
	}
	det, err := registry.Describe(m, running)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, det)
}

// decodeStrict decodes one JSON value into v: unknown fields and trailing data are errors.
func decodeStrict(data []byte, v any, what string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", errBadRequest, what, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: %s: data after the JSON value", errBadRequest, what)
	}
	return nil
}

// DecodeSpec reads a rollout spec strictly: unknown fields and trailing data are errors.
func DecodeSpec(data []byte) (fleet.RolloutSpec, error) {
	var spec fleet.RolloutSpec
	if err := decodeStrict(data, &spec, "rollout spec"); err != nil {
		return spec, err
	}
	if err := rollout.Normalize(&spec); err != nil {
		return spec, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return spec, nil
}

func (a *api) createRollout(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSpecBody))
	if err != nil {
		a.fail(w, r, fmt.Errorf("read rollout spec: %w", err))
		return
	}
	spec, err := DecodeSpec(body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ro, err := a.o.Rollouts.Create(r.Context(), spec)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, rollout.Summarize(ro))
}

func (a *api) listRollouts(w http.ResponseWriter, _ *http.Request) {
	out := []rollout.Status{}
	for _, ro := range a.o.Rollouts.List() {
		out = append(out, rollout.Summarize(ro))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) getRollout(w http.ResponseWriter, r *http.Request) {
	ro, err := a.o.Rollouts.Get(r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rollout.Summarize(ro))
}

func (a *api) changeRollout(w http.ResponseWriter, r *http.Request) {
	var f func(context.Context, string) (fleet.Rollout, error)
	switch r.PathValue("action") {
	case "pause":
		f = a.o.Rollouts.Pause
	case "resume":
		f = a.o.Rollouts.Resume
	case "abort":
		f = a.o.Rollouts.Abort
	default:
		writeJSON(w, http.StatusNotFound, Error{"unknown action " + r.PathValue("action") + " (want pause, resume or abort)"})
		return
	}
	ro, err := f(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.o.Logger.Info("rollout "+r.PathValue("action"), "id", ro.ID, "state", ro.State)
	writeJSON(w, http.StatusOK, rollout.Summarize(ro))
}

// Tag limits: tags are small labels, not a database.
const (
	MaxTags      = 32
	MaxTagLength = 64
)

// DecodeTags reads a device's tags: a JSON object of string values, keys and values of 1 to
// MaxTagLength printable characters without '=' in keys, at most MaxTags of them.
func DecodeTags(data []byte) (map[string]string, error) {
	var tags map[string]string
	if err := decodeStrict(data, &tags, "tags"); err != nil {
		return nil, err
	}
	if len(tags) > MaxTags {
		return nil, fmt.Errorf("%w: %d tags (at most %d)", errBadRequest, len(tags), MaxTags)
	}
	ok := func(s string) bool {
		if s == "" || len(s) > MaxTagLength {
			return false
		}
		for _, r := range s {
			if r < 0x21 || r == 0x7f {
				return false
			}
		}
		return true
	}
	for k, v := range tags {
		if !ok(k) || !ok(v) || strings.Contains(k, "=") || k == "id" || k == "model" {
			return nil, fmt.Errorf("%w: tag %q=%q: keys and values are 1 to %d printable characters without spaces, keys without '=' and not id or model", errBadRequest, k, v, MaxTagLength)
		}
	}
	return tags, nil
}

func (a *api) setTags(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSpecBody))
	if err != nil {
		a.fail(w, r, fmt.Errorf("read tags: %w", err))
		return
	}
	tags, err := DecodeTags(body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.o.Tags.SetDeviceTags(r.Context(), r.PathValue("id"), tags); err != nil {
		if strings.Contains(err.Error(), "device id") {
			err = fmt.Errorf("%w: %v", errBadRequest, err)
		}
		a.fail(w, r, err)
		return
	}
	if tags == nil {
		tags = map[string]string{}
	}
	writeJSON(w, http.StatusOK, tags)
}

func (a *api) listTags(w http.ResponseWriter, r *http.Request) {
	all, err := a.o.Tags.DeviceTags(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, all)
}

// LoadOrCreateToken reads the API token at path, creating it (32 random bytes as hex, mode
// 0600) when the file does not exist.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", fmt.Errorf("api token %s: shorter than 16 characters", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("api token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	_, err = f.WriteString(tok + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("api token %s: %w", path, err)
	}
	return tok, nil
}
