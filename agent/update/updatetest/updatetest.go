// Package updatetest holds hand-written stand-ins for the update's seams, for tests and for
// the test build of outpost-agent (build tag updatetest): a directory "repository" whose
// targets list is signed with ed25519, a Trust that verifies that signature, the list's
// expiry and version and every file's length and sha256, a Downloader that copies from the
// repository at a bounded rate into a resumable partial file, and a Desired source that
// watches a JSON file. They do what agent/trust (TUF) and agent/fetch (MQTT) do for real,
// with the same checks a test needs to see, and nothing else.
package updatetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/outpost-ml/outpost/agent/update"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Repository files inside its directory.
const (
	TargetsFile = "targets.json"
	SigFile     = "targets.sig" // ed25519 signature of TargetsFile's bytes
	TargetsDir  = "targets"     // target files by their fetch path
	DesiredFile = "desired.json"
)

// Targets is the signed list.
type Targets struct {
	Version int                      `json:"version"`
	Expires time.Time                `json:"expires"`
	Targets map[string]update.Target `json:"targets"`
}

// Repo writes a signed repository into Dir.
type Repo struct {
	Dir string
	Key ed25519.PrivateKey

	mu      sync.Mutex
	targets Targets
}

// NewRepo returns an empty repository in dir signed with key.
func NewRepo(dir string, key ed25519.PrivateKey) (*Repo, error) {
	if err := os.MkdirAll(filepath.Join(dir, TargetsDir), 0o700); err != nil {
		return nil, err
	}
	r := &Repo{Dir: dir, Key: key, targets: Targets{Targets: map[string]update.Target{}}}
	return r, r.write()
}

// Add stores pkg as target name with custom fields and publishes a new signed list. It
// returns the target as signed.
func (r *Repo) Add(name string, pkg []byte, custom update.TargetCustom) (update.Target, error) {
	sum := sha256.Sum256(pkg)
	sha := hex.EncodeToString(sum[:])
	t := update.Target{Name: name, Path: sha + "." + name, Length: int64(len(pkg)), SHA256: sha, Custom: custom}
	if err := os.WriteFile(filepath.Join(r.Dir, TargetsDir, t.Path), pkg, 0o600); err != nil {
		return t, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.targets.Targets[name] = t
	return t, r.write()
}

// Tamper overwrites a stored target's bytes without re-signing: what an attacker or a bad
// disk does.
func (r *Repo) Tamper(t update.Target, data []byte) error {
	return os.WriteFile(filepath.Join(r.Dir, TargetsDir, t.Path), data, 0o600)
}

// write signs and writes the list with the next version, valid for a day. Called with mu
// held (or before r is shared).
func (r *Repo) write() error {
	r.targets.Version++
	r.targets.Expires = time.Now().Add(24 * time.Hour).UTC()
	b, err := json.Marshal(&r.targets)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.Dir, TargetsFile), b, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.Dir, SigFile), ed25519.Sign(r.Key, b), 0o600)
}

// SetDesired publishes d as the repository's desired state (for DesiredWatcher).
func (r *Repo) SetDesired(d wire.Desired) error {
	b, err := json.Marshal(&d)
	if err != nil {
		return err
	}
	tmp := filepath.Join(r.Dir, DesiredFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(r.Dir, DesiredFile))
}

// Trust verifies a Repo's signed list: signature, expiry, and that its version never goes
// back (a replayed older list is refused).
type Trust struct {
	Dir string
	Pub ed25519.PublicKey
	Now func() time.Time // nil: time.Now

	mu      sync.Mutex
	current *Targets
}

// Refresh implements update.Trust.
func (t *Trust) Refresh(ctx context.Context) error {
	b, err := readMax(filepath.Join(t.Dir, TargetsFile), 1<<20)
	if err != nil {
		return err
	}
	sig, err := readMax(filepath.Join(t.Dir, SigFile), ed25519.SignatureSize)
	if err != nil {
		return err
	}
	if !ed25519.Verify(t.Pub, b, sig) {
		return errors.New("targets list: signature does not verify")
	}
	var l Targets
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("targets list: %w", err)
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case now().After(l.Expires):
		return fmt.Errorf("targets list expired at %s", l.Expires.Format(time.RFC3339))
	case t.current != nil && l.Version < t.current.Version:
		return fmt.Errorf("targets list version %d is older than %d already seen (replay)", l.Version, t.current.Version)
	}
	t.current = &l
	return nil
}

