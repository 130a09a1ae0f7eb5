// Command outpost-agent runs Outpost on an edge device: it samples a sensor, runs a
// TensorFlow Lite model on sliding windows, keeps the results in a durable buffer and sends
// them to the fleet controller over MQTT, delivering everything buffered once the broker is
// reachable again.
//
// Exit codes: 0 after a clean stop (SIGINT or SIGTERM), 2 for bad usage, 1 for any other
// error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/agent/capture"
	"github.com/outpost-ml/outpost/agent/drift"
	"github.com/outpost-ml/outpost/agent/flagfile"
	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/agent/update"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the default action is restored, so a second one ends a shutdown
	// that hangs.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// maxCommitInterval bounds --commit-interval: what a crash may lose is the results of one
// interval, and a minute of them is already more than most deployments would accept.
const maxCommitInterval = time.Minute

// usageError marks errors in the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type config struct {
	assemble.Config
	logLevel       slog.Level
	gcPercent      int  // --gc-percent
	gcPercentSet   bool // given on the command line or in --config, so it overrides GOGC
	showVersion    bool
	packageKeyPath string
	configPath     string // --config: YAML of flag values (agent/flagfile)
	checkConfig    bool   // --check-config: validate flags and config, then exit
	enrollToken    string // from --enroll-token (enroll.go)
}

// extraFlags, when set by a file built in only for tests (updatetest.go), adds flags and
// wires what they name after parsing.
var extraFlags func(fs *flag.FlagSet) func(c *config) error

