package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/monitor"
	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/rollout"
)

// monitoringStore is the store's monitoring part for the API and the monitor service.
func monitoringStore(store fleet.Store) httpapi.Monitoring { return store }

// newMonitor builds the service that takes labels from outpost/v1/feedback and publishes drift
// alerts on outpost/v1/alerts for the drift summaries the controller stores, logged in with
// the controller's broker credential.
// elected (scale-out mode) makes it publish alerts only while it leads (runMonitor).
func newMonitor(store fleet.Store, copts fleet.Options, elected bool, log *slog.Logger) (*monitor.Service, error) {
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
	return monitor.NewService(monitor.Options{Store: store, BrokerURL: u.String(), Username: user, Password: pass,
		ClientID: monitorClientID(copts), Elected: elected, Logger: log.With("component", "monitor")})
}

// monitorClientID keeps the monitor services of scale-out replicas apart, as blobClientID
// does the block servers: with one id, the broker would disconnect each in turn. "" is the
// default id (one controller).
func monitorClientID(copts fleet.Options) string {
	if copts.ClientID == "" || copts.ClientID == fleet.DefaultClientID {
		return ""
	}
	return monitor.DefaultClientID + strings.TrimPrefix(copts.ClientID, fleet.DefaultClientID)
}

// runMonitor runs the monitor service until ctx ends. With a store URL (scale-out mode) the
// replicas elect the one that publishes drift alerts, so each alert goes out once.
func runMonitor(ctx context.Context, m *monitor.Service, storeURL string, log *slog.Logger) error {
	g, gctx := errgroup.WithContext(ctx)
	if storeURL != "" {
		e := &pgstore.Elector{URL: storeURL, Key: pgstore.AlertLeaderKey, Logger: log.With("component", "alert-election")}
		g.Go(func() error { return e.Run(gctx, m.Lead) })
	}
	g.Go(func() error { return m.Run(gctx) })
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// driftSource gives the rollout engine's drift gate the stored drift summaries, or nil.
func driftSource(store fleet.Store) rollout.DriftSource { return store }

// labellerPassword reads --labeller-password-file ("" when not given).
func labellerPassword(file string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := readLimited(file, "labeller password", 4096)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSpace(string(b))
	if len(pw) < 12 {
		return "", fmt.Errorf("labeller password file %s: shorter than 12 characters", file)
	}
	return pw, nil
}

// scaleOut reports whether cfg is the scale-out mode: an external broker and a PostgreSQL
// store, where several replicas may run.
func scaleOut(cfg serveConfig) bool { return cfg.BrokerURL != "" && cfg.StoreURL != "" }
