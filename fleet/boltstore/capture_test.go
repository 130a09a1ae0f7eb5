package boltstore_test

import (
	"testing"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/storetest"
)

func TestCaptureContract(t *testing.T) {
	storetest.RunCapture(t, func(t *testing.T) func() (fleet.Store, error) {
		dir := t.TempDir()
		return func() (fleet.Store, error) { return boltstore.Open(dir, boltstore.Options{}) }
	})
}
