// Package assemble wires the agent's real adapters — a registered sensor, the TFLite
// predictor, the bbolt buffer and the MQTT link — into a runnable Device. cmd/outpost-agent
// runs one; the controller's demo runs several in one process.
package assemble

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/boltbuf"
	"github.com/outpost-ml/outpost/agent/capture"
	"github.com/outpost-ml/outpost/agent/drift"
	"github.com/outpost-ml/outpost/agent/driftq"
	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/agent/sensor"
	// Every sensor kind the agent binary offers registers itself on import.
	_ "github.com/outpost-ml/outpost/agent/sensor/ads1115"   // ads1115
	_ "github.com/outpost-ml/outpost/agent/sensor/bme280"    // bme280
	_ "github.com/outpost-ml/outpost/agent/sensor/gpio"      // gpio
	_ "github.com/outpost-ml/outpost/agent/sensor/mpu6050"   // mpu6050
	_ "github.com/outpost-ml/outpost/agent/sensor/replay"    // replay
	_ "github.com/outpost-ml/outpost/agent/sensor/simdrift"  // sim:accel, sim:temperature, drift
	_ "github.com/outpost-ml/outpost/agent/sensor/simsensor" // sim:vibration
	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/agent/update"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/bundle"
)

// Config describes one device. DeviceID, Broker, ModelPath, Sensors and DataDir are required.
type Config struct {
	DeviceID     string
	Broker       string // tcp://host:port
	ModelPath    string // signed .opkg package, or a bare .tflite with AllowUnsigned
	ManifestPath string // for a .tflite; default: ModelPath with .json for .tflite
	// Sensors are sensor specs, e.g. "sim:vibration?seed=3". Several are read together as
	// one source (sensor.Combine): each sample holds their channels in this order, and the
	// model's manifest must list that many channels.
	Sensors []string
	DataDir string // holds buffer.db; created if missing

	HealthInterval time.Duration // default agent.DefaultHealthInterval
	MaxBuffered    int           // unacked results kept; default boltbuf.DefaultMaxResults
	AgentVersion   string
	Logger         *slog.Logger // nil logs nothing
	// Link overrides MQTT timings (Broker, DeviceID and Logger are taken from above).
	Link mqttlink.Options
	// Buffer overrides the other buffer options (MaxResults is taken from MaxBuffered when
	// that is set).
	Buffer boltbuf.Options
	// Upload tunes the upload path: the Batch*, Window, MaxUploadRate, CompressMin and
	// CommitInterval fields of agent.Options are used, the rest ignored.
	Upload agent.Options
	// DriftWindow is the drift monitor's window in inferences (docs/monitoring.md): 0 takes
	// drift.DefaultWindow, a negative value monitors nothing. Only a model whose manifest
	// carries a baseline is monitored.
	DriftWindow int64
	// Threads is how many goroutines each inference may use (tfpredict.Options.Threads), for
	// the model given here and every update; 0 means 1.
	Threads int

	// Model updates (docs/updates.md). PackageKey verifies a ModelPath package and every
	// update; AllowUnsigned runs a bare .tflite ModelPath without a signature, loudly.
	PackageKey    ed25519.PublicKey
	AllowUnsigned bool
	Update        UpdateConfig
	// Capture configures data capture for retraining (capture.go).
	Capture CaptureConfig
}

// UpdateConfig wires the model update's seams. With Trust and Downloader both nil, New
// builds the real ones (agent/trust and agent/fetch over the MQTT link) when a TUF root is
// pinned (TrustRoot, or a file at DefaultTrustRoot); without one the device runs its model
// and refuses every update with a one-line reason.
type UpdateConfig struct {
	// TrustRoot is the pinned root.json file; empty looks for DefaultTrustRoot(DataDir) and
	// takes no updates when there is none.
	TrustRoot  string
	Trust      update.Trust
	Downloader update.Downloader
	// Desired delivers the controller's desired state; nil takes the MQTT link's when it
	// offers one (a Desired() method).
	Desired     update.DesiredSource
	Keep        int // packages kept on disk; default update.DefaultKeep
	ArenaBudget int // bytes; default update.DefaultArenaBudget
	// OnPhase is update.Options.OnPhase.
	OnPhase func(phase string)
}

// DriftQueueDir is the directory of unacked drift summaries inside Config.DataDir.
const DriftQueueDir = "drift-queue"

// BufferFile is the name of the buffer inside Config.DataDir.
const BufferFile = "buffer.db"

// ShutdownTimeout bounds how long Run waits to announce "offline" after the agent stops.
const ShutdownTimeout = 3 * time.Second

