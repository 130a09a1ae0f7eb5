package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/agent/assemble"
	"github.com/outpost-ml/outpost/agent/sensor/simsensor"
	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/sample"
	"github.com/outpost-ml/outpost/models/sim"
)

func init() { register(newDemoCmd) }

type demoConfig struct {
	Devices        int
	Duration       time.Duration
	Listen         string
	DataDir        string
	Model          string
	HealthInterval time.Duration
	FaultAfter     time.Duration
	Refresh        time.Duration
	// RolloutAfter starts the rollout of the sample model's next version (demo_updates.go)
	// after this long; 0 never. Probation is how long each device watches it before
	// committing.
	RolloutAfter time.Duration
	Probation    time.Duration
}

// defaultDemoModel is the sample model the demo deploys unless --model says otherwise.
const defaultDemoModel = "vibration-anomaly-i8"

func newDemoCmd() *cobra.Command {
	cfg := demoConfig{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a controller and simulated devices on this machine, with a live fleet table",
		Long: `demo starts, in one process, the fleet controller with its embedded MQTT broker and
bbolt state, and N agents (the real agent code, each with its own bbolt buffer) reading a
simulated vibration sensor, running the sample anomaly model in the pure-Go TFLite
interpreter and syncing results over MQTT. A fleet table, as the controller sees it, is
printed every second. With a sample model the devices run it as a package signed with the
DEMO key and verified against a TUF repository in the data directory, and after
--rollout-after the demo pushes version ` + demoUpdate + ` and rolls it out, canary first: the table
shows each device's version change. Ctrl-C stops everything cleanly; data directories stay consistent and
a later run continues where this one stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cfg)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Devices, "devices", 3, "number of simulated devices (1 to 100)")
	f.DurationVar(&cfg.Duration, "duration", 0, "stop after this long and exit 0 (0: run until Ctrl-C)")
	f.StringVar(&cfg.Listen, "listen", broker.DefaultAddr, "embedded MQTT broker address; a free port is used if this one is taken")
	f.StringVar(&cfg.DataDir, "data-dir", "outpost-demo-data", "directory for the controller's and the devices' data")
	f.StringVar(&cfg.Model, "model", defaultDemoModel, "sample model name (see models/sample) or path to a .tflite file with its .json manifest beside it")
	f.DurationVar(&cfg.HealthInterval, "health-interval", time.Second, "how often each device publishes health")
	f.DurationVar(&cfg.FaultAfter, "fault-after", 30*time.Second, "inject a bearing fault into the last device after this long (0: never)")
	f.DurationVar(&cfg.Refresh, "refresh", time.Second, "how often the fleet table is redrawn")
	f.DurationVar(&cfg.RolloutAfter, "rollout-after", 10*time.Second, "roll out version "+demoUpdate+" of the sample model after this long (0: never)")
	f.DurationVar(&cfg.Probation, "probation", 10*time.Second, "how long each device watches the new version before committing it")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, cfg demoConfig) error {
	if cfg.Devices < 1 || cfg.Devices > 100 {
		return fmt.Errorf("--devices %d: must be 1 to 100", cfg.Devices)
	}
	if cfg.Duration < 0 || cfg.Refresh <= 0 || cfg.HealthInterval <= 0 {
		return errors.New("--duration must be ≥ 0; --refresh and --health-interval must be > 0")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	modelPath, err := demoModel(cfg.DataDir, cfg.Model)
	if err != nil {
		return err
	}
	// The simulated sensor samples at the rate the model was trained for.
	rate, err := modelRate(modelPath)
	if err != nil {
		return err
	}

	// Everything logs to a file: the terminal belongs to the fleet table.
	logPath := filepath.Join(cfg.DataDir, "demo.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, nil))

	// A sample model runs as a signed package and can be updated; a .tflite of the user's
	// runs unsigned, without updates.
	scfg := serveConfig{Listen: cfg.Listen, DataDir: filepath.Join(cfg.DataDir, "controller"), Logger: log}
	var upd *demoUpdates
	if !strings.HasSuffix(cfg.Model, ".tflite") {
		if upd, err = setupDemoUpdates(cfg.DataDir, scfg.DataDir, cfg.Model); err != nil {
			return err
		}
		scfg.TargetsKeyFiles, scfg.PackageKeys = []string{upd.targetsKey}, []string{upd.pubFile}
	}
	srv, err := newFleetServer(scfg)
	if err != nil {
		return err
	}
	where := srv.Broker.Addr()
	if srv.Broker.FellBack() {
		fmt.Fprintf(out, "MQTT broker: %s is taken, listening on %s instead\n", cfg.Listen, where)
	} else {
		fmt.Fprintf(out, "MQTT broker: listening on %s\n", where)
	}
	fmt.Fprintf(out, "watch it:    mosquitto_sub -h %s -p %s -t 'outpost/#' -v\n", hostOf(where), portOf(where))
	fmt.Fprintf(out, "data:        %s (log: %s)\n", cfg.DataDir, logPath)

	devices := make([]*assemble.Device, 0, cfg.Devices)
	defer func() {
		for _, d := range devices {
			d.Close() // no-op for devices that ran
		}
	}()
	for i := 1; i <= cfg.Devices; i++ {
		id := fmt.Sprintf("dev-%d", i)
		dc := assemble.Config{
			DeviceID:       id,
			Broker:         srv.BrokerURL,
			ModelPath:      modelPath,
			AllowUnsigned:  true, // the user's own .tflite
			Sensors:        []string{fmt.Sprintf("%s?seed=%d&rate=%g", simsensor.KindVibration, i, rate)},
			DataDir:        filepath.Join(cfg.DataDir, id),
			HealthInterval: cfg.HealthInterval,
			AgentVersion:   version,
			Logger:         log.With("device", id),
		}
		if upd != nil {
			dc.ModelPath, dc.AllowUnsigned, dc.PackageKey = upd.pkgs["1.0.0"], false, upd.pub
			dc.Update.TrustRoot = upd.root
		}
		d, err := assemble.New(dc)
		if err != nil {
			return fmt.Errorf("device %s: %w", id, err)
		}
		devices = append(devices, d)
	}

	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}

	// The controller outlives the devices so that their last results and "offline" reach it.
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSrv()
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Run(srvCtx) }()

	devs, devCtx := errgroup.WithContext(runCtx)
	for _, d := range devices {
		devs.Go(func() error { return d.Run(devCtx) })
	}
	outcomes := newOutcomes(srv.Store)
	devs.Go(func() error {
		return drawLoop(devCtx, out, srv, cfg, devices, upd, outcomes)
	})
	devErr := devs.Wait()
	if errors.Is(devErr, context.Canceled) || errors.Is(devErr, context.DeadlineExceeded) {
		devErr = nil
	}

	// Give the controller a moment to store the results the devices flushed on the way out.
	settle(srv.Controller, devices, 3*time.Second)
	fmt.Fprintln(out, "\nfinal state:")
	outcomes.update(context.WithoutCancel(ctx)) // the controller still runs: its store is open
	printTable(out, srv.Controller.Devices(), outcomes, false)
	stopSrv()
	if err := <-srvErr; err != nil && !errors.Is(err, context.Canceled) {
		return errors.Join(devErr, fmt.Errorf("controller: %w", err))
	}
	if devErr != nil {
		return devErr
	}
	fmt.Fprintln(out, "stopped cleanly; data kept in", cfg.DataDir)
	return nil
}

// drawLoop redraws the fleet table until ctx ends, and injects the demo fault on schedule.
// With upd it starts the rollout on schedule too, and shows its waves under the table.
func drawLoop(ctx context.Context, out io.Writer, srv *fleetServer, cfg demoConfig, devices []*assemble.Device, upd *demoUpdates, outcomes *outcomes) error {
	screen := newLiveScreen(out)
	tick := time.NewTicker(cfg.Refresh)
	defer tick.Stop()
	start := time.Now()
	faulted, rolled := false, false
	var rolloutID, note string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if !faulted && cfg.FaultAfter > 0 && time.Since(start) >= cfg.FaultAfter {
			if v, ok := devices[len(devices)-1].Source.(*simsensor.Vibration); ok {
				v.SetFault(sim.FaultBearing)
				faulted = true
			}
		}
		if upd != nil && !rolled && cfg.RolloutAfter > 0 && time.Since(start) >= cfg.RolloutAfter {
			rolloutID, note = upd.start(ctx, srv, len(devices), cfg.Probation)
			rolled = true
		}
		var frame strings.Builder
		if screen.tty {
			fmt.Fprintf(&frame, "Outpost demo: %d devices, up %s, Ctrl-C stops\n\n", len(devices), time.Since(start).Truncate(time.Second))
		}
		outcomes.update(ctx)
		printTable(&frame, srv.Controller.Devices(), outcomes, faulted)
		if rolloutID != "" {
			printRollout(&frame, srv.Engine, rolloutID)
		} else if note != "" {
			fmt.Fprintf(&frame, "\nrollout: %s\n", note)
		}
		screen.draw(fmt.Sprintf("[%s]", time.Since(start).Truncate(time.Second)), frame.String())
	}
}

// settle waits until the controller has stored everything each device produced and has seen
// every device go offline, or until the timeout; it only shortens the final summary's lag.
func settle(ctl *fleet.Controller, devices []*assemble.Device, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st := map[string]uint64{}
		done := true
		for _, s := range ctl.Devices() {
			st[s.ID] = s.Acked
			done = done && !s.Online
		}
		for _, d := range devices {
			if s := d.Agent.Stats(); st[s.Device] < s.LastSeq {
				done = false
			}
		}
		if done {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// printTable writes the fleet table; with outcomes, each device's event count and latest
// outcome.
func printTable(out io.Writer, rows []fleet.DeviceStatus, outcomes *outcomes, faulted bool) {
	slices.SortFunc(rows, func(a, b fleet.DeviceStatus) int { return strings.Compare(a.ID, b.ID) })
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "DEVICE\tONLINE\tMODEL\tINFER/S\tP50 MS\tP99 MS\tBUFFERED\tRECEIVED\tEVENTS\tLATEST OUTCOME\tLAST SEEN\tUPDATE\t")
	for _, r := range rows {
		online := "no"
		if r.Online {
			online = "yes"
		}
		seen := "-"
		if !r.LastSeen.IsZero() {
			seen = time.Since(r.LastSeen).Truncate(100*time.Millisecond).String() + " ago"
		}
		update := "-"
		if h := r.Health; h != nil && h.Update != nil {
			update = h.Update.Phase + " " + h.Update.Target.Version
		}
		events, outcome := "-", "-"
		if o, ok := outcomes.get(r.ID); ok {
			events = fmt.Sprint(o.events)
			if o.latest != nil {
				outcome = fmt.Sprintf("%s %.3f", cmp.Or(o.latest.Label, "score"), o.latest.Score)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%.1f\t%.3f\t%.3f\t%d\t%d\t%s\t%s\t%s\t%s\t\n",
			r.ID, online, r.Model, r.InferencesPerS, r.LatencyP50Ms, r.LatencyP99Ms, r.Buffered, r.ResultsReceived, events, outcome, seen, update)
	}
	w.Flush()
	if faulted {
		fmt.Fprintln(out, "\n(a bearing fault has been injected into the last device)")
	}
}

// demoModel returns the path of the model to deploy: a .tflite path as given, or a sample
// model written from the binary's embedded copy into dataDir/models.
func demoModel(dataDir, model string) (string, error) {
	if strings.HasSuffix(model, ".tflite") {
		if _, err := os.Stat(model); err != nil {
			return "", fmt.Errorf("model: %w", err)
		}
		return model, nil
	}
	dir := filepath.Join(dataDir, "models")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("model dir: %w", err)
	}
	for _, ext := range []string{".tflite", ".json"} {
		data, err := fs.ReadFile(sample.FS, model+ext)
		if err != nil {
			return "", fmt.Errorf("sample model %q: not found (have: %s)", model, strings.Join(sampleNames(), ", "))
		}
		if err := os.WriteFile(filepath.Join(dir, model+ext), data, 0o644); err != nil {
			return "", fmt.Errorf("write sample model: %w", err)
		}
	}
	return filepath.Join(dir, model+".tflite"), nil
}

// modelRate reads the sample rate from the model's manifest (beside it, .json for .tflite).
func modelRate(modelPath string) (float64, error) {
	path := tfpredict.ManifestPath(modelPath)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("manifest: %w", err)
	}
	m, err := bundle.DecodeManifest(data)
	if err != nil {
		return 0, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m.Input.SampleRateHz, nil
}

func sampleNames() []string {
	names, _ := fs.Glob(sample.FS, "*.tflite")
	for i, n := range names {
		names[i] = strings.TrimSuffix(n, ".tflite")
	}
	return names
}

func hostOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

func portOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i+1:]
	}
	return ""
}
