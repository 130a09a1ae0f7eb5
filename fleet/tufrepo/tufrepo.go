// Package tufrepo is the controller's TUF repository (The Update Framework, spec 1.0, through
// github.com/theupdateframework/go-tuf/v2): the signed root, targets, snapshot and timestamp
// metadata that devices verify before they accept a model package, and the packages
// themselves, on disk under one directory.
//
// Keys follow TUF's split. Root and targets keys are offline-capable: they live in files the
// user keeps elsewhere and hands to the operations that need them (Init, UpdateRoot, and
// AddTarget through Options.TargetsKeys). Snapshot and timestamp keys are online, in
// DIR/keys, because the controller must re-sign those roles on its own before they expire.
//
// Layout (consistent snapshots, so a device never mixes files of two repository states):
//
//	DIR/meta/N.root.json      every root version, kept forever (devices walk them in order)
//	DIR/meta/N.targets.json   targets metadata, one file per version
//	DIR/meta/N.snapshot.json  snapshot metadata, one file per version
//	DIR/meta/timestamp.json   the only file rewritten in place (atomically)
//	DIR/targets/{sha256}.{name}  model packages, content-addressed
//	DIR/keys/{snapshot,timestamp}.key  online ed25519 keys (PEM PKCS #8, mode 0600)
//
// A publication writes the package, then targets, snapshot and timestamp, each atomically:
// a crash part-way leaves files nothing references yet, and timestamp.json still names the
// previous, complete state.
package tufrepo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

// IssuedField is an extra field of the signed timestamp: when the controller signed it (RFC
// 3339, UTC). TUF keeps unknown fields inside the signed part, so the timestamp key's
// signature covers it. Devices use it only to cap their clock floor (agent/trust), never to
// move their clock forward.
const IssuedField = "x-outpost-issued"

// Options tunes a repository. Zero fields take the DefaultOptions values.
type Options struct {
	RootLifetime      time.Duration // default 365 days: re-sign root (offline keys) within it
	TargetsLifetime   time.Duration // default 90 days: publish or re-sign targets within it
	SnapshotLifetime  time.Duration // default 7 days, renewed online by RefreshTimestamp
	TimestampLifetime time.Duration // default 1 day, renewed online by RefreshTimestamp
	RootThreshold     int           // signatures root needs (Init only); default 1
	TargetsThreshold  int           // signatures targets needs (Init only); default 1
	// TargetsKeys are the targets keys AddTarget signs with. Without them the repository
	// serves and refreshes but refuses to publish (ErrNoTargetsKey).
	TargetsKeys []ed25519.PrivateKey
	Now         func() time.Time // default time.Now
}

