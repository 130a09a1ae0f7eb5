// Package registry is the controller's model registry: it checks a pushed model package
// (.opkg) against the fleet's package keys and the agent's op kernels, stores it by digest in
// the fleet Store, assigns its anti-rollback release counter and hands it to the TUF
// repository through the Publisher seam, so devices can fetch it.
package registry

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// TargetCustom is the custom field of a model's TUF target: what a device checks before it
// downloads (name, version, ops, minimum agent) and the release counter it refuses to go
// below (anti-rollback).
type TargetCustom struct {
	Name            string   `json:"name"`
	Version         string   `json:"version"`
	Release         uint64   `json:"release"`
	Ops             []string `json:"ops"`
	MinAgentVersion string   `json:"min_agent_version"`
}

// Publisher adds a package to the fleet's signed TUF repository (fleet/tufrepo satisfies it).
// AddTarget must be idempotent for the same name and bytes.
type Publisher interface {
	AddTarget(name string, pkg []byte, custom TargetCustom) error
}

// DefaultMaxPackage bounds a pushed package: the model limit plus room for manifest and tar.
const DefaultMaxPackage = bundle.DefaultMaxModelSize + 2<<20

// Errors callers branch on (the HTTP API maps them to status codes).
var (
	ErrRefused  = errors.New("package refused") // the package does not fit: signature, manifest, ops
	ErrConflict = errors.New("conflict")        // NAME@VERSION exists with other content
	ErrNoKeys   = errors.New("no package-signing key configured")
)

// Options configure New.
type Options struct {
	Store fleet.UpdateStore
	// Keys are the ed25519 package-signing keys the fleet accepts; a push signed by none of
	// them is refused. With none, every push is refused (ErrNoKeys).
	Keys []ed25519.PublicKey
	// Publisher hands accepted packages to the TUF repository. Nil registers packages
	// without publishing them (Model.Published false); rollouts refuse such models.
	Publisher Publisher
	// Resolver is the op kernels of the agents this controller releases with; a model with
	// an op (or op version) it lacks is refused. Default kernels.Builtins().
	Resolver tflite.OpResolver
	// AgentVersion is the newest agent release the Resolver stands for. A package whose
	// min_agent_version is newer targets agents whose kernels this controller cannot check,
	// so it is refused. Empty or not a semantic version (a "dev" build) skips the check.
	AgentVersion string
	MaxPackage   int64            // default DefaultMaxPackage
	Now          func() time.Time // default time.Now
}

// Registry is safe for concurrent use; pushes are serialized so release counters never repeat.
type Registry struct {
	opts Options
	mu   sync.Mutex // serializes Push
}

