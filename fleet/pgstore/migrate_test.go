package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
)

// TestMigrations: replicas opening one empty database together apply every version once
// (the advisory lock), reopening applies nothing, and a database migrated by a newer
// controller is refused with a clear error and left untouched.
func TestMigrations(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := srv.NewDB(t)
	ctx := context.Background()
	ms, err := pgstore.Migrations()
	if err != nil || len(ms) == 0 {
		t.Fatalf("Migrations() = %d, %v", len(ms), err)
	}

	const replicas = 4
	var g errgroup.Group
	stores := make([]*pgstore.Store, replicas)
	for i := range stores {
		g.Go(func() error {
			s, err := pgstore.Open(ctx, url, pgstore.Options{})
			stores[i] = s
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent Open: %v", err)
	}
	for _, s := range stores {
		if s.SchemaVersion() != len(ms) {
			t.Errorf("SchemaVersion() = %d, want %d", s.SchemaVersion(), len(ms))
		}
		s.Close()
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, maxV int
	if err := conn.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &maxV); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || maxV != len(ms) {
		t.Fatalf("schema_migrations holds %d rows up to %d, want %d", n, maxV, len(ms))
	}

	// A newer controller migrated the database further.
	if _, err := conn.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future')", len(ms)+1); err != nil {
		t.Fatal(err)
	}
	_, err = pgstore.Open(ctx, url, pgstore.Options{})
	if !errors.Is(err, pgstore.ErrSchemaTooNew) || !strings.Contains(err.Error(), "upgrade outpost") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Open on a newer schema = %v, want a one-line ErrSchemaTooNew saying to upgrade", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct{ name, url, want string }{
		{"not a url", "postgres://a b:c@%zz", "bad connection url"},
		{"nobody listening", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2", "127.0.0.1:1/x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pgstore.Open(ctx, tt.url, pgstore.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Open(%q) = %v, want a one-line error containing %q", tt.url, err, tt.want)
			}
		})
	}
}
