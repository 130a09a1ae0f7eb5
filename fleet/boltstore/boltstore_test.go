package boltstore_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() (fleet.Store, error) {
		dir := t.TempDir()
		return func() (fleet.Store, error) { return boltstore.Open(dir, boltstore.Options{}) }
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := boltstore.Open(dir, boltstore.Options{LockTimeout: 50e6}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("second Open of a locked store = %v, want a 'locked' error", err)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := boltstore.Open(filepath.Join(file, "sub"), boltstore.Options{}); err == nil {
		t.Error("Open under a regular file = nil error, want one")
	} else if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}