func parse(args []string, stdout io.Writer) (*config, error) {
	fs := flag.NewFlagSet("outpost-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, on one line, by run
	var c config
	var logLevel string
	fs.StringVar(&c.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker `URL` (tcp://, ssl://, ws://)")
	fs.StringVar(&c.DeviceID, "id", "", "device `ID`: 1-64 of A-Z a-z 0-9 . _ - (required)")
	fs.StringVar(&c.ModelPath, "model", "", "signed model package `file` (.opkg), or a bare .tflite with --allow-unsigned (required)")
	fs.StringVar(&c.ManifestPath, "manifest", "", "manifest `file` of a bare .tflite (default: the model path with .json for .tflite)")
	fs.StringVar(&c.packageKeyPath, "package-key", "", "PEM ed25519 public key `file` that model packages and updates must be signed with")
	fs.BoolVar(&c.AllowUnsigned, "allow-unsigned", false, "run a bare .tflite --model without any signature check (logged and reported in health)")
	fs.StringVar(&c.Update.TrustRoot, "trust-root", "", "pinned TUF root.json `file` of the fleet (from `outpost keys init`); updates are taken only with one\n(default: trust/root.json next to --data-dir, if present)")
	fs.IntVar(&c.Update.ArenaBudget, "arena-budget", update.DefaultArenaBudget, "largest tensor arena in `bytes` an updated model may need")
	fs.IntVar(&c.Update.Keep, "keep-models", update.DefaultKeep, "model packages kept on disk for rollback")
	sensors := &specList{specs: []string{defaultSensor}}
	fs.Var(sensors, "sensor", "sensor `spec` KIND[?ARGS], e.g. sim:vibration?seed=3&fault=bearing; repeat it to read several sensors\n"+
		"as one sample, channels in flag order (all at one rate); kinds: "+strings.Join(sensor.Kinds(), ", "))
	fs.StringVar(&c.DataDir, "data-dir", "", "`directory` for the result buffer; created if missing (required)")
	fs.DurationVar(&c.HealthInterval, "health-interval", agent.DefaultHealthInterval, "time between health reports")
	fs.IntVar(&c.MaxBuffered, "max-buffered", boltbuf.DefaultMaxResults, "most unacknowledged results kept; the retention policy drops beyond it")
	fs.Int64Var(&c.Buffer.MaxBytes, "max-buffered-bytes", boltbuf.DefaultMaxBytes, "most `bytes` of unacknowledged results kept; the retention policy drops beyond it")
	fs.StringVar(&c.Buffer.Policy, "retention", boltbuf.DefaultPolicy, "what to drop when the buffer is full: "+boltbuf.DropOldest+" or "+boltbuf.DropNewest)
	fs.Float64Var(&c.Upload.MaxUploadRate, "max-upload-rate", 0, "most `results/s` uploaded, so a backlog drains steadily (0: no limit)")
	fs.IntVar(&c.Upload.BatchMax, "batch-max", agent.DefaultBatchMax, fmt.Sprintf("most results per uploaded batch (at most %d)", wire.MaxBatchResults))
	fs.DurationVar(&c.Upload.BatchDelay, "batch-delay", agent.DefaultBatchDelay, "longest a partly filled batch waits for more results")
	fs.DurationVar(&c.Upload.CommitInterval, "commit-interval", agent.DefaultCommitInterval, fmt.Sprintf("longest a result waits to be stored (one buffer commit, with its fsyncs, per interval at low rates;\n"+
		"a crash loses the results still waiting, without a gap); longer writes less to an SD card (at most %v)", maxCommitInterval))
	fs.Int64Var(&c.DriftWindow, "drift-window", drift.DefaultWindow, "`inferences` per drift-monitoring window against the model's baseline (0: no drift monitoring)")
	noCapture := fs.Bool("no-capture", false, "never capture raw windows for retraining, whatever the controller's capture policy says")
	fs.Int64Var(&c.Capture.MaxBytes, "capture-quota", capture.DefaultMaxBytes, "most `bytes` of captured windows kept awaiting upload (their own buffer, "+assemble.CaptureFile+"); the oldest are dropped beyond it")
	fs.IntVar(&c.gcPercent, "gc-percent", defaultGCPercent, "Go heap growth between collections, in `percent` of the live heap, as GOGC (-1: off); a GOGC\nenvironment variable is used instead when this is not given")
	fs.IntVar(&c.Threads, "threads", 1, fmt.Sprintf("goroutines per inference for the big convolution and matrix loops (1 to %d; results do not depend on it)", maxThreads))
	fs.StringVar(&logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")
	creds := addCredentialFlags(fs) // credentials.go
	var wireExtra func(c *config) error
	if extraFlags != nil {
		wireExtra = extraFlags(fs)
	}
	fs.StringVar(&c.configPath, "config", "", "YAML `file` of settings keyed by flag name (id, broker, model, sensor, data-dir, …); flags override it")
	fs.BoolVar(&c.checkConfig, "check-config", false, "check the flags and --config file, print the settings and exit")
	fs.Usage = func() {} // flag calls it on every parse error; help is printed below instead
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: outpost-agent --id ID --model FILE --data-dir DIR [flags]\n\n")
			fmt.Fprintf(stdout, "Runs an Outpost edge agent: sensor -> model -> durable buffer -> MQTT.\n\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if c.showVersion {
		return &c, nil
	}
	if c.configPath != "" {
		// Keys are flag names, values go through the flags' own parsing (docs/agent.md).
		only := flagfile.CommandLineOnly{"config": true, "check-config": true, "version": true}
		if err := flagfile.ApplyFile(fs, c.configPath, only); err != nil {
			return nil, usageError{"config " + err.Error()}
		}
	}
	c.Sensors = sensors.specs
	fs.Visit(func(f *flag.Flag) { c.gcPercentSet = c.gcPercentSet || f.Name == "gc-percent" })
	switch {
	case fs.NArg() > 0:
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	case c.DeviceID == "" && creds.enrollToken == "":
		return nil, usageError{"missing --id (or --enroll-token)"}
	case c.ModelPath == "":
		return nil, usageError{"missing --model"}
	case c.DataDir == "":
		return nil, usageError{"missing --data-dir"}
	case c.HealthInterval <= 0:
		return nil, usageError{fmt.Sprintf("--health-interval %v must be positive", c.HealthInterval)}
	case c.MaxBuffered <= 0:
		return nil, usageError{fmt.Sprintf("--max-buffered %d must be positive", c.MaxBuffered)}
	case c.Buffer.MaxBytes <= 0:
		return nil, usageError{fmt.Sprintf("--max-buffered-bytes %d must be positive", c.Buffer.MaxBytes)}
	case c.Buffer.Policy != boltbuf.DropOldest && c.Buffer.Policy != boltbuf.DropNewest:
		return nil, usageError{fmt.Sprintf("--retention %q: want %s or %s", c.Buffer.Policy, boltbuf.DropOldest, boltbuf.DropNewest)}
	case !(c.Upload.MaxUploadRate >= 0) || math.IsInf(c.Upload.MaxUploadRate, 0):
		return nil, usageError{fmt.Sprintf("--max-upload-rate %v must be a number ≥ 0", c.Upload.MaxUploadRate)}
	case c.Upload.BatchMax <= 0 || c.Upload.BatchMax > wire.MaxBatchResults:
		// The controller rejects a larger batch whole, so it could never be delivered.
		return nil, usageError{fmt.Sprintf("--batch-max %d must be 1 to %d", c.Upload.BatchMax, wire.MaxBatchResults)}
	case c.Upload.BatchDelay <= 0:
		return nil, usageError{fmt.Sprintf("--batch-delay %v must be positive", c.Upload.BatchDelay)}
	case c.Upload.CommitInterval <= 0 || c.Upload.CommitInterval > maxCommitInterval:
		return nil, usageError{fmt.Sprintf("--commit-interval %v must be positive and at most %v", c.Upload.CommitInterval, maxCommitInterval)}
	case c.Update.ArenaBudget <= 0:
		return nil, usageError{fmt.Sprintf("--arena-budget %d must be positive", c.Update.ArenaBudget)}
	case c.Capture.MaxBytes <= 0:
		return nil, usageError{fmt.Sprintf("--capture-quota %d must be positive", c.Capture.MaxBytes)}
	case c.DriftWindow < 0:
		return nil, usageError{fmt.Sprintf("--drift-window %d must be ≥ 0 (0: no drift monitoring)", c.DriftWindow)}
	case c.gcPercent < -1:
		return nil, usageError{fmt.Sprintf("--gc-percent %d must be -1 (off) or more", c.gcPercent)}
	case c.Threads < 1 || c.Threads > maxThreads:
		return nil, usageError{fmt.Sprintf("--threads %d must be 1 to %d", c.Threads, maxThreads)}
	case c.Update.Keep < 2:
		return nil, usageError{fmt.Sprintf("--keep-models %d must be at least 2 (the active model and the one to roll back to)", c.Update.Keep)}
	}
	c.Capture.Disabled = *noCapture
	if c.DriftWindow == 0 {
		c.DriftWindow = -1 // assemble's "monitor nothing"; its 0 means the default window
	}
	if c.packageKeyPath != "" {
		pem, err := os.ReadFile(c.packageKeyPath)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--package-key: %v", err)}
		}
		if c.PackageKey, err = bundle.ParsePublicKey(pem); err != nil {
			return nil, usageError{fmt.Sprintf("--package-key %s: %v", c.packageKeyPath, err)}
		}
	}
	if err := creds.apply(&c); err != nil {
		return nil, usageError{err.Error()}
	}
	if wireExtra != nil {
		if err := wireExtra(&c); err != nil {
			return nil, usageError{err.Error()}
		}
	}
	if err := c.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", logLevel)}
	}
	return &c, nil
}

// defaultGCPercent is --gc-percent's default. The runtime's own (100) lets the heap grow to
// twice what is live between collections, and a model's weights are most of what is live: with
// a 3 MB vision model (8 MB live) the agent's anonymous memory grew from 13.5 to 17 MiB over
// 150 s and would go on to about 19. At 25 it stays at 13.5 MiB; at one inference a second a
// collection comes every ~30 s and costs a few ms of CPU (docs/performance.md).
const defaultGCPercent = 25

// maxThreads bounds --threads: each thread is a goroutine and scratch per layer, and no board
// the agent targets has more cores.
const maxThreads = 64

// defaultSensor is read when no --sensor is given.
const defaultSensor = "sim:vibration"

// specList is the repeatable --sensor flag: the first use replaces the default, later ones
// append.
type specList struct {
	specs []string
	set   bool // a --sensor was given
}

func (l *specList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.specs, " ")
}

// Repeatable lets a --config file give a list of sensors.
func (l *specList) Repeatable() bool { return true }

func (l *specList) Set(spec string) error {
	if spec == "" {
		return errors.New("empty sensor spec")
	}
	if !l.set {
		l.specs, l.set = nil, true
	}
	l.specs = append(l.specs, spec)
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parse(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "outpost-agent: %v (see --help)\n", err)
		return 2
	}
	if c.showVersion {
		fmt.Fprintln(stdout, "outpost-agent", version)
		return 0
	}
	if c.checkConfig {
		if c.DeviceID == "" {
			c.DeviceID = "(from enrollment)"
		}
		fmt.Fprintf(stdout, "ok: id %s, broker %s, model %s, sensors %s, data dir %s\n",
			c.DeviceID, c.Broker, c.ModelPath, strings.Join(c.Sensors, " + "), c.DataDir)
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.logLevel}))
	if c.enrollToken != "" {
		if err := enrollIdentity(ctx, c, log); err != nil {
			if ctx.Err() != nil {
				return 0 // stopped while enrolling
			}
			fmt.Fprintf(stderr, "outpost-agent: %v\n", err)
			if errors.Is(err, errRefused) {
				return 2
			}
			return 1
		}
	}
	log = log.With("device", c.DeviceID)
	c.AgentVersion = version
	c.Logger = log
	if c.gcPercentSet || os.Getenv("GOGC") == "" {
		debug.SetGCPercent(c.gcPercent)
	}
	dev, err := assemble.New(c.Config)
	if err != nil {
		fmt.Fprintf(stderr, "outpost-agent: %v\n", err)
		return 1
	}
	// Loading the model read its file, copied its constants and packed the weights: several
	// times the model's size of garbage, which the runtime would otherwise give back to the
	// OS only slowly. Collect it and return the pages now, once.
	debug.FreeOSMemory()
	m := dev.Update.Swap().Model()
	log.Info("outpost-agent starting", "version", version, "model", m.String(), "sha256", m.SHA256,
		"sensor", strings.Join(c.Sensors, " + "), "channels", strings.Join(dev.Source.Info().ChannelNames(), ","), "broker", c.Broker, "data_dir", c.DataDir)
	if dev.TrustRoot != "" {
		log.Info("model updates enabled", "trust_root", dev.TrustRoot)
	} else if c.Update.Trust == nil {
		log.Info("model updates disabled: no trust root pinned (--trust-root)")
	}
	start := time.Now()
	sdCtx, sdStop := context.WithCancel(ctx)
	sdDone := make(chan struct{})
	go func() { defer close(sdDone); superviseSystemd(sdCtx, log, dev.Agent.Stats) }()
	defer func() { sdStop(); <-sdDone }()
	relDone := make(chan struct{})
	go func() { defer close(relDone); releaseStartupPages(sdCtx, log, dev.Agent.Stats) }()
	defer func() { sdStop(); <-relDone }()
	if err := dev.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "outpost-agent: %v\n", err)
		return 1
	}
	log.Info("outpost-agent stopped", "uptime", time.Since(start).Round(time.Millisecond))
	return 0
}
