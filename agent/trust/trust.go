// Package trust is the device's TUF client (The Update Framework, through go-tuf's updater):
// it decides which model packages the fleet's key holders have signed. The root of trust is
// pinned at provisioning (a root.json the device is given, later by the firmware bundle);
// everything else (newer roots, timestamp, snapshot, targets) is fetched through a
// MetaFetcher, which the agent implements over MQTT, and verified by go-tuf before this
// package reads a byte of it. The verified metadata is cached in the trust directory, so
// version counters survive reboots and older metadata is never accepted again.
//
// On top of TUF the package keeps two things of its own in the trust directory:
//
//   - releases.json: the highest release committed per model name (anti-rollback of
//     packages, beyond TUF's anti-rollback of metadata), see CheckRelease and RecordRelease;
//   - clock.json: a floor for the current time, for devices without a real-time clock: the
//     clock never goes back below what the device has already lived through, see Now.
package trust

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/atomicfile"
)

// MetaFetcher fetches one TUF metadata file by the name TUF gives it ("timestamp.json",
// "3.root.json", "7.snapshot.json", "7.targets.json"). It must stop and fail as soon as more
// than maxLen bytes would arrive (endless-data attack), and return an error wrapping
// fs.ErrNotExist when the controller says there is no such file (how the client learns it
// has the newest root).
type MetaFetcher interface {
	FetchMeta(ctx context.Context, name string, maxLen int64) ([]byte, error)
}

// Target is a model package as signed targets metadata describes it.
type Target struct {
	Name   string // TUF target name, e.g. "vibration-anomaly-1.1.0.opkg"
	Path   string // consistent-snapshot fetch name: "{sha256 hex}.{name}"
	Length int64  // bytes, signed
	SHA256 string // lower-case hex, signed
	Custom wire.TargetCustom
}

// Length limits for metadata whose length nothing signed states: root (each version) and
// timestamp. Snapshot and targets lengths come from signed metadata; the larger limit below
// applies only if a repository leaves them out.
const (
	MaxRootBytes      = 64 << 10
	MaxTimestampBytes = 16 << 10
	MaxRoleBytes      = 1 << 20
)

// Errors callers branch on.
var (
	ErrNotRefreshed = errors.New("trust: no verified metadata (refresh first)")
	ErrUnknown      = errors.New("trust: target not signed")
	ErrRollback     = errors.New("trust: release rollback")
	ErrMismatch     = errors.New("trust: file does not match signed metadata")
	// ErrExpired is wrapped by Refresh when the newest metadata the controller serves has
	// expired by the device's clock (Now): the repository is frozen, or the controller has
	// not re-signed its timestamp in time.
	ErrExpired = errors.New("trust: metadata expired (frozen repository?)")
)

// Client is the device's view of the fleet's signed metadata. Methods are safe for
// concurrent use; Refresh calls are serialised.
type Client struct {
	dir   string
	root  []byte // pinned at provisioning
	fetch MetaFetcher
	now   func() time.Time

	mu        sync.Mutex                       // guards the fields below
	targets   map[string]*metadata.TargetFiles // from the last successful Refresh; nil otherwise
	bootFloor time.Time                        // the persisted floor when New ran
	started   time.Time                        // now() when New ran
	floor     time.Time                        // the floor as persisted now
	cap       time.Time                        // the floor never passes this, see advanceClockLocked
	releases  map[string]uint64                // highest committed release per model name
}

