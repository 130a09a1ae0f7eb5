package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/fleet/wire"
)

func TestRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.md")
	doc := "intro\n" + beginMarker + "\nold table\n" + endMarker + "\noutro\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second run gives the same file
		if err := rewrite(path, "new table\n"); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(path)
	if want := "intro\n" + beginMarker + "\nnew table\n" + endMarker + "\noutro\n"; string(got) != want {
		t.Errorf("rewrote to %q, want %q", got, want)
	}
	if err := os.WriteFile(path, []byte("no markers"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewrite(path, "x"); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Errorf("rewrite without markers = %v", err)
	}
}

// A few windows of one healthy machine score under the default thresholds, and the same
// machine shifted by 2σ from the start flags every window with every histogram score.
func TestSimulateShort(t *testing.T) {
	man, sigma, err := baseline()
	if err != nil {
		t.Fatal(err)
	}
	feats, err := simulate(man, 201, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	for w, f := range flags(feats) {
		if f[len(scores)] {
			t.Errorf("healthy window %d flagged: %+v", w, feats[w])
		}
	}
	ds, err := parseShift(2 * sigma)
	if err != nil {
		t.Fatal(err)
	}
	feats, err = simulate(man, 201, ds, 2)
	if err != nil {
		t.Fatal(err)
	}
	for w, f := range feats {
		for _, s := range []string{wire.ScorePSI, wire.ScoreKS, wire.ScoreJS} {
			if !slices.Contains(f.Drifted, s) {
				t.Errorf("window %d of a 2σ shift: drifted %v, missing %s", w, f.Drifted, s)
			}
		}
	}
}
