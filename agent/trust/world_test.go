package trust_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/trust"
	"github.com/outpost-ml/outpost/fleet/tufrepo"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// world is a controller repository and the network between it and a device. Tests play the
// attacker by changing what the network answers (tamper) and move the one clock both sides
// read (a device with a correct clock; the no-RTC tests give the device its own).
type world struct {
	t          *testing.T
	repo       *tufrepo.Repo
	rootKey    ed25519.PrivateKey
	targetsKey ed25519.PrivateKey
	net        *repoFetcher

	mu  sync.Mutex
	now time.Time
}

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, rootKey: newKey(t), targetsKey: newKey(t), now: epoch}
	opts := tufrepo.Options{TargetsKeys: []ed25519.PrivateKey{w.targetsKey}, Now: w.clock}
	repo, err := tufrepo.Init(filepath.Join(t.TempDir(), "tuf"), []ed25519.PrivateKey{w.rootKey}, []ed25519.PrivateKey{w.targetsKey}, opts)
	if err != nil {
		t.Fatal(err)
	}
	w.repo = repo
	w.net = &repoFetcher{repo: repo}
	return w
}

func (w *world) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *world) advance(d time.Duration) {
	w.mu.Lock()
	w.now = w.now.Add(d)
	w.mu.Unlock()
}

func (w *world) rootJSON() []byte {
	w.t.Helper()
	root, err := w.repo.RootJSON()
	if err != nil {
		w.t.Fatal(err)
	}
	return root
}

// device provisions a device with the repository's current root and the world clock.
func (w *world) device() *trust.Client {
	w.t.Helper()
	return w.deviceWith(w.rootJSON(), t0dir(w.t), w.clock)
}

func t0dir(t *testing.T) string { return filepath.Join(t.TempDir(), "trust") }

func (w *world) deviceWith(root []byte, dir string, now func() time.Time) *trust.Client {
	w.t.Helper()
	c, err := trust.New(dir, root, w.net, now)
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

// publish adds a package of model "vib" at version v with release rel.
func (w *world) publish(v string, rel uint64, content string) string {
	w.t.Helper()
	name := fmt.Sprintf("vib-%s.opkg", v)
	err := w.repo.AddTarget(name, []byte(content), wire.TargetCustom{Name: "vib", Version: v, Release: rel, Ops: []string{"FULLY_CONNECTED", "SOFTMAX"}})
	if err != nil {
		w.t.Fatal(err)
	}
	return name
}

// repoFetcher answers FetchMeta from the repository, as the controller's block server does,
// and enforces maxLen the way a downloader must: it never hands over more than maxLen bytes.
// tamper, when set, stands in for an attacker on the path (or a compromised controller).
type repoFetcher struct {
	repo *tufrepo.Repo

	mu        sync.Mutex
	tamper    func(name string, data []byte, err error) ([]byte, error)
	asked     map[string]int64 // name → maxLen of the last request
	noEnforce bool             // a broken fetcher that does not enforce maxLen
}

func (f *repoFetcher) FetchMeta(ctx context.Context, name string, maxLen int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := f.repo.Meta(name)
	f.mu.Lock()
	if f.asked == nil {
		f.asked = map[string]int64{}
	}
	f.asked[name] = maxLen
	tamper, noEnforce := f.tamper, f.noEnforce
	f.mu.Unlock()
	if tamper != nil {
		data, err = tamper(name, data, err)
	}
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxLen && !noEnforce {
		return nil, fmt.Errorf("%s: more than %d bytes", name, maxLen)
	}
	return data, nil
}

func (f *repoFetcher) setTamper(fn func(name string, data []byte, err error) ([]byte, error)) {
	f.mu.Lock()
	f.tamper = fn
	f.mu.Unlock()
}

func (f *repoFetcher) maxLen(name string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[name]
}

func refresh(t *testing.T, c *trust.Client) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Refresh(ctx)
}

func mustRefresh(t *testing.T, c *trust.Client) {
	t.Helper()
	if err := refresh(t, c); err != nil {
		t.Fatalf("Refresh = %v", err)
	}
}

func TestHappyPath(t *testing.T) {
	w := newWorld(t)
	name := w.publish("1.0.0", 1, "package one")
	dev := w.device()
	mustRefresh(t, dev)
	tg, err := dev.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if tg.Length != int64(len("package one")) || tg.Custom.Release != 1 || tg.Custom.Version != "1.0.0" || tg.Path != tg.SHA256+"."+name {
		t.Errorf("Lookup = %+v", tg)
	}
	r, n, err := w.repo.Target(tg.Path)
	if err != nil || n != tg.Length {
		t.Fatalf("repo.Target(%s) = %v, %d", tg.Path, err, n)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "package one" {
		t.Errorf("target content %q", buf)
	}
}

type rootUpdate = tufrepo.RootUpdate