// New opens the trust directory dir (created if missing) with the pinned root metadata.
// now is the device clock (time.Now in production); it starts no goroutines and does no I/O
// beyond dir.
func New(dir string, root []byte, f MetaFetcher, now func() time.Time) (*Client, error) {
	if len(root) > MaxRootBytes {
		return nil, fmt.Errorf("trust: pinned root is %d bytes (limit %d)", len(root), MaxRootBytes)
	}
	if _, err := parseRoot(root); err != nil {
		return nil, fmt.Errorf("trust: pinned root: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(filepath.Join(dir, "meta"), 0o700); err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	c := &Client{dir: dir, root: root, fetch: f, now: now, releases: map[string]uint64{}}
	if err := readJSON(filepath.Join(dir, "releases.json"), &c.releases); err != nil {
		return nil, err
	}
	var clock clockState
	if err := readJSON(filepath.Join(dir, "clock.json"), &clock); err != nil {
		// Only freeze detection after a power cut leans on the floor; stopping every
		// update over an unreadable one would be worse. Start without it.
		clock = clockState{}
	}
	c.bootFloor, c.floor, c.cap, c.started = clock.Floor, clock.Floor, clock.Cap, now()
	return c, nil
}

// parseRoot decodes root metadata and checks it is signed by its own root keys.
func parseRoot(data []byte) (*metadata.Metadata[metadata.RootType], error) {
	r, err := metadata.Root().FromBytes(data)
	if err != nil {
		return nil, err
	}
	if err := r.VerifyDelegate(metadata.ROOT, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Now returns the time expiry is checked against: the device clock, but never earlier than
// the floor persisted by earlier runs plus the time elapsed since New. On a device without a
// real-time clock, whose clock restarts at an old date after a power cut, this keeps the
// time it already lived through; time spent switched off is lost. See advanceClockLocked for
// how the floor is kept from running ahead of real time.
func (c *Client) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *Client) nowLocked() time.Time {
	n := c.now()
	if est := c.bootFloor.Add(n.Sub(c.started)); !c.bootFloor.IsZero() && est.After(n) {
		return est
	}
	return n
}

// clockState is clock.json.
type clockState struct {
	Floor time.Time `json:"floor"`
	Cap   time.Time `json:"cap"`
}

// advanceClockLocked raises the persisted floor to Now, but never past c.cap: the time the
// newest accepted timestamp was signed (tufrepo.IssuedField), which a correct clock has
// passed. So a clock that once reads years ahead (a bad RTC battery, a mistyped date) does
// not carry that date into the floor, and the floor never runs ahead of real time. Before
// the first successful refresh there is no cap and nothing is persisted. The floor only
// takes effect at the next New: within one run, Now counts from the floor it started with.
func (c *Client) advanceClockLocked() error {
	if c.cap.IsZero() {
		return nil
	}
	n := c.nowLocked()
	if n.After(c.cap) {
		n = c.cap
	}
	if n.After(c.floor) {
		c.floor = n
	}
	data, err := json.Marshal(clockState{Floor: c.floor.UTC(), Cap: c.cap.UTC()})
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.dir, "clock.json"), data, 0o600)
}

// Refresh runs TUF's client workflow (spec 5.3 to 5.6): newer roots one version at a time,
// then timestamp, snapshot and targets, each verified against the one before and against
// the version counters cached from earlier refreshes. On any failure the client forgets its
// targets, so Lookup fails until a Refresh succeeds: a device never installs from metadata
// it could not confirm as current. Errors are one line.
func (c *Client) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.targets = nil
	if err := c.advanceClockLocked(); err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	c.dropCorruptCacheLocked()
	root := c.trustedRootLocked()
	cfg, err := config.New(fetchBase, root)
	if err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	metaDir := filepath.Join(c.dir, "meta")
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = metaDir, metaDir
	cfg.RemoteTargetsURL = fetchBase // targets are fetched by the caller, not by go-tuf
	cfg.RootMaxLength, cfg.TimestampMaxLength = MaxRootBytes, MaxTimestampBytes
	cfg.SnapshotMaxLength, cfg.TargetsMaxLength = MaxRoleBytes, MaxRoleBytes
	cfg.MaxDelegations = 0 // Outpost signs every target with the top-level targets role
	fa := &fetchAdapter{ctx: ctx, f: c.fetch}
	cfg.Fetcher = fa
	up, err := updater.New(cfg)
	if err != nil {
		return fmt.Errorf("trust: load trusted root: %w", err)
	}
	up.UnsafeSetRefTime(c.nowLocked()) // not only for tests: it is how the clock floor reaches go-tuf
	if err := up.Refresh(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("trust: refresh: %w", ctx.Err())
		}
		// go-tuf verifies each file as soon as it arrives, so the last one fetched is the
		// one its error is about; naming it makes the one-line reason useful.
		if errors.Is(err, &metadata.ErrExpiredMetadata{}) {
			return fmt.Errorf("%w: %s: %w", ErrExpired, fa.last, err)
		}
		return fmt.Errorf("trust: refresh: %s: %w", fa.last, err)
	}
	c.targets = up.GetTopLevelTargets()
	if ts := up.GetTrustedMetadataSet().Timestamp; ts != nil {
		// Signed, so as trustworthy as the timestamp key; used only as a cap.
		if v, ok := ts.Signed.UnrecognizedFields[issuedField].(string); ok {
			if issued, err := time.Parse(time.RFC3339, v); err == nil && issued.After(c.cap) {
				c.cap = issued
			}
		}
	}
	if err := c.advanceClockLocked(); err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	// go-tuf renames its cache files into place without fsync; make them durable so a power
	// cut cannot leave an empty file behind (dropCorruptCacheLocked is the second line).
	if err := syncDir(metaDir); err != nil {
		return fmt.Errorf("trust: sync metadata cache: %w", err)
	}
	return nil
}

