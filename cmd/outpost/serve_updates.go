package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/registry"
	"github.com/outpost-ml/outpost/fleet/rollout"
	"github.com/outpost-ml/outpost/models/bundle"
)

// updateConfig is the part of serveConfig for model updates.
type updateConfig struct {
	HTTPAddr    string   // API listen address; empty: no API
	PackageKeys []string // PEM public keys accepted on `models push`
	// Publisher hands pushed packages to the TUF repository; nil registers them unpublished
	// (rollouts refuse them) until the fleet's TUF repository is wired in.
	Publisher registry.Publisher
}

func addUpdateFlags(cmd *cobra.Command, cfg *serveConfig) {
	f := cmd.Flags()
	f.StringVar(&cfg.HTTPAddr, "http", "", "serve the HTTP API the CLI uses, the dashboard (/) and /metrics on this address, e.g. 127.0.0.1:8080; token in DATA-DIR/"+httpapi.TokenFile)
	f.StringArrayVar(&cfg.PackageKeys, "package-key", nil, "PEM ed25519 public key whose package signatures `models push` accepts (repeatable)")
}

// updates are the model registry, the rollout engine and the HTTP API of a fleet server.
type updates struct {
	Registry *registry.Registry
	Engine   *rollout.Engine // nil in scale-out mode, where Led runs one while this replica leads
	// Led and elector: in scale-out mode (--store and --broker) the replicas elect the one
	// that runs the rollout engine (an advisory lock in PostgreSQL); the others answer
	// rollout reads from the store and refuse changes.
	Led      *rollout.Led
	elector  *pgstore.Elector
	rollouts httpapi.Rollouts // Engine or Led, for the API and /metrics
	policies httpapi.Policies // the same, for per-device monitoring settings
	desired  *rollout.MQTTPublisher
	api      *http.Server
	apiLn    net.Listener
	APIAddr  string // where the API listens; empty without --http
	APIToken string
}

func (s *fleetServer) setupUpdates(cfg serveConfig, store fleet.Store, copts fleet.Options) (err error) {
	var keys []ed25519.PublicKey
	for _, p := range cfg.PackageKeys {
		pem, err := readLimited(p, "package key", keyFileLimit)
		if err != nil {
			return err
		}
		k, err := bundle.ParsePublicKey(pem)
		if err != nil {
			return fmt.Errorf("--package-key %s: %w", p, err)
		}
		keys = append(keys, k)
	}
	s.Registry, err = registry.New(registry.Options{Store: store, Keys: keys, Publisher: cfg.Publisher, AgentVersion: version})
	if err != nil {
		return err
	}
	s.desired, err = rollout.NewMQTTPublisher(rollout.MQTTOptions{BrokerURL: copts.BrokerURL, Username: copts.Username, Password: copts.Password, ClientID: desiredClientID(copts)})
	if err != nil {
		return err
	}
	ropts := rollout.Options{Store: store, Fleet: s.Controller, Publisher: s.desired, Drift: driftSource(store), Policies: store, Logger: s.log.With("component", "rollout")}
	if cfg.BrokerURL != "" && cfg.StoreURL != "" {
		if s.Led, err = rollout.NewLed(ropts); err != nil {
			return err
		}
		s.elector = &pgstore.Elector{URL: cfg.StoreURL, Key: pgstore.RolloutLeaderKey, Logger: s.log.With("component", "election")}
		s.rollouts, s.policies = s.Led, s.Led
	} else {
		if s.Engine, err = rollout.New(context.Background(), ropts); err != nil {
			return err
		}
		s.rollouts, s.policies = s.Engine, s.Engine
	}
	if cfg.HTTPAddr == "" {
		return nil
	}
	dir := cfg.DataDir
	if dir == "" {
		dir = defaultDataDir
	}
	if s.APIToken, err = httpapi.LoadOrCreateToken(filepath.Join(dir, httpapi.TokenFile)); err != nil {
		return err
	}
	h, err := httpapi.New(httpapi.Options{Registry: s.Registry, Rollouts: s.rollouts, Fleet: s.Controller, Registrar: s.Controller, Tags: store, Credentials: deviceCredentials{s.Creds, s.Broker}, Views: store, Monitoring: monitoringStore(store), Captures: captureReader(store), Policies: s.policies, Token: s.APIToken, Logger: s.log.With("component", "api")})
	if err != nil {
		return err
	}
	if s.apiLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("--http %s: %w", cfg.HTTPAddr, err)
	}
	s.APIAddr = s.apiLn.Addr().String()
	s.api = &http.Server{Handler: s.httpHandler(cfg, h), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	s.log.Info("http api", "addr", s.APIAddr, "token_file", filepath.Join(dir, httpapi.TokenFile))
	return nil
}

// runUpdates runs the rollout engine and the API until ctx ends.
func (s *fleetServer) runUpdates(ctx context.Context) error {
	s.desired.Connect()
	defer s.desired.Close()
	g, gctx := errgroup.WithContext(ctx)
	if s.elector != nil {
		g.Go(func() error { return s.elector.Run(gctx, s.Led.Lead) })
	} else {
		g.Go(func() error { return s.Engine.Run(gctx) })
	}
	if s.api != nil {
		g.Go(func() error {
			if err := s.api.Serve(s.apiLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http api: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
			defer cancel()
			return s.api.Shutdown(sctx)
		})
	}
	return g.Wait()
}