// Lookup implements update.Trust.
func (t *Trust) Lookup(name string) (update.Target, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current == nil {
		return update.Target{}, errors.New("no trusted targets list yet")
	}
	tg, ok := t.current.Targets[name]
	if !ok {
		return update.Target{}, fmt.Errorf("no target %q in the signed list", name)
	}
	return tg, nil
}

// VerifyFile implements update.Trust: length and sha256, streaming.
func (t *Trust) VerifyFile(tg update.Target, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, tg.Length+1))
	if err != nil {
		return err
	}
	if n != tg.Length {
		return fmt.Errorf("file is %d bytes or more, signed length is %d", n, tg.Length)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != tg.SHA256 {
		return fmt.Errorf("sha256 %s does not match the signed %s", got, tg.SHA256)
	}
	return nil
}

func readMax(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over %d bytes", filepath.Base(path), max)
	}
	return b, nil
}

// Downloader copies targets from a Repo directory into Dir at Rate bytes per second (0:
// unbounded), appending to "{sha256}.part" so a restart resumes where it stopped.
type Downloader struct {
	Src  string // the Repo's directory
	Dir  string // partial and complete downloads
	Rate int64
	// Chunk is the bytes copied (and synced) at once; 0 means 4096.
	Chunk int
}

// Download implements update.Downloader.
func (d *Downloader) Download(ctx context.Context, w update.Want, progress func(held, total int64)) (string, error) {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return "", err
	}
	src, err := os.Open(filepath.Join(d.Src, TargetsDir, filepath.Base(w.Path)))
	if err != nil {
		return "", fmt.Errorf("not found: %s", w.Path)
	}
	defer src.Close()
	part := filepath.Join(d.Dir, w.SHA256+".part")
	f, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	held, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", err
	}
	if held > w.Length {
		return "", fmt.Errorf("partial file of %d bytes is longer than the signed %d", held, w.Length)
	}
	if _, err := src.Seek(held, io.SeekStart); err != nil {
		return "", err
	}
	chunk := d.Chunk
	if chunk <= 0 {
		chunk = 4096
	}
	buf := make([]byte, chunk)
	start, startHeld := time.Now(), held
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			// Endless data: never hold more than the signed length.
			if held+int64(n) > w.Length {
				return "", fmt.Errorf("target is longer than its signed %d bytes", w.Length)
			}
			if _, err := f.Write(buf[:n]); err != nil {
				return "", err
			}
			if err := f.Sync(); err != nil {
				return "", err
			}
			held += int64(n)
			if progress != nil {
				progress(held, w.Length)
			}
			if d.Rate > 0 {
				due := start.Add(time.Duration(float64(held-startHeld) / float64(d.Rate) * float64(time.Second)))
				if wait := time.Until(due); wait > 0 {
					select {
					case <-ctx.Done():
						return "", ctx.Err()
					case <-time.After(wait):
					}
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return "", rerr
		}
	}
	if held != w.Length {
		return "", fmt.Errorf("target ended after %d of its signed %d bytes", held, w.Length)
	}
	done := filepath.Join(d.Dir, w.SHA256+".done")
	if err := os.Rename(part, done); err != nil {
		return "", err
	}
	return done, nil
}

// DesiredWatcher delivers the Desired state a Repo publishes, polling its file.
type DesiredWatcher struct {
	ch chan wire.Desired
}

// WatchDesired polls dir's desired file every interval until ctx ends, sending each new
// content (last one wins when nobody reads).
func WatchDesired(ctx context.Context, dir string, interval time.Duration) *DesiredWatcher {
	w := &DesiredWatcher{ch: make(chan wire.Desired, 1)}
	go func() {
		var last []byte
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if b, err := readMax(filepath.Join(dir, DesiredFile), 1<<16); err == nil && !bytes.Equal(b, last) {
				var d wire.Desired
				if json.Unmarshal(b, &d) == nil {
					last = b
					select {
					case <-w.ch:
					default:
					}
					w.ch <- d
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// Desired implements update.DesiredSource.
func (w *DesiredWatcher) Desired() <-chan wire.Desired { return w.ch }