// New checks opts. It starts nothing.
func New(opts Options) (*Registry, error) {
	if opts.Store == nil {
		return nil, errors.New("registry: no store")
	}
	for i, k := range opts.Keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("registry: key %d is %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
	}
	if opts.Resolver == nil {
		opts.Resolver = kernels.Builtins()
	}
	if opts.MaxPackage <= 0 {
		opts.MaxPackage = DefaultMaxPackage
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Registry{opts: opts}, nil
}

// TargetName is the TUF target name of a package: NAME-VERSION.opkg.
func TargetName(name, version string) string { return name + "-" + version + bundle.Extension }

// Push checks pkg and registers it. Pushing the same bytes again returns the existing record
// (and publishes it if it was not yet); a different package under an existing NAME@VERSION is
// ErrConflict. Refusals wrap ErrRefused and say in one line what does not fit.
func (r *Registry) Push(ctx context.Context, pkg []byte) (fleet.Model, error) {
	if len(r.opts.Keys) == 0 {
		return fleet.Model{}, fmt.Errorf("%w: the controller cannot check package signatures", ErrNoKeys)
	}
	m, err := r.check(pkg)
	if err != nil {
		return fleet.Model{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	all, err := r.opts.Store.Models(ctx)
	if err != nil {
		return fleet.Model{}, err
	}
	for _, old := range all {
		if old.Name != m.Name {
			continue
		}
		m.Release = max(m.Release, old.Release+1)
		if old.Version != m.Version {
			continue
		}
		if old.SHA256 != m.SHA256 {
			return fleet.Model{}, fmt.Errorf("%w: %s@%s is already registered with package %.12s; push it under a new version", ErrConflict, m.Name, m.Version, old.SHA256)
		}
		if old.Published || r.opts.Publisher == nil {
			return old, nil
		}
		m = old // registered but not yet published: publish it now under its release
	}
	if m.Release == 0 {
		m.Release = 1
	}
	if r.opts.Publisher != nil {
		custom := TargetCustom{Name: m.Name, Version: m.Version, Release: m.Release, Ops: m.Ops, MinAgentVersion: m.MinAgentVersion}
		if err := r.opts.Publisher.AddTarget(m.Target, pkg, custom); err != nil {
			return fleet.Model{}, fmt.Errorf("publish %s to the TUF repository: %w", m.Target, err)
		}
		m.Published = true
	}
	if err := r.opts.Store.PutModel(ctx, m, pkg); err != nil {
		return fleet.Model{}, err
	}
	return m, nil
}

// check validates a package and builds its record (Release still 0).
func (r *Registry) check(pkg []byte) (fleet.Model, error) {
	refuse := func(format string, args ...any) (fleet.Model, error) {
		return fleet.Model{}, fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
	}
	if int64(len(pkg)) > r.opts.MaxPackage {
		return refuse("package is %d bytes, limit %d", len(pkg), r.opts.MaxPackage)
	}
	p, err := bundle.Read(bytes.NewReader(pkg), bundle.Limits{})
	if err != nil {
		return refuse("%v", err) // manifest invalid, digest mismatch, layout
	}
	signer := ""
	for _, k := range r.opts.Keys {
		if p.Verify(k) == nil {
			signer = bundle.KeyID(k)
			break
		}
	}
	man := p.Manifest
	if signer == "" {
		return refuse("%s@%s: signature does not verify with any of the fleet's %d package key(s)", man.Name, man.Version, len(r.opts.Keys))
	}
	if err := r.checkAgent(man); err != nil {
		return refuse("%s@%s: %v", man.Name, man.Version, err)
	}
	if err := r.checkModel(man, p.Model); err != nil {
		return refuse("%s@%s: %v", man.Name, man.Version, err)
	}
	sum := sha256.Sum256(pkg)
	return fleet.Model{
		Name: man.Name, Version: man.Version,
		SHA256: hex.EncodeToString(sum[:]), PackageSize: int64(len(pkg)),
		ModelSHA256: man.SHA256, ModelSize: man.Size,
		Target: TargetName(man.Name, man.Version), Ops: slices.Clone(man.Ops),
		MinAgentVersion: man.MinAgentVersion, SignedBy: signer,
		Pushed: r.opts.Now().UTC(), Manifest: p.ManifestJSON,
	}, nil
}

// checkAgent refuses a package aimed at agents newer than the kernels this controller knows.
func (r *Registry) checkAgent(m *bundle.Manifest) error {
	known, err := ParseVersion(r.opts.AgentVersion)
	if err != nil {
		return nil // a development build: nothing to compare with
	}
	want, err := ParseVersion(m.MinAgentVersion)
	if err != nil {
		return fmt.Errorf("min_agent_version: %v", err)
	}
	if want.Compare(known) > 0 {
		return fmt.Errorf("min_agent_version %s is newer than the agent release this controller knows (%s); its ops cannot be checked", m.MinAgentVersion, r.opts.AgentVersion)
	}
	return nil
}

// checkModel loads the model, compares its op table with the manifest's, builds an
// interpreter with the agent's kernels (every op and op version must exist) and runs the
// golden vectors, exactly as a device's staging phase will.
func (r *Registry) checkModel(m *bundle.Manifest, model []byte) error {
	tm, err := tflite.Load(model)
	if err != nil {
		return err
	}
	var used []string
	for _, op := range tm.Ops() {
		if !slices.Contains(used, op.Name()) {
			used = append(used, op.Name())
		}
	}
	declared := slices.Clone(m.Ops)
	slices.Sort(used)
	slices.Sort(declared)
	declared = slices.Compact(declared)
	if !slices.Equal(used, declared) {
		return fmt.Errorf("manifest lists ops [%s] but the model uses [%s]", strings.Join(declared, " "), strings.Join(used, " "))
	}
	ip, err := tflite.NewInterpreter(tm, r.opts.Resolver, tflite.Options{})
	if err != nil {
		return fmt.Errorf("the agent cannot run it: %v", err)
	}
	if ip.Input(0).NumElements() != len(m.Golden.Vectors[0].Input) {
		return fmt.Errorf("model input has %d values, golden vectors %d", ip.Input(0).NumElements(), len(m.Golden.Vectors[0].Input))
	}
	return m.CheckGolden(func(x []float64) ([]float64, error) { return invoke(ip, x) })
}

// invoke feeds tensor values (float32 values or int8 integers, as golden vectors hold them)
// and returns the first output's values the same way.
func invoke(ip *tflite.Interpreter, x []float64) ([]float64, error) {
	in, out := ip.Input(0), ip.Output(0)
	if len(x) != in.NumElements() {
		return nil, fmt.Errorf("input has %d values, want %d", len(x), in.NumElements())
	}
	switch in.DType() {
	case tensor.Int8:
		for i, v := range x {
			in.Int8()[i] = int8(v)
		}
	case tensor.Float32:
		for i, v := range x {
			in.Float32()[i] = float32(v)
		}
	default:
		return nil, fmt.Errorf("input type %v is not supported", in.DType())
	}
	if err := ip.Invoke(); err != nil {
		return nil, err
	}
	y := make([]float64, out.NumElements())
	for i := range y {
		switch out.DType() {
		case tensor.Int8:
			y[i] = float64(out.Int8()[i])
		case tensor.Float32:
			y[i] = float64(out.Float32()[i])
		default:
			return nil, fmt.Errorf("output type %v is not supported", out.DType())
		}
	}
	return y, nil
}

// List returns every registered model, by name then release.
func (r *Registry) List(ctx context.Context) ([]fleet.Model, error) {
	return r.opts.Store.Models(ctx)
}

// Get returns the model NAME@VERSION names.
func (r *Registry) Get(ctx context.Context, ref string) (fleet.Model, error) {
	name, version, err := ParseRef(ref)
	if err != nil {
		return fleet.Model{}, err
	}
	return r.opts.Store.Model(ctx, name, version)
}

// ParseRef splits NAME@VERSION.
func ParseRef(ref string) (name, version string, err error) {
	name, version, ok := strings.Cut(ref, "@")
	if !ok || name == "" || version == "" || strings.Contains(version, "@") {
		return "", "", fmt.Errorf("model %q: want NAME@VERSION", ref)
	}
	return name, version, nil
}