// dropCorruptCacheLocked deletes cached timestamp, snapshot or targets metadata that no
// longer parses (torn by a power cut on a file system that lost the unsynced rename): go-tuf
// would fail on it forever, stopping every update. Metadata that parses but does not verify
// is left to go-tuf, which ignores it. A corrupt cached root needs nothing: the pinned root
// is used instead and go-tuf rewrites the cache.
func (c *Client) dropCorruptCacheLocked() {
	dir := filepath.Join(c.dir, "meta")
	parses := map[string]func([]byte) error{
		metadata.TIMESTAMP: func(b []byte) error { _, err := metadata.Timestamp().FromBytes(b); return err },
		metadata.SNAPSHOT:  func(b []byte) error { _, err := metadata.Snapshot().FromBytes(b); return err },
		metadata.TARGETS:   func(b []byte) error { _, err := metadata.Targets().FromBytes(b); return err },
	}
	for role, parse := range parses {
		p := filepath.Join(dir, role+".json")
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if parse(data) != nil {
			os.Remove(p)
		}
	}
}

// syncDir fsyncs every regular file in dir and then dir itself.
func syncDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	d.Sync() // some file systems refuse fsync on a directory; the files are synced
	return nil
}

// trustedRootLocked picks the root to start from: the cached one, which go-tuf verified when
// it stored it, unless the pinned root is newer (a firmware update may bring one).
func (c *Client) trustedRootLocked() []byte {
	cached, err := os.ReadFile(filepath.Join(c.dir, "meta", "root.json"))
	if err != nil || len(cached) > MaxRootBytes {
		return c.root
	}
	cr, err := metadata.Root().FromBytes(cached)
	if err != nil {
		return c.root
	}
	pr, err := metadata.Root().FromBytes(c.root)
	if err != nil || cr.Signed.Version >= pr.Signed.Version {
		return cached
	}
	return c.root
}