// DefaultOptions returns the lifetimes the package documentation gives.
func DefaultOptions() Options {
	return Options{
		RootLifetime:      365 * 24 * time.Hour,
		TargetsLifetime:   90 * 24 * time.Hour,
		SnapshotLifetime:  7 * 24 * time.Hour,
		TimestampLifetime: 24 * time.Hour,
		RootThreshold:     1,
		TargetsThreshold:  1,
		Now:               time.Now,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.RootLifetime <= 0 {
		o.RootLifetime = d.RootLifetime
	}
	if o.TargetsLifetime <= 0 {
		o.TargetsLifetime = d.TargetsLifetime
	}
	if o.SnapshotLifetime <= 0 {
		o.SnapshotLifetime = d.SnapshotLifetime
	}
	if o.TimestampLifetime <= 0 {
		o.TimestampLifetime = d.TimestampLifetime
	}
	if o.RootThreshold <= 0 {
		o.RootThreshold = d.RootThreshold
	}
	if o.TargetsThreshold <= 0 {
		o.TargetsThreshold = d.TargetsThreshold
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	return o
}

// Errors callers branch on.
var (
	// ErrNotFound is returned for a metadata or target name the repository does not hold.
	// It wraps fs.ErrNotExist.
	ErrNotFound = fmt.Errorf("tuf repository: %w", fs.ErrNotExist)
	// ErrNoTargetsKey is returned by AddTarget when no (or not enough) targets keys were given.
	ErrNoTargetsKey = errors.New("tuf repository: targets key not loaded")
	// ErrExists is returned by Init for a directory that already holds a repository.
	ErrExists = errors.New("tuf repository already initialised")
)

// Repo is an open repository. Its methods are safe for concurrent use: publications are
// serialised by mu, and readers (Meta, Open) read immutable or atomically replaced files.
type Repo struct {
	dir  string  // empty for a repository in a Storage other than a directory
	st   Storage // where the files live
	opts Options

	mu           sync.Mutex // guards the fields below
	root         *metadata.Metadata[metadata.RootType]
	targets      *metadata.Metadata[metadata.TargetsType]
	snapshot     *metadata.Metadata[metadata.SnapshotType]
	timestamp    *metadata.Metadata[metadata.TimestampType]
	snapshotKey  ed25519.PrivateKey
	timestampKey ed25519.PrivateKey
}

// Dir returns the repository directory.
func (r *Repo) Dir() string { return r.dir }

func metaDir(dir string) string    { return filepath.Join(dir, "meta") }
func targetsDir(dir string) string { return filepath.Join(dir, "targets") }
func keysDir(dir string) string    { return filepath.Join(dir, "keys") }

// metaPath is the storage name of a metadata file.
func metaPath(name string) string { return "meta/" + name }

// Init creates a repository in dir (created if missing) with root v1 listing rootKeys and
// targetsKeys, fresh online snapshot and timestamp keys, and empty targets. rootKeys and
// targetsKeys are used here to sign and are not stored; keep them offline.
func Init(dir string, rootKeys, targetsKeys []ed25519.PrivateKey, opts Options) (*Repo, error) {
	opts = opts.withDefaults()
	if len(rootKeys) < opts.RootThreshold || len(targetsKeys) < opts.TargetsThreshold {
		return nil, fmt.Errorf("init tuf repository: %d root and %d targets keys given, thresholds %d and %d",
			len(rootKeys), len(targetsKeys), opts.RootThreshold, opts.TargetsThreshold)
	}
	if _, err := os.Stat(filepath.Join(metaDir(dir), "1.root.json")); err == nil {
		return nil, fmt.Errorf("init %s: %w", dir, ErrExists)
	}
	for _, d := range []string{metaDir(dir), targetsDir(dir), keysDir(dir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("init tuf repository: %w", err)
		}
	}
	r := &Repo{dir: dir, st: DirStorage(dir), opts: opts}
	var err error
	if r.snapshotKey, err = newOnlineKey(r.st, metadata.SNAPSHOT); err != nil {
		return nil, err
	}
	if r.timestampKey, err = newOnlineKey(r.st, metadata.TIMESTAMP); err != nil {
		return nil, err
	}
	now := opts.Now().UTC()
	root := metadata.Root(now.Add(opts.RootLifetime))
	root.Signed.ConsistentSnapshot = true
	roles := map[string][]ed25519.PublicKey{
		metadata.ROOT:      publicKeys(rootKeys),
		metadata.TARGETS:   publicKeys(targetsKeys),
		metadata.SNAPSHOT:  {r.snapshotKey.Public().(ed25519.PublicKey)},
		metadata.TIMESTAMP: {r.timestampKey.Public().(ed25519.PublicKey)},
	}
	thresholds := map[string]int{metadata.ROOT: opts.RootThreshold, metadata.TARGETS: opts.TargetsThreshold}
	if err := setRoles(&root.Signed, roles, thresholds); err != nil {
		return nil, err
	}
	if err := signWith(root, rootKeys); err != nil {
		return nil, err
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return nil, fmt.Errorf("init tuf repository: root does not verify: %w", err)
	}
	r.root = root
	if err := r.writeMeta(rootFile(1), root); err != nil {
		return nil, err
	}
	r.targets = metadata.Targets(now.Add(opts.TargetsLifetime))
	if err := r.publishLocked(targetsKeys, now); err != nil {
		return nil, err
	}
	return r, nil
}

// Open loads the repository in dir. The current state is what timestamp.json names, so files
// a crashed publication left behind are ignored (and overwritten by the next one).
func Open(dir string, opts Options) (*Repo, error) {
	r, err := OpenStorage(DirStorage(dir), opts)
	if err != nil {
		return nil, err
	}
	r.dir = dir
	return r, nil
}

// OpenStorage loads the repository held in st, as Open does for a directory. When st is also
// a Locker, st is taken to be shared with other processes: every change then runs under its
// lock and starts by reloading the state from st, so st stays the single source of truth.
func OpenStorage(st Storage, opts Options) (*Repo, error) {
	r := &Repo{st: st, opts: opts.withDefaults()}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("open tuf repository: %w", err)
	}
	return r, nil
}

// load reads the online keys and the current state from r.st.
func (r *Repo) load() error {
	var err error
	if r.snapshotKey, err = readOnlineKey(r.st, metadata.SNAPSHOT); err != nil {
		return err
	}
	if r.timestampKey, err = readOnlineKey(r.st, metadata.TIMESTAMP); err != nil {
		return err
	}
	for v := int64(1); ; v++ {
		data, err := r.st.ReadFile(metaPath(rootFile(v)))
		if errors.Is(err, fs.ErrNotExist) && v > 1 {
			break
		}
		if err != nil {
			return err
		}
		if r.root, err = metadata.Root().FromBytes(data); err != nil {
			return fmt.Errorf("%s: %w", rootFile(v), err)
		}
	}
	data, err := r.st.ReadFile(metaPath("timestamp.json"))
	if err != nil {
		return err
	}
	if r.timestamp, err = metadata.Timestamp().FromBytes(data); err != nil {
		return fmt.Errorf("timestamp.json: %w", err)
	}
	sv := r.timestamp.Signed.Meta["snapshot.json"]
	if sv == nil {
		return fmt.Errorf("timestamp names no snapshot")
	}
	if data, err = r.st.ReadFile(metaPath(versionedFile(sv.Version, metadata.SNAPSHOT))); err != nil {
		return err
	}
	if r.snapshot, err = metadata.Snapshot().FromBytes(data); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	tv := r.snapshot.Signed.Meta["targets.json"]
	if tv == nil {
		return fmt.Errorf("snapshot names no targets")
	}
	if data, err = r.st.ReadFile(metaPath(versionedFile(tv.Version, metadata.TARGETS))); err != nil {
		return err
	}
	if r.targets, err = metadata.Targets().FromBytes(data); err != nil {
		return fmt.Errorf("targets: %w", err)
	}
	return nil
}

// beginLocked prepares a change: on shared storage it takes the storage's lock and reloads
// the state another replica may have changed. Call the returned function when done.
func (r *Repo) beginLocked() (func(), error) {
	l, ok := r.st.(Locker)
	if !ok {
		return func() {}, nil
	}
	unlock, err := l.LockRepo(context.Background())
	if err != nil {
		return nil, fmt.Errorf("lock tuf repository: %w", err)
	}
	if err := r.load(); err != nil {
		unlock()
		return nil, fmt.Errorf("reload tuf repository: %w", err)
	}
	return unlock, nil
}

// RootJSON returns the newest root metadata: what a device is provisioned with.
func (r *Repo) RootJSON() ([]byte, error) {
	r.mu.Lock()
	v := r.root.Signed.Version
	r.mu.Unlock()
	return r.st.ReadFile(metaPath(rootFile(v)))
}

// ValidTargetName reports whether name can be a target name: 1 to 128 characters of
// [A-Za-z0-9._-], not starting with a dot. Target names become file names on both sides.
func ValidTargetName(name string) error {
	if name == "" || len(name) > 128 || name[0] == '.' {
		return fmt.Errorf("target name %q: must be 1 to 128 characters, not starting with a dot", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("target name %q: character %q not allowed (use A-Z a-z 0-9 . _ -)", name, c)
		}
	}
	return nil
}

// NextRelease returns the release number the next package of model name should carry: one
// above the highest release of that model the repository lists.
func (r *Repo) NextRelease(model string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.highestReleaseLocked(model) + 1
}

func (r *Repo) highestReleaseLocked(model string) uint64 {
	var hi uint64
	for _, t := range r.targets.Signed.Targets {
		if t.Custom == nil {
			continue
		}
		if c, err := wire.DecodeTargetCustom(*t.Custom); err == nil && c.Name == model {
			hi = max(hi, c.Release)
		}
	}
	return hi
}

// AddTarget stores pkg as target name with custom signed into its entry, and publishes new
// targets, snapshot and timestamp metadata, signing targets with Options.TargetsKeys. Adding
// the same bytes under the same name again does nothing; different bytes under a listed name,
// or a release not above the highest listed for the model, are refused.
func (r *Repo) AddTarget(name string, pkg []byte, custom wire.TargetCustom) error {
	if err := ValidTargetName(name); err != nil {
		return fmt.Errorf("add target: %w", err)
	}
	if err := custom.Validate(); err != nil {
		return fmt.Errorf("add target %s: %w", name, err)
	}
	if len(r.opts.TargetsKeys) == 0 {
		return fmt.Errorf("add target %s: %w", name, ErrNoTargetsKey)
	}
	raw, err := json.Marshal(custom)
	if err != nil {
		return fmt.Errorf("add target %s: %w", name, err)
	}
	sum := sha256.Sum256(pkg)
	r.mu.Lock()
	defer r.mu.Unlock()
	done, err := r.beginLocked()
	if err != nil {
		return fmt.Errorf("add target %s: %w", name, err)
	}
	defer done()
	if old, ok := r.targets.Signed.Targets[name]; ok {
		if old.Length == int64(len(pkg)) && bytes.Equal(old.Hashes["sha256"], sum[:]) {
			return nil
		}
		return fmt.Errorf("add target %s: already listed with other content (sha256 %s); publish a new name", name, hex.EncodeToString(old.Hashes["sha256"]))
	}
	if hi := r.highestReleaseLocked(custom.Name); custom.Release <= hi {
		return fmt.Errorf("add target %s: release %d of %s is not above %d, already published", name, custom.Release, custom.Name, hi)
	}
	if err := r.st.WriteFile("targets/"+hex.EncodeToString(sum[:])+"."+name, pkg); err != nil {
		return fmt.Errorf("add target %s: %w", name, err)
	}
	rawMsg := json.RawMessage(raw)
	r.targets.Signed.Targets[name] = &metadata.TargetFiles{
		Length: int64(len(pkg)),
		Hashes: metadata.Hashes{"sha256": sum[:]},
		Custom: &rawMsg,
		Path:   name,
	}
	if err := r.publishLocked(r.opts.TargetsKeys, r.opts.Now().UTC()); err != nil {
		delete(r.targets.Signed.Targets, name)
		return fmt.Errorf("add target %s: %w", name, err)
	}
	return nil
}

// ResignTargets publishes the current targets again under a new version and expiry, for
// the targets key holder to run before targets expire when nothing new is published.
func (r *Repo) ResignTargets() error {
	if len(r.opts.TargetsKeys) == 0 {
		return fmt.Errorf("re-sign targets: %w", ErrNoTargetsKey)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	done, err := r.beginLocked()
	if err != nil {
		return fmt.Errorf("re-sign targets: %w", err)
	}
	defer done()
	return r.publishLocked(r.opts.TargetsKeys, r.opts.Now().UTC())
}

// publishLocked signs r.targets as a new version with keys, then a new snapshot and
// timestamp with the online keys, writing targets, snapshot and timestamp in that order.
// r.targets' entries are already updated by the caller; on error r's in-memory versions are
// restored, so the next attempt reuses them.
func (r *Repo) publishLocked(keys []ed25519.PrivateKey, now time.Time) error {
	t := r.targets
	prevVersion, prevExpires := t.Signed.Version, t.Signed.Expires
	if r.snapshot != nil { // Init publishes targets version 1
		t.Signed.Version++
	}
	t.Signed.Expires = now.Add(r.opts.TargetsLifetime)
	fail := func(err error) error {
		t.Signed.Version, t.Signed.Expires = prevVersion, prevExpires
		return err
	}
	if err := signWith(t, keys); err != nil {
		return fail(err)
	}
	if err := r.root.VerifyDelegate(metadata.TARGETS, t); err != nil {
		return fail(fmt.Errorf("%w: the keys given do not meet the targets threshold of root v%d: %v", ErrNoTargetsKey, r.root.Signed.Version, err))
	}
	data, err := t.ToBytes(false)
	if err != nil {
		return fail(err)
	}
	if err := r.st.WriteFile(metaPath(versionedFile(t.Signed.Version, metadata.TARGETS)), data); err != nil {
		return fail(err)
	}
	return r.publishSnapshotLocked(metaFileOf(t.Signed.Version, data), now)
}

// publishSnapshotLocked signs a new snapshot naming targets (nil: the current entry) and a
// new timestamp naming it.
func (r *Repo) publishSnapshotLocked(targets *metadata.MetaFiles, now time.Time) error {
	s := metadata.Snapshot(now.Add(r.opts.SnapshotLifetime))
	if r.snapshot != nil {
		s.Signed.Version = r.snapshot.Signed.Version + 1
		if targets == nil {
			targets = r.snapshot.Signed.Meta["targets.json"]
		}
	}
	s.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": targets}
	if err := signWith(s, []ed25519.PrivateKey{r.snapshotKey}); err != nil {
		return err
	}
	data, err := s.ToBytes(false)
	if err != nil {
		return err
	}
	if err := r.st.WriteFile(metaPath(versionedFile(s.Signed.Version, metadata.SNAPSHOT)), data); err != nil {
		return err
	}
	r.snapshot = s
	return r.publishTimestampLocked(metaFileOf(s.Signed.Version, data), now)
}

func (r *Repo) publishTimestampLocked(snapshot *metadata.MetaFiles, now time.Time) error {
	ts := metadata.Timestamp(now.Add(r.opts.TimestampLifetime))
	if r.timestamp != nil {
		ts.Signed.Version = r.timestamp.Signed.Version + 1
	}
	ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": snapshot}
	ts.Signed.UnrecognizedFields = map[string]any{IssuedField: now.UTC().Format(time.RFC3339)}
	if err := signWith(ts, []ed25519.PrivateKey{r.timestampKey}); err != nil {
		return err
	}
	data, err := ts.ToBytes(false)
	if err != nil {
		return err
	}
	if err := r.st.WriteFile(metaPath("timestamp.json"), data); err != nil {
		return err
	}
	r.timestamp = ts
	return nil
}

// RefreshTimestamp re-signs what must not expire with the online keys: the snapshot when
// less than half its lifetime is left, the timestamp when less than half of its lifetime is
// left (or the snapshot changed). The controller calls it periodically, more often than
// half the timestamp lifetime. It reports whether anything was re-signed.
func (r *Repo) RefreshTimestamp(now time.Time) (bool, error) {
	now = now.UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	done, err := r.beginLocked()
	if err != nil {
		return false, err
	}
	defer done()
	if r.snapshot.Signed.Expires.Sub(now) < r.opts.SnapshotLifetime/2 {
		return true, r.publishSnapshotLocked(nil, now)
	}
	if r.timestamp.Signed.Expires.Sub(now) < r.opts.TimestampLifetime/2 {
		return true, r.publishTimestampLocked(r.timestamp.Signed.Meta["snapshot.json"], now)
	}
	return false, nil
}

// DefaultRefreshInterval is how often RunRefresher checks the online roles: well under half
// the default timestamp lifetime, so a missed tick or two never lets devices see it expire.
const DefaultRefreshInterval = time.Hour

// RunRefresher calls RefreshTimestamp now and then every interval (DefaultRefreshInterval
// if zero) until ctx ends, logging each renewal and failure. A failure is retried at the next
// tick rather than returned: devices still hold a timestamp valid for hours, and the
// controller must keep serving. It returns ctx's error.
func (r *Repo) RunRefresher(ctx context.Context, interval time.Duration, log *slog.Logger) error {
	if interval <= 0 {
		interval = DefaultRefreshInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		renewed, err := r.RefreshTimestamp(r.opts.Now())
		switch {
		case err != nil:
			log.Error("tuf: re-sign online roles", "err", err)
		case renewed:
			st := r.Status()
			log.Info("tuf: re-signed online roles", "snapshot", st.Roles[2].Version, "timestamp", st.Roles[3].Version, "timestamp_expires", st.Roles[3].Expires)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Meta returns a metadata file by the name a TUF client asks for: "timestamp.json",
// "N.root.json", "N.snapshot.json" or "N.targets.json". Other names get ErrNotFound.
func (r *Repo) Meta(name string) ([]byte, error) {
	if !validMetaName(name) {
		return nil, fmt.Errorf("metadata %q: %w", name, ErrNotFound)
	}
	data, err := r.st.ReadFile(metaPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("metadata %q: %w", name, ErrNotFound)
	}
	return data, err
}

func validMetaName(name string) bool {
	if name == "timestamp.json" {
		return true
	}
	v, role, ok := strings.Cut(name, ".")
	if !ok || v == "" || len(v) > 19 || strings.TrimLeft(v, "0123456789") != "" || v[0] == '0' {
		return false
	}
	return role == "root.json" || role == "snapshot.json" || role == "targets.json"
}

// Target opens a target by its consistent-snapshot path "{sha256 hex}.{name}". The reader
// opens the file for each ReadAt, so nothing needs closing; targets never change once written.
func (r *Repo) Target(path string) (io.ReaderAt, int64, error) {
	digest, name, ok := strings.Cut(path, ".")
	if !ok || len(digest) != 64 || strings.Trim(digest, "0123456789abcdef") != "" || ValidTargetName(name) != nil {
		return nil, 0, fmt.Errorf("target %q: %w", path, ErrNotFound)
	}
	name = "targets/" + path
	size, err := r.st.Size(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("target %q: %w", path, ErrNotFound)
	}
	if err != nil {
		return nil, 0, err
	}
	return storedReaderAt{r.st, name}, size, nil
}

// Open serves the fetch paths devices ask for (wire.FetchMetaPrefix or
// wire.FetchTargetPrefix followed by a name), so a Repo can be the block server's source.
func (r *Repo) Open(path string) (io.ReaderAt, int64, error) {
	if name, ok := strings.CutPrefix(path, wire.FetchMetaPrefix); ok {
		data, err := r.Meta(name)
		if err != nil {
			return nil, 0, err
		}
		return bytes.NewReader(data), int64(len(data)), nil
	}
	if name, ok := strings.CutPrefix(path, wire.FetchTargetPrefix); ok {
		return r.Target(name)
	}
	return nil, 0, fmt.Errorf("fetch path %q: %w", path, ErrNotFound)
}

// storedReaderAt reads a stored file for each ReadAt, so nothing needs closing.
type storedReaderAt struct {
	st   Storage
	name string
}

func (s storedReaderAt) ReadAt(b []byte, off int64) (int, error) { return s.st.ReadAt(s.name, b, off) }

// Status summarises the repository for `outpost keys show`.
type Status struct {
	Roles   []RoleStatus
	Targets []TargetStatus
}

// RoleStatus is one top-level role's state.
type RoleStatus struct {
	Name      string
	Version   int64
	Expires   time.Time
	Threshold int
	KeyIDs    []string
}

// TargetStatus is one listed target.
type TargetStatus struct {
	Name   string
	Length int64
	SHA256 string
	Custom wire.TargetCustom
}

// Status returns the current versions, expiries, keys and targets.
func (r *Repo) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	role := func(name string, version int64, expires time.Time) RoleStatus {
		rl := r.root.Signed.Roles[name]
		return RoleStatus{Name: name, Version: version, Expires: expires, Threshold: rl.Threshold, KeyIDs: slices.Clone(rl.KeyIDs)}
	}
	st := Status{Roles: []RoleStatus{
		role(metadata.ROOT, r.root.Signed.Version, r.root.Signed.Expires),
		role(metadata.TARGETS, r.targets.Signed.Version, r.targets.Signed.Expires),
		role(metadata.SNAPSHOT, r.snapshot.Signed.Version, r.snapshot.Signed.Expires),
		role(metadata.TIMESTAMP, r.timestamp.Signed.Version, r.timestamp.Signed.Expires),
	}}
	for name, t := range r.targets.Signed.Targets {
		ts := TargetStatus{Name: name, Length: t.Length, SHA256: hex.EncodeToString(t.Hashes["sha256"])}
		if t.Custom != nil {
			ts.Custom, _ = wire.DecodeTargetCustom(*t.Custom)
		}
		st.Targets = append(st.Targets, ts)
	}
	slices.SortFunc(st.Targets, func(a, b TargetStatus) int { return strings.Compare(a.Name, b.Name) })
	return st
}

// TargetsPublicKeys returns the targets keys the current root lists.
func (r *Repo) TargetsPublicKeys() ([]ed25519.PublicKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return roleKeys(r.root, metadata.TARGETS)
}

// RootUpdate describes the next root version: the keys a role has after the change. A nil
// key list leaves that role as it is.
type RootUpdate struct {
	RootKeys         []ed25519.PublicKey
	RootThreshold    int // 0: keep
	TargetsKeys      []ed25519.PublicKey
	TargetsThreshold int // 0: keep
	// RotateOnline replaces the snapshot and timestamp keys with new ones (after the
	// controller's disk may have leaked them).
	RotateOnline bool
}

// UpdateRoot publishes root version N+1 with the role keys u describes, signed by signers:
// they must meet the threshold of the current root's root keys and of the new root's root
// keys (TUF 5.3.4), so devices holding root N accept N+1. When the targets keys change,
// signers must also hold enough of the new targets keys: targets are re-signed with them in
// the same step, so devices are never left with targets the new root does not trust.
// Snapshot and timestamp are always re-published (with new keys when RotateOnline), which
// also makes devices drop a timestamp or snapshot signed by revoked keys.
func (r *Repo) UpdateRoot(u RootUpdate, signers []ed25519.PrivateKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	done, err := r.beginLocked()
	if err != nil {
		return fmt.Errorf("update root: %w", err)
	}
	defer done()
	now := r.opts.Now().UTC()
	old := r.root
	data, err := old.ToBytes(false)
	if err != nil {
		return err
	}
	next, err := metadata.Root().FromBytes(data)
	if err != nil {
		return err
	}
	next.Signed.Version++
	next.Signed.Expires = now.Add(r.opts.RootLifetime)

	roles := map[string][]ed25519.PublicKey{}
	for _, name := range metadata.TOP_LEVEL_ROLE_NAMES {
		if roles[name], err = roleKeys(old, name); err != nil {
			return err
		}
	}
	thresholds := map[string]int{}
	for _, name := range metadata.TOP_LEVEL_ROLE_NAMES {
		thresholds[name] = old.Signed.Roles[name].Threshold
	}
	if u.RootKeys != nil {
		roles[metadata.ROOT] = u.RootKeys
	}
	if u.RootThreshold > 0 {
		thresholds[metadata.ROOT] = u.RootThreshold
	}
	if u.TargetsKeys != nil {
		roles[metadata.TARGETS] = u.TargetsKeys
	}
	if u.TargetsThreshold > 0 {
		thresholds[metadata.TARGETS] = u.TargetsThreshold
	}
	var newSnapshotKey, newTimestampKey ed25519.PrivateKey
	if u.RotateOnline {
		if _, newSnapshotKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return err
		}
		if _, newTimestampKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return err
		}
		roles[metadata.SNAPSHOT] = []ed25519.PublicKey{newSnapshotKey.Public().(ed25519.PublicKey)}
		roles[metadata.TIMESTAMP] = []ed25519.PublicKey{newTimestampKey.Public().(ed25519.PublicKey)}
	}
	if err := setRoles(&next.Signed, roles, thresholds); err != nil {
		return err
	}

	// Sign with the given keys that belong to the old or the new root role; a key in
	// neither is a mistake worth naming.
	var rootSigners, targetsSigners []ed25519.PrivateKey
	oldRoot, newRoot, newTargets := keySet(old, metadata.ROOT), keySet(next, metadata.ROOT), keySet(next, metadata.TARGETS)
	for _, k := range signers {
		id, err := keyID(k.Public().(ed25519.PublicKey))
		if err != nil {
			return err
		}
		inRoot := oldRoot[id] || newRoot[id]
		if inRoot {
			rootSigners = append(rootSigners, k)
		}
		if newTargets[id] {
			targetsSigners = append(targetsSigners, k)
		}
		if !inRoot && !newTargets[id] {
			return fmt.Errorf("update root: key %s is neither a root key of v%d or v%d nor a targets key of v%d", id, old.Signed.Version, next.Signed.Version, next.Signed.Version)
		}
	}
	if err := signWith(next, rootSigners); err != nil {
		return err
	}
	if err := old.VerifyDelegate(metadata.ROOT, next); err != nil {
		return fmt.Errorf("update root: v%d needs %d signatures from the root keys of v%d: %w", next.Signed.Version, old.Signed.Roles[metadata.ROOT].Threshold, old.Signed.Version, err)
	}
	if err := next.VerifyDelegate(metadata.ROOT, next); err != nil {
		return fmt.Errorf("update root: v%d needs %d signatures from its own root keys: %w", next.Signed.Version, next.Signed.Roles[metadata.ROOT].Threshold, err)
	}
	targetsChanged := u.TargetsKeys != nil || u.TargetsThreshold > 0
	if targetsChanged {
		// Check the new targets keys are at hand before anything is written.
		probe := *r.targets
		probe.Signatures = nil
		if err := signWith(&probe, targetsSigners); err != nil {
			return err
		}
		if err := next.VerifyDelegate(metadata.TARGETS, &probe); err != nil {
			return fmt.Errorf("update root: the targets keys change, so targets must be re-signed: give %d of the new targets keys: %w", next.Signed.Roles[metadata.TARGETS].Threshold, err)
		}
	}

	rootData, err := next.ToBytes(false)
	if err != nil {
		return err
	}
	if u.RotateOnline {
		// Keys first: a crash after this leaves new keys that root v(N) does not list yet,
		// and the next UpdateRoot call rotates again. The old keys are overwritten.
		if err := writeOnlineKey(r.st, metadata.SNAPSHOT, newSnapshotKey); err != nil {
			return err
		}
		if err := writeOnlineKey(r.st, metadata.TIMESTAMP, newTimestampKey); err != nil {
			return err
		}
		r.snapshotKey, r.timestampKey = newSnapshotKey, newTimestampKey
	}
	if err := r.st.WriteFile(metaPath(rootFile(next.Signed.Version)), rootData); err != nil {
		return err
	}
	r.root = next
	if targetsChanged {
		return r.publishLocked(targetsSigners, now)
	}
	return r.publishSnapshotLocked(nil, now)
}

// helpers

func rootFile(v int64) string { return versionedFile(v, metadata.ROOT) }

func versionedFile(v int64, role string) string {
	return strconv.FormatInt(v, 10) + "." + role + ".json"
}

func metaFileOf(version int64, data []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(data)
	m := metadata.MetaFile(version)
	m.Length = int64(len(data))
	m.Hashes = metadata.Hashes{"sha256": sum[:]}
	return m
}

func publicKeys(keys []ed25519.PrivateKey) []ed25519.PublicKey {
	out := make([]ed25519.PublicKey, len(keys))
	for i, k := range keys {
		out[i] = k.Public().(ed25519.PublicKey)
	}
	return out
}

func keyID(pub ed25519.PublicKey) (string, error) {
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return "", err
	}
	return k.ID()
}

// KeyID returns the TUF key id of pub (the hex sha256 of its canonical JSON form).
func KeyID(pub ed25519.PublicKey) (string, error) { return keyID(pub) }

// setRoles replaces the roles and the key table of root with roles, so keys no role lists
// any more (revoked ones) disappear from the table.
func setRoles(root *metadata.RootType, roles map[string][]ed25519.PublicKey, thresholds map[string]int) error {
	root.Keys = map[string]*metadata.Key{}
	for _, name := range metadata.TOP_LEVEL_ROLE_NAMES {
		th := thresholds[name]
		if th <= 0 {
			th = 1
		}
		role := &metadata.Role{KeyIDs: []string{}, Threshold: th}
		for _, pub := range roles[name] {
			k, err := metadata.KeyFromPublicKey(pub)
			if err != nil {
				return err
			}
			id, err := k.ID()
			if err != nil {
				return err
			}
			if !slices.Contains(role.KeyIDs, id) {
				role.KeyIDs = append(role.KeyIDs, id)
			}
			root.Keys[id] = k
		}
		if len(role.KeyIDs) < th {
			return fmt.Errorf("role %s: %d keys, threshold %d", name, len(role.KeyIDs), th)
		}
		root.Roles[name] = role
	}
	return nil
}

func roleKeys(root *metadata.Metadata[metadata.RootType], role string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, id := range root.Signed.Roles[role].KeyIDs {
		pub, err := root.Signed.Keys[id].ToPublicKey()
		if err != nil {
			return nil, err
		}
		ed, ok := pub.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("role %s: key %s is not ed25519", role, id)
		}
		out = append(out, ed)
	}
	return out, nil
}

