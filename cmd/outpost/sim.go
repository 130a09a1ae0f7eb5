package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/agent/sensor/simsensor"
	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/models/bundle"
)

// `outpost sim`: many simulated devices in one process against a running controller's broker,
// for trying a fleet's load (docs/operations.md, "Simulating a fleet").

func init() { register(newSimCmd) }

type simConfig struct {
	Devices     int
	Broker      string
	Duration    time.Duration
	Rate        float64 // results per second per device; 0 with --wire: idle devices
	Credentials string  // file of id,secret
	Prefix      string  // device ids prefix-NNNN without Credentials
	DataDir     string  // "" a temporary directory, removed afterwards
	Model       string
	Drain       time.Duration // after Duration, the most to wait for the last acks
	Wire        bool          // lightweight wire-protocol publishers instead of real agents
	JSON        bool
	Logger      *slog.Logger
}

// simSummary is what a run did. Results counts those produced until the end of Duration;
// Acked those of them the controller acknowledged (stored) by the end of the drain.
type simSummary struct {
	Mode      string  `json:"mode"` // "agents" or "wire"
	Devices   int     `json:"devices"`
	Connected int     `json:"connected"` // devices that connected at least once
	Seconds   float64 `json:"seconds"`   // production time
	Produced  uint64  `json:"produced"`
	Acked     uint64  `json:"acked"`
	Unacked   uint64  `json:"unacked"`
	PerSecond float64 `json:"results_per_s"` // Acked / Seconds
	// AckedSeconds is from the start of production to the last ack (wire mode), and
	// Sustained Acked over it: the ingest rate the controller actually kept up.
	AckedSeconds float64 `json:"acked_seconds,omitempty"`
	Sustained    float64 `json:"sustained_results_per_s,omitempty"`
	LagP50Ms     float64 `json:"ack_lag_p50_ms"`
	LagP99Ms     float64 `json:"ack_lag_p99_ms"`
	LagMaxMs     float64 `json:"ack_lag_max_ms"`
	LagSamples   int     `json:"ack_lag_samples"`
	// LagKind says what the lag figures measure: per result, from its creation to the ack
	// covering it (wire mode), or the age of each device's oldest unacked result, sampled
	// every 250 ms (agents mode: the agent keeps no per-result ack times).
	LagKind string `json:"ack_lag_kind"`
}

