package registry_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/fleet/registry/registrytest"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

const base = "vibration-anomaly-f32"

func newRegistry(t *testing.T, pub registry.Publisher, mod func(*registry.Options)) (*registry.Registry, fleet.Store) {
	t.Helper()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts := registry.Options{Store: st, Keys: []ed25519.PublicKey{bundle.DemoKey().Public().(ed25519.PublicKey)}, Publisher: pub,
		AgentVersion: "0.9.0", Now: func() time.Time { return time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC) }}
	if mod != nil {
		mod(&opts)
	}
	r, err := registry.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

func mustPackage(t *testing.T, version string, mutate func(*bundle.Manifest)) []byte {
	t.Helper()
	p, err := registrytest.Package(base, version, nil, mutate)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPushAndReleases(t *testing.T) {
	ctx := context.Background()
	pub := &registrytest.Publisher{}
	r, st := newRegistry(t, pub, nil)
	m, err := r.Push(ctx, mustPackage(t, "1.0.0", nil))
	if err != nil {
		t.Fatalf("Push(1.0.0): %v", err)
	}
	if m.Release != 1 || !m.Published || m.Target != base+"-1.0.0.opkg" || len(m.Ops) == 0 || m.SignedBy == "" {
		t.Errorf("Push(1.0.0) = %+v", m)
	}
	if got := pub.Targets[m.Target]; got.Release != 1 || got.Name != base || got.Version != "1.0.0" || got.MinAgentVersion != "0.1.0" {
		t.Errorf("published custom = %+v", got)
	}
	again, err := r.Push(ctx, mustPackage(t, "1.0.0", nil))
	if err != nil || again.Release != 1 || pub.Calls != 1 {
		t.Errorf("second Push of the same bytes = %+v, %v (publisher calls %d); want the same record, no republish", again, err, pub.Calls)
	}
	m2, err := r.Push(ctx, mustPackage(t, "1.1.0", nil))
	if err != nil || m2.Release != 2 {
		t.Fatalf("Push(1.1.0) = release %d, %v; want release 2", m2.Release, err)
	}
	// A lower version pushed later still gets a higher release: the counter orders pushes.
	m3, err := r.Push(ctx, mustPackage(t, "0.9.0", nil))
	if err != nil || m3.Release != 3 {
		t.Fatalf("Push(0.9.0) = release %d, %v; want release 3", m3.Release, err)
	}
	list, err := r.List(ctx)
	if err != nil || len(list) != 3 || list[0].Version != "1.0.0" || list[2].Version != "0.9.0" {
		t.Fatalf("List() = %+v, %v", list, err)
	}
	got, err := r.Get(ctx, base+"@1.1.0")
	if err != nil || got.SHA256 != m2.SHA256 {
		t.Fatalf("Get(1.1.0) = %+v, %v", got, err)
	}
	if _, err := r.Get(ctx, base+"@7.0.0"); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("Get(unknown) error = %v, want ErrNotFound", err)
	}
	pkg, err := st.Package(ctx, m2.SHA256)
	if err != nil || len(pkg) != int(m2.PackageSize) {
		t.Errorf("stored package = %d bytes, %v; want %d", len(pkg), err, m2.PackageSize)
	}
	d, err := registry.Describe(got, []string{"d1"})
	if err != nil || d.Sensor != "vibration" || len(d.Baseline) == 0 || d.Golden == 0 || d.Devices[0] != "d1" {
		t.Errorf("Describe = %+v, %v", d, err)
	}
}

