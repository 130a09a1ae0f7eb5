package pgstore_test

import (
	"context"
	"testing"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
	"github.com/outpost-ml/outpost/fleet/storetest"
)

func TestContract(t *testing.T) {
	// Every test's database is a copy of one migrated by Open (TestMigrations opens empty ones).
	srv := pgtest.Start(t, pgtest.Options{}).Template(t, func(url string) error {
		s, err := pgstore.Open(context.Background(), url, pgstore.Options{})
		if err != nil {
			return err
		}
		return s.Close()
	})
	storetest.Run(t, func(t *testing.T) func() (fleet.Store, error) {
		url := srv.NewDB(t)
		return func() (fleet.Store, error) { return pgstore.Open(context.Background(), url, pgstore.Options{}) }
	})
}

func TestCaptureContract(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{}).Template(t, func(url string) error {
		s, err := pgstore.Open(context.Background(), url, pgstore.Options{})
		if err != nil {
			return err
		}
		return s.Close()
	})
	storetest.RunCapture(t, func(t *testing.T) func() (fleet.Store, error) {
		url := srv.NewDB(t)
		return func() (fleet.Store, error) { return pgstore.Open(context.Background(), url, pgstore.Options{}) }
	})
}