func newSimCmd() *cobra.Command {
	cfg := simConfig{}
	var logLevel string
	cmd := &cobra.Command{
		Use:   "sim --devices N --broker URL",
		Short: "Run N simulated devices in one process against a controller's broker, then print a summary",
		Long: `sim runs N devices in this process for --duration, each with its own data directory under
--data-dir (default: a temporary directory, removed afterwards), then waits up to --drain for
the controller to acknowledge what they produced and prints a summary: results produced and
acknowledged, results per second, ack lag percentiles.

By default every device is the real agent code (agent/assemble: simulated vibration sensor,
the sample model in the pure-Go TFLite interpreter, a bbolt buffer, the MQTT link), with the
sensor's rate set so each makes --rate results per second. With --wire each device is a
lightweight publisher speaking the same wire protocol (retained state, ResultBatches with an
epoch and seqs, a window of unacked batches, resend after 10 s without an ack) without
sensor, model or buffer, for loads beyond what real agents fit on one machine; with --wire
and --rate 0 the devices connect, announce themselves and stay idle.

The controller must admit the devices: with --credentials FILE (CSV lines id,secret or JSON,
from outpost devices add) each device logs in with its secret; otherwise devices are named
--prefix-0001… and need a controller started with --insecure-open-devices (test setups only).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			sum, err := runSim(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			printSimSummary(cmd.OutOrStdout(), sum, cfg.JSON)
			if sum.Unacked > 0 {
				return &exitError{code: 3, err: fmt.Errorf("%d of %d results not acknowledged within --drain %s", sum.Unacked, sum.Produced, cfg.Drain)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Devices, "devices", 10, "number of simulated devices")
	f.StringVar(&cfg.Broker, "broker", "tcp://"+defaultBrokerHost, "the controller's MQTT broker URL")
	f.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long the devices produce results")
	f.Float64Var(&cfg.Rate, "rate", 10, "results per second per device (--wire: 0 for idle devices)")
	f.StringVar(&cfg.Credentials, "credentials", "", "`file` of device ids and secrets (CSV id,secret or JSON); the first --devices are used")
	f.StringVar(&cfg.Prefix, "prefix", "sim", "device id prefix without --credentials (ids PREFIX-0001…)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the devices' data (default: a temporary one, removed afterwards)")
	f.StringVar(&cfg.Model, "model", defaultDemoModel, "sample model the agents run (see models/sample)")
	f.DurationVar(&cfg.Drain, "drain", 30*time.Second, "after --duration, the most to wait for the last acks")
	f.BoolVar(&cfg.Wire, "wire", false, "lightweight wire-protocol publishers instead of real agents")
	f.BoolVar(&cfg.JSON, "json", false, "print the summary as JSON")
	f.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	return cmd
}

// maxSimAgents bounds real agents in one process (each runs a sensor, an interpreter, a bbolt
// file and an MQTT client); --wire devices are bounded by maxSimCredentials.
const maxSimAgents = 2000

func runSim(ctx context.Context, cfg simConfig) (simSummary, error) {
	switch {
	case cfg.Devices < 1 || cfg.Devices > maxSimCredentials:
		return simSummary{}, fmt.Errorf("--devices %d: must be 1 to %d", cfg.Devices, maxSimCredentials)
	case !cfg.Wire && cfg.Devices > maxSimAgents:
		return simSummary{}, fmt.Errorf("--devices %d: at most %d real agents in one process (--wire runs more)", cfg.Devices, maxSimAgents)
	case cfg.Duration <= 0 || cfg.Drain < 0:
		return simSummary{}, errors.New("--duration must be > 0 and --drain ≥ 0")
	case math.IsNaN(cfg.Rate) || cfg.Rate < 0 || cfg.Rate > 1000 || (!cfg.Wire && cfg.Rate == 0):
		return simSummary{}, fmt.Errorf("--rate %v: must be in (0, 1000] (0 only with --wire)", cfg.Rate)
	}
	if _, err := fleet.ParseBrokerURL(cfg.Broker); err != nil {
		return simSummary{}, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	creds, err := simDevices(cfg)
	if err != nil {
		return simSummary{}, err
	}
	if cfg.Wire {
		return runWireSim(ctx, cfg, creds)
	}
	return runAgentSim(ctx, cfg, creds)
}

// simDevices names the devices: the first cfg.Devices of the credentials file, or
// PREFIX-0001… without secrets.
func simDevices(cfg simConfig) ([]simCredential, error) {
	if cfg.Credentials == "" {
		if err := validPrefix(cfg.Prefix); err != nil {
			return nil, err
		}
		out := make([]simCredential, cfg.Devices)
		for i := range out {
			out[i].ID = fmt.Sprintf("%s-%04d", cfg.Prefix, i+1)
		}
		return out, nil
	}
	data, err := readLimited(cfg.Credentials, "credentials", 64<<20)
	if err != nil {
		return nil, err
	}
	creds, err := parseSimCredentials(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Credentials, err)
	}
	if len(creds) < cfg.Devices {
		return nil, fmt.Errorf("--devices %d: %s lists only %d", cfg.Devices, cfg.Credentials, len(creds))
	}
	return creds[:cfg.Devices], nil
}

func validPrefix(p string) error {
	if p == "" {
		return errors.New("--prefix must not be empty")
	}
	_, err := simDevicesID(p, 1)
	return err
}

func simDevicesID(prefix string, i int) (string, error) {
	id := fmt.Sprintf("%s-%04d", prefix, i)
	if len(id) > 64 {
		return "", fmt.Errorf("--prefix %q: device ids would be longer than 64 characters", prefix)
	}
	for _, r := range prefix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return "", fmt.Errorf("--prefix %q: character %q not allowed in a device id", prefix, r)
		}
	}
	return id, nil
}

// simDataDir returns the devices' parent directory and a cleanup.
func simDataDir(dir string) (string, func(), error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, fmt.Errorf("data dir: %w", err)
		}
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "outpost-sim-")
	if err != nil {
		return "", nil, fmt.Errorf("temporary data dir: %w", err)
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// simManifest rewrites the sample model's manifest (beside modelPath, in the sim's own
// directory) so that an agent makes rate results per second: the agent infers once per
// stride of new samples, so the stride becomes the trained sample rate over rate; above one
// result per sample the sensor rate goes up too (the model then sees a faster signal than it
// was trained on, which only matters for the outcomes, not for the load). It returns the
// sensor rate to use.
func simManifest(modelPath string, rate float64) (float64, error) {
	path := tfpredict.ManifestPath(modelPath)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("manifest: %w", err)
	}
	m, err := bundle.DecodeManifest(data)
	if err != nil {
		return 0, fmt.Errorf("manifest %s: %w", path, err)
	}
	sampleRate := m.Input.SampleRateHz
	stride := max(1, int(math.Round(sampleRate/rate)))
	if rate > sampleRate {
		sampleRate = rate
	}
	if sampleRate > 10000 {
		return 0, fmt.Errorf("--rate %v: beyond the simulated sensor's 10 kHz", rate)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return 0, fmt.Errorf("manifest %s: %w", path, err)
	}
	in, ok := raw["input"].(map[string]any)
	if !ok {
		return 0, fmt.Errorf("manifest %s: no input section", path)
	}
	in["stride"], in["sample_rate_hz"] = stride, sampleRate
	if data, err = json.MarshalIndent(raw, "", "  "); err != nil {
		return 0, err
	}
	if _, err := bundle.DecodeManifest(data); err != nil {
		return 0, fmt.Errorf("--rate %v: %w", rate, err)
	}
	return sampleRate, os.WriteFile(path, data, 0o644)
}

// runAgentSim runs real agents.
func runAgentSim(ctx context.Context, cfg simConfig, creds []simCredential) (simSummary, error) {
	dir, cleanup, err := simDataDir(cfg.DataDir)
	if err != nil {
		return simSummary{}, err
	}
	defer cleanup()
	modelPath, err := demoModel(dir, cfg.Model)
	if err != nil {
		return simSummary{}, err
	}
	sampleRate, err := simManifest(modelPath, cfg.Rate)
	if err != nil {
		return simSummary{}, err
	}

	devices := make([]*assemble.Device, 0, len(creds))
	defer func() {
		for _, d := range devices {
			d.Close()
		}
	}()
	for i, c := range creds {
		d, err := assemble.New(assemble.Config{
			DeviceID:      c.ID,
			Broker:        cfg.Broker,
			ModelPath:     modelPath,
			AllowUnsigned: true,
			// The shaft frequency stays below Nyquist at low rates.
			Sensors:      []string{fmt.Sprintf("%s?seed=%d&rate=%g&shaft=%g", simsensor.KindVibration, i+1, sampleRate, min(5, sampleRate/4))},
			DataDir:      filepath.Join(dir, c.ID),
			AgentVersion: version,
			DriftWindow:  -1, // load, not monitoring, is simulated
			Link:         mqttlink.Options{Password: c.Secret},
			Logger:       cfg.Logger.With("device", c.ID),
		})
		if err != nil {
			return simSummary{}, fmt.Errorf("device %s: %w", c.ID, err)
		}
		devices = append(devices, d)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(runCtx)
	for _, d := range devices {
		g.Go(func() error { return d.Run(gctx) })
	}
	start := time.Now()
	var lags []time.Duration
	connected := make([]bool, len(devices))
	sample := func() {
		now := time.Now()
		for i, d := range devices {
			s := d.Agent.Stats()
			connected[i] = connected[i] || s.Connected
			if s.Buffered > 0 && !s.Oldest.IsZero() {
				lags = append(lags, now.Sub(s.Oldest))
			} else {
				lags = append(lags, 0)
			}
		}
	}
	// Produce for Duration, sampling the oldest unacked result's age.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	produceEnd := time.After(cfg.Duration)
produce:
	for {
		select {
		case <-ctx.Done():
			break produce
		case <-gctx.Done():
			break produce
		case <-produceEnd:
			break produce
		case <-tick.C:
			sample()
		}
	}
	elapsed := time.Since(start)
	cutoff := make([]uint64, len(devices))
	var sum simSummary
	for i, d := range devices {
		cutoff[i] = d.Agent.Stats().LastSeq
		sum.Produced += cutoff[i]
	}
	// Drain: the devices keep running (a real agent does not stop producing), until every
	// result produced by the cutoff is acked.
	deadline := time.Now().Add(cfg.Drain)
	for {
		var acked uint64
		for i, d := range devices {
			acked += min(d.Agent.Stats().AckedSeq, cutoff[i])
		}
		sum.Acked = acked
		if acked == sum.Produced || time.Now().After(deadline) || ctx.Err() != nil || gctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return simSummary{}, err
	}
	sum.Mode, sum.Devices, sum.Seconds = "agents", len(devices), elapsed.Seconds()
	for _, c := range connected {
		if c {
			sum.Connected++
		}
	}
	sum.Unacked = sum.Produced - sum.Acked
	sum.LagKind = "oldest unacked result's age per device, sampled every 250 ms"
	fillLag(&sum, lags)
	return sum, nil
}

func fillLag(sum *simSummary, lags []time.Duration) {
	if sum.Seconds > 0 {
		sum.PerSecond = float64(sum.Acked) / sum.Seconds
	}
	sum.LagSamples = len(lags)
	if len(lags) == 0 {
		return
	}
	slices.Sort(lags)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(lags)))) - 1
		return float64(lags[max(i, 0)]) / float64(time.Millisecond)
	}
	sum.LagP50Ms, sum.LagP99Ms, sum.LagMaxMs = q(0.50), q(0.99), q(1)
}

func printSimSummary(out io.Writer, s simSummary, asJSON bool) {
	if asJSON {
		data, _ := json.MarshalIndent(s, "", "  ")
		fmt.Fprintln(out, string(data))
		return
	}
	fmt.Fprintf(out, "devices:      %d (%s), %d connected\n", s.Devices, s.Mode, s.Connected)
	fmt.Fprintf(out, "produced:     %d results in %.1f s\n", s.Produced, s.Seconds)
	fmt.Fprintf(out, "acked:        %d (%d unacked), %.0f results/s\n", s.Acked, s.Unacked, s.PerSecond)
	if s.AckedSeconds > 0 {
		fmt.Fprintf(out, "sustained:    %.0f results/s (last ack %.1f s after the start)\n", s.Sustained, s.AckedSeconds)
	}
	fmt.Fprintf(out, "ack lag:      p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d samples: %s)\n", s.LagP50Ms, s.LagP99Ms, s.LagMaxMs, s.LagSamples, s.LagKind)
}

// lagLog collects lag samples from many goroutines.
type lagLog struct {
	mu   sync.Mutex
	lags []time.Duration
}

func (l *lagLog) add(ds ...time.Duration) {
	l.mu.Lock()
	l.lags = append(l.lags, ds...)
	l.mu.Unlock()
}
