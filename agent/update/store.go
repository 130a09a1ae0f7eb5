package update

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/models/bundle"
)

// StoreDir is the model store's directory inside the data dir.
const StoreDir = "models"

// Store keeps verified model packages on disk as "{sha256}.opkg", the sha256 being the
// package file's. Packages are immutable once stored; Prune keeps the newest few.
type Store struct {
	dir string
}

// OpenStore returns the store under dataDir. The directory is made by the first Put, so an
// agent that never takes an update (or starts on a full disk) writes nothing for it.
func OpenStore(dataDir string) (*Store, error) {
	if dataDir == "" {
		return nil, fmt.Errorf("model store: no data dir")
	}
	return &Store{dir: filepath.Join(dataDir, StoreDir)}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// FileName is the store's name for a package with this sha256.
func FileName(sha string) string { return sha + bundle.Extension }

// Put moves the file at src, whose sha256 the caller verified, into the store under
// FileName(sha) and syncs it; it returns the stored name. A package already stored is kept.
func (s *Store) Put(src, sha string) (string, error) {
	if len(sha) != 64 || strings.Trim(sha, "0123456789abcdef") != "" {
		return "", fmt.Errorf("model store: %q is not a sha256", sha)
	}
	name := FileName(sha)
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return "", fmt.Errorf("model store: %w", err)
	}
	dst := filepath.Join(s.dir, name)
	if _, err := os.Stat(dst); err == nil {
		return name, nil
	}
	tmp := dst + ".tmp"
	if err := copyFile(tmp, src); err != nil {
		return "", fmt.Errorf("model store: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("model store: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return "", fmt.Errorf("model store: %w", err)
	}
	// The downloader's copy is the caller's to drop; a leftover costs disk only.
	_ = os.Remove(src)
	return name, nil
}

// copyFile copies src to dst and fsyncs it. A copy, not a rename: the downloader's file may
// live on another filesystem.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Read reads a stored package, checks that its bytes still hash to its name and that pub
// signed it. Every load checks again, so a package changed on disk never runs.
func (s *Store) Read(name string, pub ed25519.PublicKey) (*bundle.Package, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, filepath.Base(name)))
	if err != nil {
		return nil, fmt.Errorf("model store: %w", err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]) + bundle.Extension; got != name {
		return nil, fmt.Errorf("model store: %s changed on disk (sha256 now %s)", name, strings.TrimSuffix(got, bundle.Extension))
	}
	return OpenPackage(data, pub)
}

// OpenPackage parses package bytes and checks their signature with pub, in one-line errors.
func OpenPackage(data []byte, pub ed25519.PublicKey) (*bundle.Package, error) {
	if len(pub) == 0 {
		return nil, errors.New("no package key pinned: cannot check the package signature")
	}
	p, err := bundle.Read(bytes.NewReader(data), bundle.Limits{})
	if err != nil {
		return nil, err
	}
	if err := p.Verify(pub); err != nil {
		return nil, err
	}
	return p, nil
}

// LoadPredictor verifies and loads a stored package into a Predictor.
func (s *Store) LoadPredictor(name string, pub ed25519.PublicKey, opts tfpredict.Options) (*tfpredict.Predictor, *bundle.Package, error) {
	p, err := s.Read(name, pub)
	if err != nil {
		return nil, nil, err
	}
	pr, err := tfpredict.NewWith(p.Model, p.Manifest, bundle.FileName(p.Manifest), opts)
	if err != nil {
		return nil, nil, err
	}
	return pr, p, nil
}

// Prune removes stored packages beyond the keep newest (by modification time), never one
// named in protect, and leftovers of interrupted Puts. It returns the names removed.
func (s *Store) Prune(keep int, protect ...string) ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("model store: %w", err)
	}
	type file struct {
		name string
		mod  int64
	}
	var files []file
	var removed []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasSuffix(n, ".tmp") {
			if os.Remove(filepath.Join(s.dir, n)) == nil {
				removed = append(removed, n)
			}
			continue
		}
		if !strings.HasSuffix(n, bundle.Extension) || slices.Contains(protect, n) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		files = append(files, file{n, info.ModTime().UnixNano()})
	}
	slices.SortFunc(files, func(a, b file) int {
		if c := cmp.Compare(b.mod, a.mod); c != 0 {
			return c // newest first
		}
		return strings.Compare(a.name, b.name)
	})
	kept := 0
	for i, n := range protect {
		if n != "" && !slices.Contains(protect[:i], n) {
			kept++
		}
	}
	for _, f := range files {
		if kept < keep {
			kept++
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, f.name)); err != nil {
			return removed, fmt.Errorf("model store: %w", err)
		}
		removed = append(removed, f.name)
	}
	return removed, nil
}