func keySet(root *metadata.Metadata[metadata.RootType], role string) map[string]bool {
	s := map[string]bool{}
	for _, id := range root.Signed.Roles[role].KeyIDs {
		s[id] = true
	}
	return s
}

type signable interface {
	ClearSignatures()
	Sign(signature.Signer) (*metadata.Signature, error)
}

func signWith(m signable, keys []ed25519.PrivateKey) error {
	m.ClearSignatures()
	for _, k := range keys {
		s, err := signature.LoadED25519Signer(k)
		if err != nil {
			return err
		}
		if _, err := m.Sign(s); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repo) writeMeta(name string, m interface{ ToBytes(bool) ([]byte, error) }) error {
	data, err := m.ToBytes(false)
	if err != nil {
		return err
	}
	return r.st.WriteFile(metaPath(name), data)
}

func onlineKeyPath(role string) string { return "keys/" + role + ".key" }

func newOnlineKey(st Storage, role string) (ed25519.PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return k, writeOnlineKey(st, role, k)
}

func writeOnlineKey(st Storage, role string, k ed25519.PrivateKey) error {
	data, err := bundle.MarshalPrivateKey(k)
	if err != nil {
		return err
	}
	return st.WriteFile(onlineKeyPath(role), data)
}

func readOnlineKey(st Storage, role string) (ed25519.PrivateKey, error) {
	data, err := st.ReadFile(onlineKeyPath(role))
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", role, err)
	}
	k, err := bundle.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", role, err)
	}
	return k, nil
}
