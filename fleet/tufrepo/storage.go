package tufrepo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/outpost-ml/outpost/internal/atomicfile"
)

// Storage holds a repository's files by slash-separated name relative to the repository:
// "meta/N.root.json", "meta/timestamp.json", "targets/{sha256}.{name}", "keys/{role}.key".
// A write replaces the whole file at once (a reader sees the old or the new bytes, never a
// mix); a missing file is an error wrapping fs.ErrNotExist. The repository writes in an order
// that keeps every state it can be read in complete, so a write is the only atomic step it
// needs. DirStorage keeps the files in a directory; the PostgreSQL store keeps them in a
// table, so every scale-out replica serves the same repository.
type Storage interface {
	ReadFile(name string) ([]byte, error)
	WriteFile(name string, data []byte) error
	Size(name string) (int64, error)
	ReadAt(name string, p []byte, off int64) (int, error)
}

// Locker is a Storage shared by several processes. The repository takes the lock around every
// change and reloads its state from the storage first, so two replicas never sign two
// different states under one version number.
type Locker interface {
	LockRepo(ctx context.Context) (unlock func(), err error)
}

// Lister lists every stored name; Import needs it from its source.
type Lister interface {
	List() ([]string, error)
}

// DirStorage is a Storage in a directory, with the layout the package documentation gives.
type DirStorage string

func (d DirStorage) path(name string) (string, error) {
	if !fs.ValidPath(name) || name == "." {
		return "", fmt.Errorf("tuf repository file %q: %w", name, fs.ErrNotExist)
	}
	return filepath.Join(string(d), filepath.FromSlash(name)), nil
}

// ReadFile implements Storage.
func (d DirStorage) ReadFile(name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// WriteFile implements Storage. Keys are written readable by the owner only.
func (d DirStorage) WriteFile(name string, data []byte) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if strings.HasPrefix(name, "keys/") {
		perm = 0o600
	}
	return atomicfile.Write(p, data, perm)
}

// Size implements Storage.
func (d DirStorage) Size(name string) (int64, error) {
	p, err := d.path(name)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// ReadAt implements Storage; it opens the file for each call (targets never change).
func (d DirStorage) ReadAt(name string, b []byte, off int64) (int, error) {
	p, err := d.path(name)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.ReadAt(b, off)
}

// List implements Lister: the files under meta/, targets/ and keys/.
func (d DirStorage) List() ([]string, error) {
	var out []string
	for _, sub := range []string{"meta", "targets", "keys"} {
		entries, err := os.ReadDir(filepath.Join(string(d), sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			// Skip directories and atomicfile's temporary files left by a crash.
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				out = append(out, sub+"/"+e.Name())
			}
		}
	}
	return out, nil
}

// Import copies the repository in src into dst when dst holds none yet (no
// meta/timestamp.json), and reports whether it copied. Packages, keys, roots and the other
// metadata go first and the timestamp last, so a crash part-way leaves dst still empty to
// a reader, and the next Import copies again.
func Import(dst Storage, src interface {
	Storage
	Lister
}) (bool, error) {
	if l, ok := dst.(Locker); ok {
		unlock, err := l.LockRepo(context.Background())
		if err != nil {
			return false, fmt.Errorf("import tuf repository: %w", err)
		}
		defer unlock()
	}
	if _, err := dst.ReadFile(metaPath("timestamp.json")); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("import tuf repository: %w", err)
	}
	names, err := src.List()
	if err != nil {
		return false, fmt.Errorf("import tuf repository: %w", err)
	}
	if !slices.Contains(names, metaPath("timestamp.json")) {
		return false, fmt.Errorf("import tuf repository: source has no meta/timestamp.json")
	}
	rank := func(n string) int {
		switch {
		case n == metaPath("timestamp.json"):
			return 2
		case strings.HasPrefix(n, "meta/"):
			return 1
		}
		return 0
	}
	slices.SortStableFunc(names, func(a, b string) int { return rank(a) - rank(b) })
	for _, n := range names {
		data, err := src.ReadFile(n)
		if err != nil {
			return false, fmt.Errorf("import tuf repository: %w", err)
		}
		if err := dst.WriteFile(n, data); err != nil {
			return false, fmt.Errorf("import tuf repository: %s: %w", n, err)
		}
	}
	return true, nil
}