func TestPushRefused(t *testing.T) {
	_, otherKey, err := bundle.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := registrytest.Package(base, "1.0.0", otherKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := mustPackage(t, "1.0.0", nil)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 1
	tests := []struct {
		name string
		pkg  []byte
		mod  func(*registry.Options)
		want string
		is   error
	}{
		{"garbage", []byte("not a tar"), nil, "not a valid package", registry.ErrRefused},
		{"empty", nil, nil, "not a valid package", registry.ErrRefused},
		{"foreign signature", foreign, nil, "signature does not verify", registry.ErrRefused},
		{"corrupted", flipped, nil, "", registry.ErrRefused},
		{"ops differ from model", mustPackage(t, "1.0.0", func(m *bundle.Manifest) { m.Ops = append(m.Ops, "CONV_2D") }), nil,
			"manifest lists ops", registry.ErrRefused},
		{"op the agent lacks", good, func(o *registry.Options) { o.Resolver = kernels.NewResolver() }, "agent cannot run it", registry.ErrRefused},
		{"golden vectors off", mustPackage(t, "1.0.0", func(m *bundle.Manifest) { m.Golden.Vectors[0].Output[0] += 0.5 }), nil,
			"golden", registry.ErrRefused},
		{"agent too new", mustPackage(t, "1.0.0", func(m *bundle.Manifest) { m.MinAgentVersion = "2.0.0" }), nil,
			"newer than the agent release", registry.ErrRefused},
		{"too large", good, func(o *registry.Options) { o.MaxPackage = 100 }, "limit 100", registry.ErrRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub := &registrytest.Publisher{}
			r, st := newRegistry(t, pub, tc.mod)
			_, err := r.Push(context.Background(), tc.pkg)
			if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Push = %v; want a one-line %v containing %q", err, tc.is, tc.want)
			}
			if ms, _ := st.Models(context.Background()); len(ms) != 0 || pub.Calls != 0 {
				t.Errorf("a refused push left %d models, %d publisher calls", len(ms), pub.Calls)
			}
		})
	}
}

func TestPushConflictAndPublishFailure(t *testing.T) {
	ctx := context.Background()
	pub := &registrytest.Publisher{Err: errors.New("repository locked")}
	r, st := newRegistry(t, pub, nil)
	if _, err := r.Push(ctx, mustPackage(t, "1.0.0", nil)); err == nil || !strings.Contains(err.Error(), "repository locked") {
		t.Fatalf("Push with a failing publisher = %v", err)
	}
	if ms, _ := st.Models(ctx); len(ms) != 0 {
		t.Fatalf("an unpublished push was registered: %+v", ms)
	}
	pub.Err = nil
	if _, err := r.Push(ctx, mustPackage(t, "1.0.0", nil)); err != nil {
		t.Fatal(err)
	}
	other := mustPackage(t, "1.0.0", func(m *bundle.Manifest) { m.Description = "retrained" })
	if _, err := r.Push(ctx, other); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("Push of other content under the same version = %v, want ErrConflict", err)
	}
}

func TestUnpublishedThenPublished(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys := []ed25519.PublicKey{bundle.DemoKey().Public().(ed25519.PublicKey)}
	r, _ := registry.New(registry.Options{Store: st, Keys: keys})
	m, err := r.Push(ctx, mustPackage(t, "1.0.0", nil))
	if err != nil || m.Published {
		t.Fatalf("Push without publisher = %+v, %v; want unpublished", m, err)
	}
	pub := &registrytest.Publisher{}
	r, _ = registry.New(registry.Options{Store: st, Keys: keys, Publisher: pub})
	m, err = r.Push(ctx, mustPackage(t, "1.0.0", nil))
	if err != nil || !m.Published || m.Release != 1 || pub.Calls != 1 {
		t.Fatalf("re-Push with a publisher = %+v, %v; want published under release 1", m, err)
	}
}

func TestVersionCompare(t *testing.T) {
	order := []string{"0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"}
	for i := range order {
		for j := range order {
			a, err1 := registry.ParseVersion(order[i])
			b, err2 := registry.ParseVersion(order[j])
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	for _, bad := range []string{"", "dev", "1.0", "1.0.x", "01.0.0", "1.0.0.0"} {
		if _, err := registry.ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) = nil error", bad)
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.0.0", "1.0.0-rc.1+build.5", "0.0.0-0", "dev", "1..0", "18446744073709551616.0.0"} {
		f.Add(s, "1.0.0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, err := registry.ParseVersion(a)
		if err != nil {
			return
		}
		if va.Compare(va) != 0 {
			t.Fatalf("Compare(%q, itself) != 0", a)
		}
		if vb, err := registry.ParseVersion(b); err == nil && va.Compare(vb) != -vb.Compare(va) {
			t.Fatalf("Compare(%q, %q) is not antisymmetric", a, b)
		}
	})
}
