package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/blobserve"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/credentials"
	"github.com/outpost-ml/outpost/fleet/enroll"
	"github.com/outpost-ml/outpost/fleet/homeassistant"
	"github.com/outpost-ml/outpost/fleet/monitor"
	"github.com/outpost-ml/outpost/fleet/tufrepo"
	"github.com/outpost-ml/outpost/fleet/wire"
)

func init() { register(newServeCmd) }

// defaultDataDir is where `outpost serve` keeps its state unless --data-dir says otherwise.
const defaultDataDir = "outpost-data"

func newServeCmd() *cobra.Command {
	var cfg serveConfig
	var logLevel, cpuProfile string
	var applyCredentialFlags func() error
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the fleet controller (embedded MQTT broker by default)",
		Long: `Run the fleet controller: it stores device results exactly once in its data directory,
acknowledges them to the devices, and tracks each device's presence and health.

By default it runs an embedded MQTT broker on --listen (falling back to a free port, logged,
if that one is taken). With --broker it runs no broker and connects to an external one
(e.g. Mosquitto) instead, retrying until it answers. Stop it with Ctrl-C or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("listen") && cfg.BrokerURL != "" {
				return errors.New("--listen and --broker exclude each other: --broker means no embedded broker")
			}
			if cfg.LabellerPasswordFile != "" && cfg.BrokerURL != "" {
				return errors.New("--labeller-password-file is for the embedded broker: with --broker, give the labelling system write access to " + wire.TopicFeedback + " in the broker's ACL")
			}
			if err := applyCredentialFlags(); err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			srv, err := newFleetServer(cfg)
			if err != nil {
				return err
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			return srv.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", broker.DefaultAddr, "address of the embedded MQTT broker (host:port)")
	f.StringVar(&cfg.BrokerURL, "broker", "", "external MQTT broker URL, e.g. tcp://host:1883 or tcp://user:pass@host:1883; disables the embedded broker")
	f.StringVar(&cfg.DataDir, "data-dir", defaultDataDir, "directory for the controller's state ("+boltstore.FileName+" unless --store); created if missing")
	f.StringVar(&cfg.StoreURL, "store", "", "PostgreSQL store URL (postgres://user:pass@host:5432/db) instead of "+boltstore.FileName+" in --data-dir; with --broker, replicas split the ingest (docs/operations.md)")
	f.StringVar(&cfg.Replica, "replica", "", "this replica's name in MQTT client ids when several share --store and --broker (default: hostname and a random suffix)")
	f.StringArrayVar(&cfg.TargetsKeyFiles, "targets-key", nil, "targets private key `file` for publishing models (see outpost keys; keep it offline otherwise)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&cfg.LabellerPasswordFile, "labeller-password-file", "", "`file` with the password of the embedded broker's user "+broker.DefaultLabellerUser+", who may publish labels on "+wire.TopicFeedback+" and nothing else")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write a Go CPU profile of the whole run to `file` (for go tool pprof), finished when the server stops")
	addUpdateFlags(cmd, &cfg)
	addWebFlags(cmd, &cfg)
	addCaptureFlags(cmd, &cfg) // capture.go
	addRetentionFlags(cmd, &cfg.retentionConfig)
	applyCredentialFlags = addCredentialFlags(cmd, &cfg)
	return cmd
}

// serveConfig is what `outpost serve` (and `outpost demo`) need to start a fleet server.
type serveConfig struct {
	Listen    string // embedded broker address; ignored when BrokerURL is set
	BrokerURL string // external broker; empty means embedded
	DataDir   string
	StoreURL  string       // postgres://...; empty: bbolt in DataDir
	Replica   string       // scale-out replica name (MQTT client ids); empty: generated
	Strict    bool         // refuse anonymous observers (`outpost serve` unless --allow-observers)
	Logger    *slog.Logger // nil discards
	updateConfig
	credentialConfig // serve_credentials.go
	webConfig        // serve_web.go
	retentionConfig  // serve_retention.go

	TargetsKeyFiles []string // serve_trust.go

	// LabellerPasswordFile holds the password of the embedded broker's labeller user, who may
	// publish late labels on outpost/v1/feedback (serve_monitor.go); empty: no labeller.
	LabellerPasswordFile string
	CaptureRetainCount   int // capture.go; the age is retentionConfig.RetainCaptures
}

// fleetServer is a controller plus, unless an external broker is used, the embedded broker it
// connects to.
type fleetServer struct {
	Broker     *broker.Broker // nil with an external broker
	Controller *fleet.Controller
	BrokerURL  string // where devices (and the controller) connect
	log        *slog.Logger
	updates    // model registry, rollout engine, HTTP API (serve_updates.go)

	Trust *tufrepo.Repo // nil without `outpost keys init` (serve_trust.go)

	Creds *credentials.Store // device secrets and revocations (serve_credentials.go)
	// Enroll answers enrollment requests; nil without the embedded broker checking devices.
	Enroll *enroll.Server
	// Blobs serves Trust's metadata and packages to devices over MQTT; nil without Trust.
	Blobs *blobserve.Server
	// homeAssistant announces devices to Home Assistant; nil without --homeassistant.
	homeAssistant *homeassistant.Options
	// Monitor takes MQTT labels and publishes drift alerts for the drift summaries the
	// controller stored and acked (serve_monitor.go).
	Monitor *monitor.Service
	// alertElection is the store's URL in scale-out mode, where the replicas elect the one
	// whose Monitor publishes alerts; empty otherwise.
	alertElection string
	// Store is the controller's store (owned by Controller, which closes it).
	Store fleet.Store

	Retention *fleet.Retention // prunes the views (serve_retention.go)
}

// newFleetServer opens the store, binds the embedded broker's port and builds the controller.
// It starts no goroutines; on error it releases whatever it opened.
func newFleetServer(cfg serveConfig) (_ *fleetServer, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.BrokerURL != "" {
		if _, err := fleet.ParseBrokerURL(cfg.BrokerURL); err != nil {
			return nil, err
		}
	} else if cfg.Listen == "" {
		cfg.Listen = broker.DefaultAddr
	} else if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = defaultDataDir
	}
	store, where, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			store.Close()
		}
	}()

	s := &fleetServer{BrokerURL: cfg.BrokerURL, log: log, Store: store}
	if s.Creds, err = openCredentials(cfg.DataDir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Creds.Close()
		}
	}()
	if s.Trust, err = openTrust(cfg, store, log); err != nil {
		return nil, err
	}
	copts := fleet.Options{Store: store, BrokerURL: cfg.BrokerURL, Logger: log.With("component", "controller")}
	if cfg.BrokerURL != "" && cfg.StoreURL != "" {
		// Scale-out: replicas split the result topics through a shared subscription and
		// each needs its own client ids (serve_scaleout.go).
		replica := cfg.Replica
		if replica == "" {
			replica = defaultReplica()
		}
		copts.ShareGroup = ShareGroup
		copts.ClientID = fleet.DefaultClientID + "-" + replica
		log = log.With("replica", replica)
		s.log = log
		copts.Logger = log.With("component", "controller")
	}
	if cfg.BrokerURL == "" {
		bopts := broker.Options{Addr: cfg.Listen, Strict: cfg.Strict, TLSAddr: cfg.TLSListen, Logger: log.With("component", "broker")}
		if cfg.DeviceAuth {
			bopts.Devices = s.Creds
			bopts.Enrollment = true
		}
		if bopts.TLS, err = cfg.tlsConfig(); err != nil {
			return nil, err
		}
		if bopts.LabellerPassword, err = labellerPassword(cfg.LabellerPasswordFile); err != nil {
			return nil, err
		}
		b, err := broker.New(bopts)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				b.Close()
			}
		}()
		s.Broker = b
		s.BrokerURL = b.URL()
		copts.BrokerURL = b.URL()
		copts.Username, copts.Password = b.ControllerCredentials()
	}
	// The monitor alerts on the drift summaries the controller's ingest stores.
	if scaleOut(cfg) {
		s.alertElection = cfg.StoreURL
	}
	if s.Monitor, err = newMonitor(store, copts, scaleOut(cfg), log); err != nil {
		return nil, err
	}
	copts.OnDrift = s.Monitor.DriftStored
	s.Controller, err = fleet.New(copts)
	if err != nil {
		return nil, err
	}
	if s.Broker != nil && cfg.DeviceAuth {
		if s.Enroll, err = newEnrollServer(s.Creds, copts, log); err != nil {
			return nil, err
		}
	}
	if s.Trust != nil {
		if cfg.Publisher == nil {
			cfg.Publisher = tufPublisher{s.Trust}
		}
		// Replicas split the block requests; each reads the repository from the store.
		if s.Blobs, err = newBlobServer(s.Trust, copts, copts.ShareGroup, log); err != nil {
			return nil, err
		}
	}
	s.Retention = cfg.retention(store, cfg.CaptureRetainCount)
	s.Retention.Logger = log.With("component", "retention")
	if err := s.setupUpdates(cfg, store, copts); err != nil {
		return nil, err
	}
	s.homeAssistant = homeAssistantOptions(cfg, copts, s.Controller)
	log.Info("outpost serve", "data_dir", cfg.DataDir, "store", where, "broker", redact(s.BrokerURL), "embedded", s.Broker != nil, "shared", copts.ShareGroup != "")
	return s, nil
}

// Run serves until ctx ends. The controller stops first, so it disconnects from a broker that
// is still up and stores what it already received; then the embedded broker closes.
func (s *fleetServer) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	bctx, stopBroker := context.WithCancel(context.WithoutCancel(gctx))
	defer stopBroker()
	if s.Broker != nil {
		// bctx outlives gctx until the controller has returned; a broker error still cancels
		// gctx and so stops the controller.
		g.Go(func() error { return s.Broker.Run(bctx) })
	}
	// The controller closes the store when it returns, so it stops only after the rollout
	// engine, the API and the monitor service, which use the store, have.
	cctx, stopController := context.WithCancel(context.WithoutCancel(gctx))
	defer stopController()
	g.Go(func() error {
		defer stopController()
		ug, uctx := errgroup.WithContext(gctx)
		ug.Go(func() error { return s.runUpdates(uctx) })
		if s.Monitor != nil {
			ug.Go(func() error { return runMonitor(uctx, s.Monitor, s.alertElection, s.log) })
		}
		if s.Trust != nil {
			// Here, so they stop before the controller closes the store they may read.
			ug.Go(func() error { return runTrust(uctx, s.Trust, s.log) })
			ug.Go(func() error { return runBlobs(uctx, s.Blobs) })
		}
		return ug.Wait()
	})
	g.Go(func() error {
		defer stopBroker()
		return s.Controller.Run(cctx)
	})
	if s.homeAssistant != nil {
		g.Go(func() error { return runHomeAssistant(gctx, s.homeAssistant) })
	}
	// Stops with gctx, before the controller closes the store.
	g.Go(func() error { return s.Retention.Run(gctx) })
	if s.Enroll != nil {
		g.Go(func() error { return s.Enroll.Run(gctx) })
	}
	err := g.Wait()
	s.Creds.Close()
	s.log.Info("outpost serve stopped", "err", err)
	return err
}

// redact hides a password in a broker URL for logging.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// startCPUProfile profiles the process until the returned stop is called. It exists so the
// controller's CPU cost per result can be measured in its own process under real load
// (`make bench-scale` with OUTPOST_SCALE_CPUPROFILE, docs/performance.md).
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
