package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
)

// TUFRepoKey is the advisory lock key replicas take around a change of the shared TUF
// repository, so publications and re-signs of two replicas never interleave. Every advisory
// lock key of the package is distinct (TestAdvisoryLockKeysDistinct): a replica holding one
// key for an election must never find itself waiting on it for another purpose.
const TUFRepoKey int64 = 0x6f7574706f7374 + 3

// tufTimeout bounds one repository query: the repository's API has no context, and a device
// asks again when a block does not come.
const tufTimeout = 30 * time.Second

// TUFFiles keeps the fleet's TUF repository in the tuf_files table. It implements
// tufrepo.Storage, tufrepo.Locker and tufrepo.Lister (without importing tufrepo: the seam is
// the repository's).
type TUFFiles struct{ s *Store }

// TUFFiles returns the store's TUF repository files.
func (s *Store) TUFFiles() TUFFiles { return TUFFiles{s} }

func notExist(name string) error { return fmt.Errorf("tuf file %s: %w", name, fs.ErrNotExist) }

// ReadFile returns a stored file.
func (t TUFFiles) ReadFile(name string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tufTimeout)
	defer cancel()
	var data []byte
	err := t.s.pool.QueryRow(ctx, "SELECT data FROM tuf_files WHERE name = $1", name).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notExist(name)
	}
	if err != nil {
		return nil, fmt.Errorf("read tuf file %s: %w", name, err)
	}
	return data, nil
}

// WriteFile stores or replaces a file in one statement.
func (t TUFFiles) WriteFile(name string, data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), tufTimeout)
	defer cancel()
	if data == nil {
		data = []byte{} // data is NOT NULL
	}
	_, err := t.s.pool.Exec(ctx, `INSERT INTO tuf_files (name, data) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET data = excluded.data, written_at = now()`, name, data)
	if err != nil {
		return fmt.Errorf("write tuf file %s: %w", name, err)
	}
	return nil
}

// Size returns a stored file's length.
func (t TUFFiles) Size(name string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tufTimeout)
	defer cancel()
	var n int64
	err := t.s.pool.QueryRow(ctx, "SELECT octet_length(data) FROM tuf_files WHERE name = $1", name).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, notExist(name)
	}
	if err != nil {
		return 0, fmt.Errorf("tuf file %s: %w", name, err)
	}
	return n, nil
}

// ReadAt reads len(p) bytes at off, reading only that part of the value.
func (t TUFFiles) ReadAt(name string, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read tuf file %s: negative offset", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tufTimeout)
	defer cancel()
	var data []byte
	// substring counts from 1.
	err := t.s.pool.QueryRow(ctx, "SELECT substring(data FROM $2 FOR $3) FROM tuf_files WHERE name = $1", name, off+1, len(p)).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, notExist(name)
	}
	if err != nil {
		return 0, fmt.Errorf("read tuf file %s: %w", name, err)
	}
	n := copy(p, data)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// List returns every stored name.
func (t TUFFiles) List() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tufTimeout)
	defer cancel()
	rows, err := t.s.pool.Query(ctx, "SELECT name FROM tuf_files ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list tuf files: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tuf files: %w", err)
	}
	return names, nil
}

// LockRepo takes the repository's advisory lock on a connection of its own, waiting for
// another replica's change to finish. PostgreSQL drops the lock with the session, so a
// replica that dies holding it blocks no one.
func (t TUFFiles) LockRepo(ctx context.Context) (func(), error) {
	ctx, cancel := context.WithTimeout(ctx, tufTimeout)
	defer cancel()
	conn, err := t.s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock tuf repository: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", TUFRepoKey); err != nil {
		// The lock may or may not be held: close the session so it is not.
		_ = conn.Conn().Close(context.Background())
		conn.Release()
		return nil, fmt.Errorf("lock tuf repository: %w", err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), tufTimeout)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", TUFRepoKey); err != nil {
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, nil
}
