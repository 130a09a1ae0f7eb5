package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/outpost-ml/outpost/fleet/tufrepo"
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
