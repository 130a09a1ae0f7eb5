// Package registrytest holds helpers for tests of the registry and its users: signed sample
// packages built from the embedded sample models, and a Publisher fake that records targets.
package registrytest

import (
	"crypto/ed25519"
	"fmt"
	"io/fs"
	"sync"

	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/sample"
)

// Package builds a signed package of the embedded sample model base (e.g.
// "vibration-anomaly-f32") with the given version, after mutate (if not nil) edits the
// manifest. A nil key signs with bundle.DemoKey.
func Package(base, version string, key ed25519.PrivateKey, mutate func(*bundle.Manifest)) ([]byte, error) {
	mj, err := fs.ReadFile(sample.FS, base+".json")
	if err != nil {
		return nil, err
	}
	model, err := fs.ReadFile(sample.FS, base+".tflite")
	if err != nil {
		return nil, err
	}
	m, err := bundle.DecodeManifest(mj)
	if err != nil {
		return nil, fmt.Errorf("sample manifest %s: %w", base, err)
	}
	m.Version = version
	if mutate != nil {
		mutate(m)
	}
	if mj, err = m.Encode(); err != nil {
		return nil, err
	}
	if key == nil {
		key = bundle.DemoKey()
	}
	return bundle.Build(mj, model, key)
}

// Publisher records AddTarget calls; Err, when set, is returned instead.
type Publisher struct {
	mu      sync.Mutex
	Err     error
	Targets map[string]registry.TargetCustom
	Calls   int
}

// AddTarget implements registry.Publisher.
func (p *Publisher) AddTarget(name string, pkg []byte, custom registry.TargetCustom) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Calls++
	if p.Err != nil {
		return p.Err
	}
	if len(pkg) == 0 {
		return fmt.Errorf("add target %s: empty package", name)
	}
	if p.Targets == nil {
		p.Targets = map[string]registry.TargetCustom{}
	}
	p.Targets[name] = custom
	return nil
}