// Lookup returns the signed description of target name from the last successful Refresh.
func (c *Client) Lookup(name string) (Target, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.targets == nil {
		return Target{}, ErrNotRefreshed
	}
	tf, ok := c.targets[name]
	if !ok {
		return Target{}, fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	sum := tf.Hashes["sha256"]
	if len(sum) != sha256.Size {
		return Target{}, fmt.Errorf("trust: target %q has no sha256 in signed metadata", name)
	}
	if tf.Length <= 0 {
		return Target{}, fmt.Errorf("trust: target %q has signed length %d", name, tf.Length)
	}
	if tf.Custom == nil {
		return Target{}, fmt.Errorf("trust: target %q: %w: missing", name, wire.ErrTargetCustom)
	}
	custom, err := wire.DecodeTargetCustom(*tf.Custom)
	if err != nil {
		return Target{}, fmt.Errorf("trust: target %q: %w", name, err)
	}
	digest := hex.EncodeToString(sum)
	return Target{Name: name, Path: digest + "." + name, Length: tf.Length, SHA256: digest, Custom: custom}, nil
}

// VerifyFile checks that the file at path is exactly t: its signed length (checked before
// reading, and never read past) and its signed sha256, streamed.
func VerifyFile(t Target, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify %s: %w", t.Name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("verify %s: %w", t.Name, err)
	}
	if fi.Size() != t.Length {
		return fmt.Errorf("%w: %s is %d bytes, signed length %d", ErrMismatch, t.Name, fi.Size(), t.Length)
	}
	want, err := hex.DecodeString(t.SHA256)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("verify %s: bad signed digest %q", t.Name, t.SHA256)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, t.Length+1))
	if err != nil {
		return fmt.Errorf("verify %s: %w", t.Name, err)
	}
	if n != t.Length {
		return fmt.Errorf("%w: %s changed while read (%d bytes, signed length %d)", ErrMismatch, t.Name, n, t.Length)
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), want) != 1 {
		return fmt.Errorf("%w: %s sha256 %x, signed %s", ErrMismatch, t.Name, h.Sum(nil), t.SHA256)
	}
	return nil
}

// VerifyFile is the package function as a method, so *Client satisfies a seam with all three.
func (c *Client) VerifyFile(t Target, path string) error { return VerifyFile(t, path) }

// CheckRelease refuses t when its release is below the highest committed for its model
// name. The same release again is allowed (reinstalling what was committed).
func (c *Client) CheckRelease(t Target) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hi := c.releases[t.Custom.Name]; t.Custom.Release < hi {
		return fmt.Errorf("%w: %s release %d (%s) is below release %d, already committed", ErrRollback, t.Custom.Name, t.Custom.Release, t.Custom.Version, hi)
	}
	return nil
}

// RecordRelease persists t's release as the highest committed for its model name (never
// lowering it). The update state machine calls it when it commits t.
func (c *Client) RecordRelease(t Target) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Custom.Release <= c.releases[t.Custom.Name] {
		return nil
	}
	next := make(map[string]uint64, len(c.releases)+1)
	for k, v := range c.releases {
		next[k] = v
	}
	next[t.Custom.Name] = t.Custom.Release
	data, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(c.dir, "releases.json"), data, 0o600); err != nil {
		return fmt.Errorf("trust: record release: %w", err)
	}
	c.releases = next
	return nil
}

// readJSON decodes a small state file of the trust directory; a missing file leaves v as is.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("trust: %s: %w", filepath.Base(path), err)
	}
	return nil
}

// issuedField is tufrepo.IssuedField (the agent links no controller code).
const issuedField = "x-outpost-issued"

// fetchBase is the URL prefix go-tuf puts before metadata names; the adapter strips it.
const fetchBase = "outpost://controller/meta/"

// fetchAdapter turns go-tuf's URL-based Fetcher into MetaFetcher calls.
type fetchAdapter struct {
	ctx  context.Context
	f    MetaFetcher
	last string // name of the last file asked for
}

func (a *fetchAdapter) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	name, ok := strings.CutPrefix(url, fetchBase)
	if !ok || name == "" || strings.ContainsAny(name, "/\\") {
		return nil, &metadata.ErrDownload{Msg: fmt.Sprintf("unexpected metadata path %q", url)}
	}
	a.last = name
	data, err := a.f.FetchMeta(a.ctx, name, maxLength)
	if errors.Is(err, fs.ErrNotExist) {
		// go-tuf stops walking root versions on a 404 and on nothing else.
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: name}
	}
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: fmt.Sprintf("fetch %s: %v", name, err)}
	}
	if int64(len(data)) > maxLength {
		// A fetcher must stop by itself; this is the backstop.
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: %d bytes, more than the %d allowed", name, len(data), maxLength)}
	}
	return data, nil
}
