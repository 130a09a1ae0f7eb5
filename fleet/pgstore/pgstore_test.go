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
	srv := pgtest.Start(t, pgtest.Options{})
	storetest.Run(t, func(t *testing.T) func() (fleet.Store, error) {
		url := srv.NewDB(t)
		return func() (fleet.Store, error) { return pgstore.Open(context.Background(), url, pgstore.Options{}) }
	})
}