// Device is an assembled agent with the adapters it owns.
type Device struct {
	Agent *agent.Agent
	// Source is the opened sensor, e.g. a *simsensor.Vibration for sim:vibration to inject
	// faults into; with several Sensors a *sensor.Combined whose Sources are in that order.
	Source    sensor.Source
	Predictor *tfpredict.Predictor // the model given in Config.ModelPath
	Buffer    *boltbuf.Buffer
	Link      *mqttlink.Link
	// Update runs model updates; the agent's Predictor is its Swap, which starts with the
	// model the last update left active (Predictor when there was none).
	Update   *update.Manager
	Unsigned bool // Predictor is a bare .tflite run under AllowUnsigned
	// TrustRoot is the pinned TUF root file updates are verified against; empty when the
	// device takes no updates or Config.Update brought its own Trust.
	TrustRoot string
	desired   update.DesiredSource
	drift     *followDrift // nil when drift is not monitored
	// Capture keeps windows for retraining as the controller's policy says; nil when
	// Config.Capture.Disabled. CaptureStore is its buffer.
	Capture      *capture.Capturer
	CaptureStore *capture.Store

	log  *slog.Logger
	used atomic.Bool // Run or Close has been called
}

// New opens every part of the device, or closes what it opened and returns a one-line error
// naming the first part that failed. It connects nothing and starts nothing.
func New(cfg Config) (_ *Device, err error) {
	if err := wire.ValidDeviceID(cfg.DeviceID); err != nil {
		return nil, err
	}
	switch {
	case cfg.Broker == "":
		return nil, errors.New("no broker given")
	case cfg.ModelPath == "":
		return nil, errors.New("no model given")
	case len(cfg.Sensors) == 0:
		return nil, errors.New("no sensor given")
	case cfg.DataDir == "":
		return nil, errors.New("no data dir given")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Device{log: log}
	defer func() {
		if err != nil {
			d.closeParts()
		}
	}()

	if d.Predictor, d.Unsigned, err = loadModel(cfg); err != nil {
		return nil, err
	}
	if d.Source, err = openSensors(cfg.Sensors); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	bo := cfg.Buffer
	if cfg.MaxBuffered != 0 {
		bo.MaxResults = cfg.MaxBuffered
	}
	d.Buffer, err = boltbuf.Open(filepath.Join(cfg.DataDir, BufferFile), bo)
	if err != nil {
		return nil, err
	}
	lo := cfg.Link
	lo.Broker, lo.DeviceID, lo.Logger = cfg.Broker, cfg.DeviceID, log.With("component", "mqtt")
	lo.Epoch = d.Buffer.Epoch() // the link delivers only the acks for this buffer's epoch
	if d.Link, err = mqttlink.New(lo); err != nil {
		return nil, err
	}
	if cfg.Update.Trust == nil && cfg.Update.Downloader == nil {
		cfg.Update.Trust, cfg.Update.Downloader, d.TrustRoot, err = updateSeams(cfg, d.Link, log)
		if err != nil {
			return nil, err
		}
	}
	d.Update, err = update.Open(update.Options{
		State:        d.Buffer.State(),
		DataDir:      cfg.DataDir,
		PackageKey:   cfg.PackageKey,
		Trust:        cfg.Update.Trust,
		Downloader:   cfg.Update.Downloader,
		Events:       d.Link,
		DeviceID:     cfg.DeviceID,
		AgentVersion: cfg.AgentVersion,
		Keep:         cfg.Update.Keep,
		ArenaBudget:  cfg.Update.ArenaBudget,
		OnPhase:      cfg.Update.OnPhase,
		Threads:      cfg.Threads,
		Logger:       log.With("component", "update"),
	}, d.Predictor)
	if err != nil {
		return nil, err
	}
	d.desired = cfg.Update.Desired
	if ds, ok := any(d.Link).(update.DesiredSource); ok && d.desired == nil {
		d.desired = ds
	}
	var mon agent.DriftMonitor // a nil *followDrift must not become a non-nil interface
	var dq agent.DriftQueue    // likewise a nil *driftq.Queue
	if cfg.DriftWindow >= 0 {
		w := cfg.DriftWindow
		if w == 0 {
			w = drift.DefaultWindow
		}
		d.drift = newFollowDrift(d.Update.Swap(), w, d.Update.DriftOverrides, log.With("component", "drift"))
		mon = d.drift
		q, err := driftq.Open(filepath.Join(cfg.DataDir, DriftQueueDir), 0)
		if err != nil {
			return nil, err
		}
		dq = q
	}
	if d.CaptureStore, d.Capture, err = openCapture(cfg, d.Source, d.Link, log); err != nil {
		return nil, err
	}
	var capt agent.Capturer // a nil *capture.Capturer must not become a non-nil interface
	if d.Capture != nil {
		capt = d.Capture
	}
	d.Agent, err = agent.New(agent.Options{
		DeviceID:       cfg.DeviceID,
		AgentVersion:   cfg.AgentVersion,
		Source:         d.Source,
		Predictor:      d.Update.Swap(),
		Update:         d.Update.Status,
		Unsigned:       d.Unsigned,
		Buffer:         d.Buffer,
		Uplink:         d.Link,
		Logger:         log.With("component", "agent"),
		HealthInterval: cfg.HealthInterval,
		BatchMax:       cfg.Upload.BatchMax,
		BatchBytes:     cfg.Upload.BatchBytes,
		BatchDelay:     cfg.Upload.BatchDelay,
		Window:         cfg.Upload.Window,
		MaxUploadRate:  cfg.Upload.MaxUploadRate,
		CompressMin:    cfg.Upload.CompressMin,
		CommitInterval: cfg.Upload.CommitInterval,
		DataDir:        cfg.DataDir,
		Drift:          mon,
		DriftQueue:     dq,
		Capture:        capt,
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// loadModel loads cfg.ModelPath: a package verified with cfg.PackageKey, or a bare .tflite
// under cfg.AllowUnsigned only.
func loadModel(cfg Config) (*tfpredict.Predictor, bool, error) {
	if strings.HasSuffix(cfg.ModelPath, bundle.Extension) {
		if len(cfg.PackageKey) == 0 {
			return nil, false, fmt.Errorf("model %s: no package key to verify it with (--package-key)", cfg.ModelPath)
		}
		data, err := readFileMax(cfg.ModelPath, bundle.DefaultMaxModelSize+bundle.MaxManifestSize+64<<10)
		if err != nil {
			return nil, false, fmt.Errorf("read model: %w", err)
		}
		pkg, err := update.OpenPackage(data, cfg.PackageKey)
		if err != nil {
			return nil, false, fmt.Errorf("model %s: %w", cfg.ModelPath, err)
		}
		p, err := tfpredict.NewWith(pkg.Model, pkg.Manifest, cfg.ModelPath, tfpredict.Options{Threads: cfg.Threads})
		return p, false, err
	}
	if !cfg.AllowUnsigned {
		return nil, false, fmt.Errorf("model %s is not a signed %s package; give one (with --package-key), or --allow-unsigned to run it anyway", cfg.ModelPath, bundle.Extension)
	}
	p, err := tfpredict.LoadWith(cfg.ModelPath, cfg.ManifestPath, tfpredict.Options{Threads: cfg.Threads})
	if err != nil {
		return nil, false, err
	}
	return p, true, nil
}

// readFileMax reads a file of at most max bytes.
func readFileMax(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is over %d bytes", path, max)
	}
	return data, nil
}

// openSensors opens every spec and, for more than one, combines them; on error it closes what
// it opened.
func openSensors(specs []string) (_ sensor.Source, err error) {
	srcs := make([]sensor.Source, 0, len(specs))
	defer func() {
		if err != nil {
			for _, s := range srcs {
				_ = s.Close() // the open error is the one worth reporting
			}
		}
	}()
	for _, spec := range specs {
		src, err := sensor.Open(spec)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	if len(srcs) == 1 {
		return srcs[0], nil
	}
	c, err := sensor.Combine(srcs...)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Run connects and runs the agent until ctx ends. On the way out every inferred result is
// committed, "offline" is announced if the broker is reachable (waiting at most
// ShutdownTimeout), and the buffer and sensor are closed. Run may be called once.
func (d *Device) Run(ctx context.Context) error {
	if !d.used.CompareAndSwap(false, true) {
		return errors.New("device already run or closed")
	}
	if d.Unsigned {
		m := d.Predictor.Model()
		d.log.Warn("RUNNING AN UNSIGNED MODEL (--allow-unsigned): nothing proves who made it; health reports unsigned=true",
			"model", m.String(), "sha256", m.SHA256)
	}
	if d.drift != nil {
		d.drift.logState()
	}
	d.Link.Connect()
	var desired <-chan wire.Desired
	if d.desired != nil {
		desired = d.desired.Desired()
	}
	uctx, stopUpdate := context.WithCancel(ctx)
	updateDone := make(chan error, 1)
	desired = d.teeDesired(uctx, desired)
	go func() { updateDone <- d.Update.Run(uctx, desired) }()
	runErr := d.Agent.Run(ctx)
	stopUpdate()
	runErr = errors.Join(runErr, <-updateDone)
	st := d.Agent.Stats()
	d.log.Info("agent stopped", "last_seq", st.LastSeq, "acked_seq", st.AckedSeq, "buffered", st.Buffered)
	cctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	closeErr := d.Link.Close(cctx)
	if closeErr != nil {
		d.log.Warn("announce offline", "err", closeErr)
	}
	return errors.Join(runErr, d.closeParts())
}

// Close releases a Device that will not be Run.
func (d *Device) Close() error {
	if !d.used.CompareAndSwap(false, true) {
		return nil
	}
	return d.closeParts()
}

func (d *Device) closeParts() error {
	var errs []error
	if d.Buffer != nil {
		errs = append(errs, d.Buffer.Close())
	}
	if d.CaptureStore != nil {
		errs = append(errs, d.CaptureStore.Close())
	}
	if d.Source != nil {
		errs = append(errs, d.Source.Close())
	}
	return errors.Join(errs...)
}
