package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/blobserve"
	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/fleet/tufrepo"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// openTrust opens the fleet's TUF repository (nil, nil when there is none: a fleet without
// trust serves no updates). cfg.TargetsKeyFiles are the targets keys to publish with; without
// them the controller re-signs the online roles but refuses to publish packages.
//
// With the bbolt store the repository is DATA-DIR/tuf, where `outpost keys init` created it.
// With the PostgreSQL store it is the store's (pgstore.TUFFiles), so every replica publishes
// to and serves from one copy: a repository in DATA-DIR/tuf is copied into an empty store
// once, by the first replica started with it, and must be the same fleet trust afterwards.
func openTrust(cfg serveConfig, store fleet.Store, log *slog.Logger) (*tufrepo.Repo, error) {
	dataDir := cfg.DataDir
	_, err := os.Stat(filepath.Join(tufDir(dataDir), "meta", "1.root.json"))
	local := err == nil
	ps, shared := store.(*pgstore.Store)
	if !shared && !local {
		if len(cfg.TargetsKeyFiles) > 0 {
			return nil, fmt.Errorf("--targets-key given but %s has no fleet trust: run `outpost keys init` first", dataDir)
		}
		return nil, nil
	}
	keys, err := readPrivateKeys(cfg.TargetsKeyFiles, "targets")
	if err != nil {
		return nil, err
	}
	opts := tufrepo.Options{TargetsKeys: keys}
	if !shared {
		return tufrepo.Open(tufDir(dataDir), opts)
	}
	files := ps.TUFFiles()
	if local {
		src := tufrepo.DirStorage(tufDir(dataDir))
		copied, err := tufrepo.Import(files, src)
		if err != nil {
			return nil, err
		}
		if copied {
			log.Info("tuf: copied the fleet trust from the data directory into the store", "dir", tufDir(dataDir))
		} else if err := sameTrust(files, src); err != nil {
			return nil, fmt.Errorf("%s: %w", tufDir(dataDir), err)
		}
	}
	if _, err := files.ReadFile("meta/timestamp.json"); errors.Is(err, fs.ErrNotExist) {
		if len(keys) > 0 {
			return nil, fmt.Errorf("--targets-key given but neither the store nor %s has fleet trust: run `outpost keys init --data-dir %s` and start one replica with that data directory", dataDir, dataDir)
		}
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return tufrepo.OpenStorage(files, opts)
}

// sameTrust refuses a data directory whose repository is another fleet's than the store's:
// serving one and publishing to the other would leave devices unable to verify either.
func sameTrust(store, dir tufrepo.Storage) error {
	a, err := store.ReadFile("meta/1.root.json")
	if err != nil {
		return err
	}
	b, err := dir.ReadFile("meta/1.root.json")
	if err != nil {
		return err
	}
	if !bytes.Equal(a, b) {
		return errors.New("holds another fleet trust (root v1) than the store; the store's is used by every replica: remove this tuf directory or use another store")
	}
	return nil
}

// runTrust keeps the repository's snapshot and timestamp re-signed until ctx ends.
func runTrust(ctx context.Context, repo *tufrepo.Repo, log *slog.Logger) error {
	err := repo.RunRefresher(ctx, 0, log.With("component", "tuf"))
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// tufPublisher publishes the registry's accepted packages as targets of the fleet's TUF
// repository (the registry declares its own TargetCustom; the fields are the same).
type tufPublisher struct{ repo *tufrepo.Repo }

func (p tufPublisher) AddTarget(name string, pkg []byte, custom registry.TargetCustom) error {
	return p.repo.AddTarget(name, pkg, wire.TargetCustom(custom))
}

// newBlobServer makes the block server that answers devices' fetch requests from repo's
// metadata and targets, connecting to the broker as the controller does.
func newBlobServer(repo *tufrepo.Repo, copts fleet.Options, shareGroup string, log *slog.Logger) (*blobserve.Server, error) {
	u, err := fleet.ParseBrokerURL(copts.BrokerURL)
	if err != nil {
		return nil, err
	}
	user, pass := copts.Username, copts.Password
	if user == "" && u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	u.User = nil
	return blobserve.New(blobserve.Options{
		Source: repo, BrokerURL: u.String(), Username: user, Password: pass, ClientID: blobClientID(copts), ShareGroup: shareGroup,
		Logger: log.With("component", "blobserve"),
	})
}

// runBlobs answers fetch requests until ctx ends.
func runBlobs(ctx context.Context, srv *blobserve.Server) error {
	err := srv.Run(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}
