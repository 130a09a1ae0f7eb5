package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/blobserve"
	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/fleet/tufrepo"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// openTrust opens the fleet's TUF repository in dataDir when `outpost keys init` created one
// (nil, nil when it did not: a fleet without trust serves no updates). targetsKeyFiles are the
// targets keys to publish with; without them the controller re-signs the online roles but
// refuses to publish packages.
func openTrust(dataDir string, targetsKeyFiles []string) (*tufrepo.Repo, error) {
	if _, err := os.Stat(filepath.Join(tufDir(dataDir), "meta", "1.root.json")); errors.Is(err, os.ErrNotExist) {
		if len(targetsKeyFiles) > 0 {
			return nil, fmt.Errorf("--targets-key given but %s has no fleet trust: run `outpost keys init` first", dataDir)
		}
		return nil, nil
	}
	keys, err := readPrivateKeys(targetsKeyFiles, "targets")
	if err != nil {
		return nil, err
	}
	return tufrepo.Open(tufDir(dataDir), tufrepo.Options{TargetsKeys: keys})
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
func newBlobServer(repo *tufrepo.Repo, copts fleet.Options, log *slog.Logger) (*blobserve.Server, error) {
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
		Source: repo, BrokerURL: u.String(), Username: user, Password: pass, ClientID: blobClientID(copts),
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
