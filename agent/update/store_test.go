package update

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/models/bundle"
)

func samplePackage(t *testing.T) ([]byte, string) {
	t.Helper()
	pkg, err := os.ReadFile("../../models/sample/vibration-anomaly-f32-1.0.0.opkg")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pkg)
	return pkg, hex.EncodeToString(sum[:])
}

func TestStorePutReadPrune(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir()); !os.IsNotExist(err) {
		t.Errorf("store dir made before anything was stored: %v", err)
	}
	if removed, err := s.Prune(3); err != nil || len(removed) != 0 {
		t.Errorf("Prune of a store never written: %v, %v", removed, err)
	}
	demo := bundle.DemoKey().Public().(ed25519.PublicKey)
	pkg, sha := samplePackage(t)
	src := filepath.Join(dir, "download")
	os.WriteFile(src, pkg, 0o600)
	name, err := s.Put(src, sha)
	if err != nil {
		t.Fatal(err)
	}
	if name != sha+".opkg" {
		t.Errorf("stored as %s", name)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Errorf("download left behind: %v", err)
	}
	if _, _, err := s.LoadPredictor(name, demo, tfpredict.Options{}); err != nil {
		t.Fatalf("load stored package: %v", err)
	}
	_, other, _ := bundle.GenerateKey(nil)
	if _, err := s.Read(name, other.Public().(ed25519.PublicKey)); err == nil || !strings.Contains(err.Error(), "signature does not verify") {
		t.Errorf("foreign key: %v", err)
	}
	// A package changed on disk is refused before it is parsed.
	bad := slices.Clone(pkg)
	bad[100] ^= 1
	os.WriteFile(filepath.Join(s.Dir(), name), bad, 0o600)
	if _, err := s.Read(name, demo); err == nil || !strings.Contains(err.Error(), "changed on disk") {
		t.Errorf("tampered package: %v", err)
	}
	if _, err := s.Put(src, "not-a-digest"); err == nil {
		t.Error("Put accepted a name that is not a sha256")
	}

	// Prune keeps the newest, never a protected one, and clears leftovers.
	for i, n := range []string{"a", "b", "c", "d", "e"} {
		p := filepath.Join(s.Dir(), strings.Repeat(n, 64)+".opkg")
		os.WriteFile(p, []byte(n), 0o600)
		mt := time.Now().Add(time.Duration(i-10) * time.Minute)
		os.Chtimes(p, mt, mt)
	}
	os.WriteFile(filepath.Join(s.Dir(), "x.opkg.tmp"), nil, 0o600)
	oldest := strings.Repeat("a", 64) + ".opkg"
	removed, err := s.Prune(3, oldest, "")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{strings.Repeat("b", 64) + ".opkg", strings.Repeat("c", 64) + ".opkg", strings.Repeat("d", 64) + ".opkg", "x.opkg.tmp"}
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	ents, _ := os.ReadDir(s.Dir())
	if len(ents) != 3 {
		t.Errorf("%d files left, want 3 (the protected one and the two newest)", len(ents))
	}
}
