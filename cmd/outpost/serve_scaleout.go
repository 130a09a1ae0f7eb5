package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/blobserve"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/pgstore"
)

// ShareGroup is the MQTT shared-subscription group of scale-out replicas: the broker hands
// each result batch to one member of $share/outpost/....
const ShareGroup = "outpost"

// openStore opens the store cfg names, bbolt in the data directory by default, and says where
// it is for the log (without a password).
func openStore(cfg serveConfig) (fleet.Store, string, error) {
	if cfg.StoreURL == "" {
		s, err := boltstore.Open(cfg.DataDir, boltstore.Options{})
		if err != nil {
			return nil, "", err
		}
		return s, s.Path(), nil
	}
	if !strings.HasPrefix(cfg.StoreURL, "postgres://") && !strings.HasPrefix(cfg.StoreURL, "postgresql://") {
		return nil, "", fmt.Errorf("--store %s: want a postgres:// or postgresql:// URL", redact(cfg.StoreURL))
	}
	s, err := pgstore.Open(context.Background(), cfg.StoreURL, pgstore.Options{})
	if err != nil {
		return nil, "", err
	}
	return s, fmt.Sprintf("%s (schema %d)", redact(cfg.StoreURL), s.SchemaVersion()), nil
}

// defaultReplica names a replica after its host, with a random suffix so two replicas on one
// host (or a restarted one whose old session the broker still holds) never share client ids.
func defaultReplica() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "replica"
	}
	var b [3]byte
	rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// desiredClientID and blobClientID keep the rollout publisher's and block server's client ids
// apart per replica: a broker disconnects the older of two clients with one id.
func desiredClientID(copts fleet.Options) string {
	if copts.ClientID == "" {
		return ""
	}
	return copts.ClientID + "-desired"
}

func blobClientID(copts fleet.Options) string {
	if copts.ClientID == "" || copts.ClientID == fleet.DefaultClientID {
		return ""
	}
	return blobserve.DefaultClientID + strings.TrimPrefix(copts.ClientID, fleet.DefaultClientID)
}
