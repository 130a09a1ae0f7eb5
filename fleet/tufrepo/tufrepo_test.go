package tufrepo_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/outpost-ml/outpost/fleet/tufrepo"
	"github.com/outpost-ml/outpost/fleet/wire"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type fixture struct {
	dir           string
	root, targets ed25519.PrivateKey
	now           time.Time
	repo          *tufrepo.Repo
}

func (f *fixture) opts() tufrepo.Options {
	return tufrepo.Options{TargetsKeys: []ed25519.PrivateKey{f.targets}, Now: func() time.Time { return f.now }}
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{dir: filepath.Join(t.TempDir(), "tuf"), root: key(t), targets: key(t), now: epoch}
	repo, err := tufrepo.Init(f.dir, []ed25519.PrivateKey{f.root}, []ed25519.PrivateKey{f.targets}, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	f.repo = repo
	return f
}

func custom(v string, rel uint64) wire.TargetCustom {
	return wire.TargetCustom{Name: "vib", Version: v, Release: rel, Ops: []string{"FULLY_CONNECTED"}}
}

func TestInitOpen(t *testing.T) {
	f := newFixture(t)
	if _, err := tufrepo.Init(f.dir, []ed25519.PrivateKey{f.root}, []ed25519.PrivateKey{f.targets}, f.opts()); !errors.Is(err, tufrepo.ErrExists) {
		t.Errorf("second Init = %v, want ErrExists", err)
	}
	if err := f.repo.AddTarget("vib-1.0.0.opkg", []byte("one"), custom("1.0.0", 1)); err != nil {
		t.Fatal(err)
	}
	again, err := tufrepo.Open(f.dir, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	st := again.Status()
	want := map[string]int64{"root": 1, "targets": 2, "snapshot": 2, "timestamp": 2}
	for _, r := range st.Roles {
		if r.Version != want[r.Name] || r.Threshold != 1 || len(r.KeyIDs) != 1 {
			t.Errorf("role %s: %+v, want version %d, one key, threshold 1", r.Name, r, want[r.Name])
		}
	}
	if len(st.Targets) != 1 || st.Targets[0].Custom.Release != 1 {
		t.Errorf("targets: %+v", st.Targets)
	}
	// Online keys are private to the controller.
	for _, role := range []string{"snapshot", "timestamp"} {
		fi, err := os.Stat(filepath.Join(f.dir, "keys", role+".key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s key: %v %v", role, fi, err)
		}
	}
	// Root and targets private keys are not stored.
	entries, _ := os.ReadDir(filepath.Join(f.dir, "keys"))
	if len(entries) != 2 {
		t.Errorf("keys dir holds %d files, want the two online keys", len(entries))
	}
	if err := again.AddTarget("vib-1.1.0.opkg", []byte("two"), custom("1.1.0", 2)); err != nil {
		t.Errorf("AddTarget after Open = %v", err)
	}
}

func TestInitThresholds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tuf")
	opts := tufrepo.Options{RootThreshold: 2}
	if _, err := tufrepo.Init(dir, []ed25519.PrivateKey{key(t)}, []ed25519.PrivateKey{key(t)}, opts); err == nil || !strings.Contains(err.Error(), "thresholds 2") {
		t.Errorf("Init with 1 root key and threshold 2 = %v", err)
	}
	r, err := tufrepo.Init(dir, []ed25519.PrivateKey{key(t), key(t)}, []ed25519.PrivateKey{key(t)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.Roles[0].Threshold != 2 || len(st.Roles[0].KeyIDs) != 2 {
		t.Errorf("root role %+v", st.Roles[0])
	}
}

func TestAddTarget(t *testing.T) {
	f := newFixture(t)
	pkg := []byte("package bytes")
	if err := f.repo.AddTarget("vib-1.0.0.opkg", pkg, custom("1.0.0", 1)); err != nil {
		t.Fatal(err)
	}
	v := f.repo.Status().Roles[1].Version
	if err := f.repo.AddTarget("vib-1.0.0.opkg", pkg, custom("1.0.0", 1)); err != nil {
		t.Errorf("re-adding the same package = %v, want nil", err)
	}
	if got := f.repo.Status().Roles[1].Version; got != v {
		t.Errorf("re-adding published targets v%d, want it to stay v%d", got, v)
	}
	if got := f.repo.NextRelease("vib"); got != 2 {
		t.Errorf("NextRelease = %d, want 2", got)
	}
	for _, tc := range []struct {
		name   string
		target string
		pkg    string
		c      wire.TargetCustom
		want   string
	}{
		{"other bytes same name", "vib-1.0.0.opkg", "different", custom("1.0.0", 2), "other content"},
		{"release not above", "vib-1.0.1.opkg", "x", custom("1.0.1", 1), "not above 1"},
		{"bad name", "a/../evil", "x", custom("9", 9), "not allowed"},
		{"dot name", ".hidden", "x", custom("9", 9), "starting with a dot"},
		{"bad custom", "vib-2.opkg", "x", wire.TargetCustom{Name: "vib"}, "version missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.repo.AddTarget(tc.target, []byte(tc.pkg), tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("AddTarget = %v, want %q", err, tc.want)
			}
		})
	}
	// The stored file is content-addressed.
	sum := sha256.Sum256(pkg)
	path := hex.EncodeToString(sum[:]) + ".vib-1.0.0.opkg"
	r, n, err := f.repo.Open(wire.FetchTargetPrefix + path)
	if err != nil || n != int64(len(pkg)) {
		t.Fatalf("Open = %v, %d", err, n)
	}
	got, err := io.ReadAll(io.NewSectionReader(r, 0, n))
	if err != nil || string(got) != string(pkg) {
		t.Errorf("target content %q, %v", got, err)
	}
}

func TestAddTargetWithoutKey(t *testing.T) {
	f := newFixture(t)
	ro, err := tufrepo.Open(f.dir, tufrepo.Options{Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.AddTarget("a.opkg", []byte("x"), custom("1", 1)); !errors.Is(err, tufrepo.ErrNoTargetsKey) {
		t.Errorf("AddTarget without key = %v", err)
	}
	wrong, err := tufrepo.Open(f.dir, tufrepo.Options{TargetsKeys: []ed25519.PrivateKey{key(t)}, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := wrong.AddTarget("a.opkg", []byte("x"), custom("1", 1)); !errors.Is(err, tufrepo.ErrNoTargetsKey) || !strings.Contains(err.Error(), "threshold") {
		t.Errorf("AddTarget with a foreign key = %v", err)
	}
	// The refused publication left the repository as it was.
	if st := wrong.Status(); st.Roles[1].Version != 1 || len(st.Targets) != 0 {
		t.Errorf("after a refused publication: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "meta", "2.targets.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("2.targets.json written by a refused publication: %v", err)
	}
}

func TestMetaNames(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"timestamp.json", true},
		{"1.root.json", true},
		{"1.snapshot.json", true},
		{"1.targets.json", true},
		{"2.root.json", false},
		{"root.json", false},
		{"01.root.json", false},
		{"1.timestamp.json", false},
		{"../keys/snapshot.key", false},
		{"1.root.json/..", false},
		{"", false},
		{"99999999999999999999.root.json", false},
	} {
		_, err := f.repo.Meta(tc.name)
		if tc.ok && err != nil {
			t.Errorf("Meta(%q) = %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Meta(%q) = %v, want not found", tc.name, err)
		}
	}
	for _, p := range []string{"targets/../keys/snapshot.key", "targets/x", "meta/../keys/timestamp.key", "keys/snapshot.key", "targets/" + strings.Repeat("0", 64) + ".a.opkg"} {
		if _, _, err := f.repo.Open(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q) = %v, want not found", p, err)
		}
	}
}

func TestRefreshTimestamp(t *testing.T) {
	f := newFixture(t)
	renewed, err := f.repo.RefreshTimestamp(f.now.Add(time.Hour))
	if err != nil || renewed {
		t.Errorf("RefreshTimestamp an hour in = %v, %v; want nothing to do", renewed, err)
	}
	f.now = f.now.Add(13 * time.Hour)
	if renewed, err = f.repo.RefreshTimestamp(f.now); err != nil || !renewed {
		t.Fatalf("RefreshTimestamp at 13 h = %v, %v", renewed, err)
	}
	st := f.repo.Status()
	if st.Roles[3].Version != 2 || !st.Roles[3].Expires.Equal(f.now.Add(24*time.Hour)) || st.Roles[2].Version != 1 {
		t.Errorf("after timestamp renewal: %+v", st.Roles)
	}
	f.now = f.now.Add(4 * 24 * time.Hour)
	if _, err := f.repo.RefreshTimestamp(f.now); err != nil {
		t.Fatal(err)
	}
	st = f.repo.Status()
	if st.Roles[2].Version != 2 || !st.Roles[2].Expires.Equal(f.now.Add(7*24*time.Hour)) || st.Roles[3].Version != 3 {
		t.Errorf("after snapshot renewal: %+v", st.Roles)
	}
	ts, err := metadata.Timestamp().FromBytes(mustMeta(t, f.repo, "timestamp.json"))
	if err != nil || ts.Signed.Meta["snapshot.json"].Version != 2 {
		t.Errorf("timestamp names snapshot %v, %v", ts.Signed.Meta["snapshot.json"], err)
	}
}

func mustMeta(t *testing.T, r *tufrepo.Repo, name string) []byte {
	t.Helper()
	b, err := r.Meta(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCrashLeavesPreviousState: files of a publication that never reached timestamp.json
// are ignored on Open and overwritten by the next publication.
func TestCrashLeavesPreviousState(t *testing.T) {
	f := newFixture(t)
	if err := f.repo.AddTarget("vib-1.opkg", []byte("one"), custom("1", 1)); err != nil {
		t.Fatal(err)
	}
	// A crash after writing 3.targets.json and before the snapshot: simulate the orphan.
	if err := os.WriteFile(filepath.Join(f.dir, "meta", "3.targets.json"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := tufrepo.Open(f.dir, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.Roles[1].Version != 2 {
		t.Errorf("Open picked targets v%d, want v2 (what timestamp names)", st.Roles[1].Version)
	}
	if err := r.AddTarget("vib-2.opkg", []byte("two"), custom("2", 2)); err != nil {
		t.Fatal(err)
	}
	tm, err := metadata.Targets().FromBytes(mustMeta(t, r, "3.targets.json"))
	if err != nil || len(tm.Signed.Targets) != 2 {
		t.Errorf("3.targets.json after the next publication: %v, %v", tm, err)
	}
}

func TestUpdateRootRefusals(t *testing.T) {
	f := newFixture(t)
	k2 := key(t)
	stranger := key(t)
	u := tufrepo.RootUpdate{RootKeys: []ed25519.PublicKey{k2.Public().(ed25519.PublicKey)}}
	for _, tc := range []struct {
		name    string
		u       tufrepo.RootUpdate
		signers []ed25519.PrivateKey
		want    string
	}{
		{"stranger key", u, []ed25519.PrivateKey{f.root, k2, stranger}, "neither a root key"},
		{"old key only", u, []ed25519.PrivateKey{f.root}, "its own root keys"},
		{"new key only", u, []ed25519.PrivateKey{k2}, "root keys of v1"},
		{"targets change without the new targets key", tufrepo.RootUpdate{TargetsKeys: []ed25519.PublicKey{k2.Public().(ed25519.PublicKey)}}, []ed25519.PrivateKey{f.root}, "re-signed"},
		{"threshold above keys", tufrepo.RootUpdate{RootThreshold: 2}, []ed25519.PrivateKey{f.root}, "threshold 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.repo.UpdateRoot(tc.u, tc.signers)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("UpdateRoot = %v, want %q", err, tc.want)
			}
			if _, err := f.repo.Meta("2.root.json"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused UpdateRoot wrote 2.root.json")
			}
		})
	}
	if err := f.repo.UpdateRoot(u, []ed25519.PrivateKey{f.root, k2}); err != nil {
		t.Fatal(err)
	}
	st := f.repo.Status()
	id, _ := tufrepo.KeyID(k2.Public().(ed25519.PublicKey))
	if st.Roles[0].Version != 2 || len(st.Roles[0].KeyIDs) != 1 || st.Roles[0].KeyIDs[0] != id {
		t.Errorf("root after rotation: %+v", st.Roles[0])
	}
	root, err := metadata.Root().FromBytes(mustMeta(t, f.repo, "2.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	oldID, _ := tufrepo.KeyID(f.root.Public().(ed25519.PublicKey))
	if _, ok := root.Signed.Keys[oldID]; ok {
		t.Error("the revoked root key is still in root v2's key table")
	}
}

// FuzzOpen: fetch paths come from devices; Open must answer every one without panicking
// and never serve anything outside meta/ and targets/.
func FuzzOpen(f *testing.F) {
	for _, s := range []string{"meta/timestamp.json", "meta/1.root.json", "targets/x", "meta/../keys/snapshot.key", "meta/1.root.json\x00", "targets/" + strings.Repeat("a", 64) + ".b"} {
		f.Add(s)
	}
	fx := newFixture(f)
	if err := fx.repo.AddTarget("vib-1.opkg", []byte("one"), custom("1", 1)); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, n, err := fx.repo.Open(path)
		if err != nil {
			return
		}
		if strings.Contains(path, "..") || strings.Contains(path, "keys") {
			t.Fatalf("Open(%q) served %d bytes", path, n)
		}
		buf := make([]byte, min(n, 1<<16))
		if _, err := r.ReadAt(buf, 0); err != nil && err != io.EOF {
			t.Fatalf("ReadAt of %q: %v", path, err)
		}
	})
}

// TestRunRefresher: left running for ten days of (fake) time, the refresher keeps the
// timestamp and snapshot from ever expiring.
func TestRunRefresher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "tuf")
		repo, err := tufrepo.Init(dir, []ed25519.PrivateKey{key(t)}, []ed25519.PrivateKey{key(t)}, tufrepo.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- repo.RunRefresher(ctx, 0, nil) }()
		start := time.Now()
		for time.Since(start) < 10*24*time.Hour {
			time.Sleep(30 * time.Minute)
			synctest.Wait()
			st := repo.Status()
			for _, r := range st.Roles[2:] {
				if !r.Expires.After(time.Now()) {
					t.Fatalf("after %v %s expired at %v", time.Since(start), r.Name, r.Expires)
				}
			}
		}
		if st := repo.Status(); st.Roles[3].Version < 10*2 || st.Roles[2].Version < 3 {
			t.Errorf("after 10 days: timestamp v%d, snapshot v%d; want at least 20 and 3", st.Roles[3].Version, st.Roles[2].Version)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("RunRefresher = %v, want context.Canceled", err)
		}
	})
}
