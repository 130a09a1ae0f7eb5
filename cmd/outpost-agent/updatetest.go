//go:build updatetest

// This file is built only with -tags updatetest, for the SIGKILL tests: it takes updates
// from a directory repository (agent/update/updatetest) in place of TUF metadata and the
// MQTT downloader, and can stop the process in a chosen update phase so the test kills it
// there. Release builds never contain it.

package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-ml/outpost/agent/update/updatetest"
	"github.com/outpost-ml/outpost/models/bundle"
)

func init() {
	extraFlags = func(fs *flag.FlagSet) func(c *config) error {
		repo := fs.String("test-update-repo", "", "TEST BUILD: directory repository to take updates from")
		key := fs.String("test-update-key", "", "TEST BUILD: public key `file` of the repository's targets list")
		rate := fs.Int64("test-download-rate", 0, "TEST BUILD: download rate in bytes/s (0: unbounded)")
		pause := fs.String("test-pause-in", "", "TEST BUILD: stop doing anything once this update `phase` is written")
		return func(c *config) error {
			if *repo == "" {
				return nil
			}
			pem, err := os.ReadFile(*key)
			if err != nil {
				return fmt.Errorf("--test-update-key: %v", err)
			}
			pub, err := bundle.ParsePublicKey(pem)
			if err != nil {
				return fmt.Errorf("--test-update-key: %v", err)
			}
			c.Update.Trust = &updatetest.Trust{Dir: *repo, Pub: ed25519.PublicKey(pub)}
			c.Update.Downloader = &updatetest.Downloader{Src: *repo, Dir: filepath.Join(c.DataDir, "downloads"), Rate: *rate}
			// The watcher lives as long as the process.
			c.Update.Desired = updatetest.WatchDesired(context.Background(), *repo, 50*time.Millisecond)
			if p := *pause; p != "" {
				c.Update.OnPhase = func(phase string) {
					if phase == p {
						fmt.Fprintf(os.Stderr, "TEST: paused in phase %s\n", phase)
						select {} // until the test kills the process
					}
				}
			}
			return nil
		}
	}
}
