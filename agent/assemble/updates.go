package assemble

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/outpost-ml/outpost/agent/fetch"
	"github.com/outpost-ml/outpost/agent/trust"
	"github.com/outpost-ml/outpost/agent/update"
)

// TrustDir is the directory inside Config.DataDir where the TUF client caches verified
// metadata, the committed releases and its clock floor.
const TrustDir = "trust"

// DownloadDir is the directory inside Config.DataDir for partial and completed downloads.
const DownloadDir = "downloads"

// DefaultTrustRoot is where a device provisioned for updates finds its pinned TUF root:
// trust/root.json next to (not inside) its data directory, so that provisioning (and later
// the firmware bundle) writes it without touching the agent's state.
func DefaultTrustRoot(dataDir string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(dataDir)), TrustDir, "root.json")
}

// updateSeams builds the real Trust (agent/trust) and Downloader (agent/fetch over link) for
// cfg when a trust root is pinned. It returns nils, and the device takes no updates, when
// cfg.Update.TrustRoot is empty and DefaultTrustRoot has no file; a named root that cannot
// be read is an error.
func updateSeams(cfg Config, link fetch.Link, log *slog.Logger) (update.Trust, update.Downloader, string, error) {
	path := cfg.Update.TrustRoot
	if path == "" {
		path = DefaultTrustRoot(cfg.DataDir)
	}
	root, err := readFileMax(path, trust.MaxRootBytes)
	switch {
	case cfg.Update.TrustRoot == "" && errors.Is(err, fs.ErrNotExist):
		return nil, nil, "", nil
	case err != nil:
		return nil, nil, "", fmt.Errorf("trust root: %w", err)
	}
	f, err := fetch.New(fetch.Options{
		Dir:    filepath.Join(cfg.DataDir, DownloadDir),
		Link:   link,
		Logger: log.With("component", "fetch"),
	})
	if err != nil {
		return nil, nil, "", err
	}
	c, err := trust.New(filepath.Join(cfg.DataDir, TrustDir), root, f, time.Now)
	if err != nil {
		return nil, nil, "", err
	}
	keep := cfg.Update.Keep
	if keep <= 0 {
		keep = update.DefaultKeep
	}
	return trustSeam{c}, &downloadSeam{f: f, keep: keep, log: log}, path, nil
}

// trustSeam adapts *trust.Client to update.Trust (the two packages declare the same Target
// shape each for itself).
type trustSeam struct{ c *trust.Client }

func (s trustSeam) Refresh(ctx context.Context) error { return s.c.Refresh(ctx) }

func (s trustSeam) Lookup(name string) (update.Target, error) {
	t, err := s.c.Lookup(name)
	if err != nil {
		return update.Target{}, err
	}
	return update.Target{Name: t.Name, Path: t.Path, Length: t.Length, SHA256: t.SHA256, Custom: update.TargetCustom(t.Custom)}, nil
}

func (s trustSeam) VerifyFile(t update.Target, path string) error {
	return trust.VerifyFile(trust.Target{Name: t.Name, Path: t.Path, Length: t.Length, SHA256: t.SHA256}, path)
}

// downloadSeam adapts *fetch.Fetcher to update.Downloader and keeps its directory small: the
// model store copies what it keeps, so after each download only the newest keep completed
// files (and one partial) stay.
type downloadSeam struct {
	f    *fetch.Fetcher
	keep int
	log  *slog.Logger
}

func (s *downloadSeam) Download(ctx context.Context, w update.Want, progress func(held, total int64)) (string, error) {
	path, err := s.f.Download(ctx, fetch.Want(w), progress)
	if err != nil {
		return "", err
	}
	if err := s.f.Prune(s.keep); err != nil {
		s.log.Warn("prune downloads", "err", err) // costs disk only
	}
	return path, nil
}
