package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
)

// TestServers: both ways of getting a server give a fresh database that takes writes, and
// two databases of one server do not see each other's tables.
func TestServers(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts pgtest.Options
	}{{"default", pgtest.Options{}}, {"throwaway", pgtest.Options{Throwaway: true}}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := pgtest.Start(t, tt.opts)
			ctx := context.Background()
			a, b := srv.NewDB(t), srv.NewDB(t)
			if a == b {
				t.Fatalf("two NewDB calls gave the same database %s", a)
			}
			ca, err := pgx.Connect(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			defer ca.Close(ctx)
			if _, err := ca.Exec(ctx, "CREATE TABLE x (v int); INSERT INTO x VALUES (42)"); err != nil {
				t.Fatal(err)
			}
			var v int
			if err := ca.QueryRow(ctx, "SELECT v FROM x").Scan(&v); err != nil || v != 42 {
				t.Fatalf("read back %d, %v; want 42", v, err)
			}
			cb, err := pgx.Connect(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			defer cb.Close(ctx)
			var n int
			if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil || n != 0 {
				t.Fatalf("second database sees %d tables named x, %v; want 0", n, err)
			}
		})
	}
}

// TestTemplate: databases made from a template start with what its init wrote, and are
// independent copies.
func TestTemplate(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t, pgtest.Options{}).Template(t, func(url string) error {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "CREATE TABLE seeded (v int); INSERT INTO seeded VALUES (7)")
		return err
	})
	for i := range 2 {
		c, err := pgx.Connect(ctx, srv.NewDB(t))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM seeded").Scan(&n); err != nil || n != 1 {
			t.Fatalf("copy %d: %d seeded rows, %v; want 1 (the template's, not the other copy's)", i, n, err)
		}
		if _, err := c.Exec(ctx, "INSERT INTO seeded VALUES (8)"); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
	}
}
