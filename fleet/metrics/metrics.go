// Package metrics exposes the controller on Prometheus' /metrics. One collector reads the
// controller's live table and counters at scrape time, so ingest pays nothing per message and
// the figures are never staler than the scrape. Per-device series are capped (Options.MaxDevices)
// so a large fleet cannot blow up the scraper's cardinality: beyond the cap only fleet-wide
// series are kept, and outpost_device_series_dropped says how many devices were left out.
package metrics

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/monitor"
)

// Fleet is what the collector reads: fleet.Controller satisfies it.
type Fleet interface {
	Devices() []fleet.DeviceStatus
	Stats() fleet.Stats
	Connected() bool
}

// Rollouts lists rollouts (fleet/rollout.Engine satisfies it); optional.
type Rollouts interface {
	List() []fleet.Rollout
}

// Drift is the monitor's drift state and counters (fleet/monitor.Service satisfies it);
// optional.
type Drift interface {
	Drifting() []monitor.DeviceDrift
	Stats() monitor.Stats
}

// DefaultMaxDevices is the default cap on devices with per-device series.
const DefaultMaxDevices = 1000

// Caps on the drift series. Model names and versions come from the registry, feature names
// from the model's manifest, but both arrive in device messages, so they are capped here too:
// beyond MaxDriftModels model versions or MaxDriftFeatures (model, feature) pairs, series are
// left out and counted in outpost_drift_series_dropped.
const (
	MaxDriftModels   = 64
	MaxDriftFeatures = 256
)

// Options configure New.
type Options struct {
	Fleet    Fleet
	Rollouts Rollouts // nil: no rollout series
	Drift    Drift    // nil: no drift series
	// MaxDevices caps the devices that get per-device series (the first by id); 0 means
	// DefaultMaxDevices, negative means none.
	MaxDevices int
	// Now is the clock for ingest lag; nil is time.Now.
	Now func() time.Time
}

// Handler returns the /metrics handler: the fleet collector plus Go runtime and process
// metrics, on a registry of its own (nothing registered globally).
func Handler(o Options) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(o), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Collector is the fleet collector.
type Collector struct {
	o Options
}

// New returns the fleet collector.
func New(o Options) *Collector {
	if o.MaxDevices == 0 {
		o.MaxDevices = DefaultMaxDevices
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Collector{o: o}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("outpost_"+name, help, labels, nil)
}

// The metric set; docs/dashboard.md lists it and docs/grafana/outpost.json uses it.
var (
	dDevices        = desc("devices", "Devices known to the controller.")
	dDevicesOnline  = desc("devices_online", "Devices whose last state message said online.")
	dConnected      = desc("controller_connected", "1 when the controller is connected and subscribed to the broker.")
	dMessages       = desc("messages_total", "Device messages taken from the broker.")
	dResults        = desc("results_stored_total", "Results newly stored (rate() of it is results/s).")
	dBatches        = desc("result_batches_total", "Result batches stored.")
	dDuplicates     = desc("results_duplicate_total", "Results received again and ignored.")
	dDropped        = desc("results_dropped_total", "Result seqs devices declared dropped.")
	dRejected       = desc("results_rejected_total", "Results rejected one by one.")
	dOverQuota      = desc("results_over_quota_total", "Results refused because their device holds its quota.")
	dMalformed      = desc("messages_malformed_total", "Messages rejected whole (bad JSON, version, topic, size).")
	dOverflowed     = desc("ingest_overflowed_total", "Messages dropped because the ingest queue was full.")
	dCommits        = desc("store_commits_total", "Result transactions committed.")
	dAcks           = desc("acks_sent_total", "Acks handed to the MQTT client.")
	dAckErrors      = desc("ack_errors_total", "Acks the MQTT client reported failed.")
	dQueueMessages  = desc("ingest_queue_messages", "Messages waiting in the ingest queue.")
	dQueueBytes     = desc("ingest_queue_bytes", "Payload bytes waiting in the ingest queue.")
	dLag            = desc("ingest_lag_seconds", "Now minus the newest stored result's time (device clock); absent before the first result.")
	dLatency        = desc("ingest_latency_seconds", "Time from receiving a result batch to committing it.")
	dSeriesDropped  = desc("device_series_dropped", "Devices left without per-device series by the cardinality cap.")
	dDevOnline      = desc("device_online", "1 when the device is online.", "device")
	dDevRate        = desc("device_inferences_per_second", "Inferences per second, from the device's latest health.", "device")
	dDevP99         = desc("device_latency_p99_seconds", "Inference latency p99, from the device's latest health.", "device")
	dDevBuffered    = desc("device_buffered_results", "Results the device holds unacked, from its latest health.", "device")
	dDevStored      = desc("device_results_stored_total", "Distinct results stored for the device.", "device")
	dRollouts       = desc("rollouts", "Rollouts by state.", "state")
	dRolloutDevices = desc("rollout_devices", "Devices of running rollouts by outcome (pending, succeeded, failed, rolled_back).", "outcome")
	dDriftDevices   = desc("drift_devices", "Devices whose current model version (the one they last sent a drift window for) reports drift windows, by model name@version.", "model")
	dDrifting       = desc("drift_devices_drifting", "Of those, devices currently drifting (a drifted window, not yet 2 clean ones), by model name@version.", "model")
	dDriftFeature   = desc("drift_feature_devices", "Devices currently drifting on this feature in their latest drifted window, by model name@version and feature.", "model", "feature")
	dDriftDropped   = desc("drift_series_dropped", "Drift series (model versions, or model and feature pairs) left out by the cardinality caps.")
	dDriftChanges   = desc("drift_transitions_total", "Drift state changes, the edges alerts are raised on: started (drifting) or recovered.", "state")
	dDriftAlerts    = desc("drift_alerts_published_total", "Drift alerts published on outpost/v1/alerts.")
	dDevDrifting    = desc("device_drifting", "1 when the device's current model version is drifting.", "device")
)

// Describe sends every descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dDevices, dDevicesOnline, dConnected, dMessages, dResults, dBatches,
		dDuplicates, dDropped, dRejected, dOverQuota, dMalformed, dOverflowed, dCommits, dAcks, dAckErrors,
		dQueueMessages, dQueueBytes, dLag, dLatency, dSeriesDropped, dDevOnline, dDevRate, dDevP99, dDevBuffered,
		dDevStored, dRollouts, dRolloutDevices, dDriftDevices, dDrifting, dDriftFeature, dDriftDropped, dDriftChanges,
		dDriftAlerts, dDevDrifting} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect reads the controller once and sends every series.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	devs := c.o.Fleet.Devices()
	st := c.o.Fleet.Stats()
	online := 0
	for _, d := range devs {
		if d.Online {
			online++
		}
	}
	gauge(dDevices, float64(len(devs)))
	gauge(dDevicesOnline, float64(online))
	gauge(dConnected, b2f(c.o.Fleet.Connected()))
	counter(dMessages, st.Messages)
	counter(dResults, st.Stored)
	counter(dBatches, st.Batches)
	counter(dDuplicates, st.Duplicates)
	counter(dDropped, st.Dropped)
	counter(dRejected, st.Rejected)
	counter(dOverQuota, st.OverQuota)
	counter(dMalformed, st.Malformed)
	counter(dOverflowed, st.Overflowed)
	counter(dCommits, st.Commits)
	counter(dAcks, st.AcksSent)
	counter(dAckErrors, st.AckErrors)
	gauge(dQueueMessages, float64(st.QueueMessages))
	gauge(dQueueBytes, float64(st.QueueBytes))
	if !st.NewestResult.IsZero() {
		gauge(dLag, max(c.o.Now().Sub(st.NewestResult).Seconds(), 0))
	}
	buckets := make(map[float64]uint64, len(fleet.IngestLatencyBuckets))
	var n uint64
	for i, edge := range fleet.IngestLatencyBuckets {
		n += st.IngestLatency[i]
		buckets[edge] = n
	}
	n += st.IngestLatency[len(fleet.IngestLatencyBuckets)]
	ch <- prometheus.MustNewConstHistogram(dLatency, n, st.IngestLatencySum, buckets)

	var drifting map[string]bool // device → its current model version drifts
	if c.o.Drift != nil {
		drifting = c.collectDrift(ch)
	}
	limit := min(max(c.o.MaxDevices, 0), len(devs))
	gauge(dSeriesDropped, float64(len(devs)-limit))
	for _, d := range devs[:limit] { // Devices() is ordered by id: the cap is stable
		gauge(dDevOnline, b2f(d.Online), d.ID)
		gauge(dDevRate, d.InferencesPerS, d.ID)
		gauge(dDevP99, d.LatencyP99Ms/1000, d.ID)
		gauge(dDevBuffered, float64(d.Buffered), d.ID)
		ch <- prometheus.MustNewConstMetric(dDevStored, prometheus.CounterValue, float64(d.ResultsReceived), d.ID)
		if drifting != nil {
			gauge(dDevDrifting, b2f(drifting[d.ID]), d.ID)
		}
	}

	if c.o.Rollouts == nil {
		return
	}
	states := map[string]int{fleet.RolloutRunning: 0, fleet.RolloutPaused: 0, fleet.RolloutHalted: 0, fleet.RolloutAborted: 0, fleet.RolloutCompleted: 0}
	outcomes := map[string]int{"pending": 0, fleet.OutcomeSucceeded: 0, fleet.OutcomeFailed: 0, fleet.OutcomeRolledBack: 0}
	for _, ro := range c.o.Rollouts.List() {
		if _, ok := states[ro.State]; ok {
			states[ro.State]++
		}
		if ro.State != fleet.RolloutRunning {
			continue
		}
		for _, w := range ro.Waves {
			for _, d := range w.Devices {
				o := d.Outcome
				if o == fleet.OutcomePending {
					o = "pending"
				}
				if _, ok := outcomes[o]; ok { // bounded label set
					outcomes[o]++
				}
			}
		}
	}
	for s, v := range states {
		gauge(dRollouts, float64(v), s)
	}
	for o, v := range outcomes {
		gauge(dRolloutDevices, float64(v), o)
	}
}

// current keeps, per device, the state of the model version it last sent a drift window for:
// a device that moved to another version while drifting must not count as drifting on the
// old one forever (no window of it will ever recover it).
func current(states []monitor.DeviceDrift) []monitor.DeviceDrift {
	latest := map[string]int{}
	for i, d := range states {
		if j, ok := latest[d.Device]; !ok || d.Received.After(states[j].Received) {
			latest[d.Device] = i
		}
	}
	out := make([]monitor.DeviceDrift, 0, len(latest))
	for _, i := range latest {
		out = append(out, states[i])
	}
	return out
}

// collectDrift sends the drift series and returns which devices drift.
func (c *Collector) collectDrift(ch chan<- prometheus.Metric) map[string]bool {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.o.Drift.Stats()
	ch <- prometheus.MustNewConstMetric(dDriftChanges, prometheus.CounterValue, float64(st.Started), "started")
	ch <- prometheus.MustNewConstMetric(dDriftChanges, prometheus.CounterValue, float64(st.Recovered), "recovered")
	ch <- prometheus.MustNewConstMetric(dDriftAlerts, prometheus.CounterValue, float64(st.Alerts))

	type counts struct{ devices, drifting int }
	type pair struct{ model, feature string }
	models := map[string]*counts{}
	features := map[pair]int{}
	drifting := map[string]bool{}
	for _, d := range current(c.o.Drift.Drifting()) {
		m := d.Model.String()
		if models[m] == nil {
			models[m] = &counts{}
		}
		models[m].devices++
		if !d.Drifting {
			continue
		}
		drifting[d.Device] = true
		models[m].drifting++
		for _, f := range d.Features {
			features[pair{m, f.Name}]++
		}
	}
	// The caps keep the first by name, so the series kept do not change from scrape to scrape.
	names := make([]string, 0, len(models))
	for m := range models {
		names = append(names, m)
	}
	slices.Sort(names)
	dropped := max(len(names)-MaxDriftModels, 0)
	kept := map[string]bool{}
	for _, m := range names[:min(len(names), MaxDriftModels)] {
		kept[m] = true
		gauge(dDriftDevices, float64(models[m].devices), m)
		gauge(dDrifting, float64(models[m].drifting), m)
	}
	pairs := make([]pair, 0, len(features))
	for p := range features {
		if kept[p.model] { // a model left out is counted once, not per feature
			pairs = append(pairs, p)
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int { return cmp.Or(cmp.Compare(a.model, b.model), cmp.Compare(a.feature, b.feature)) })
	dropped += max(len(pairs)-MaxDriftFeatures, 0)
	for _, p := range pairs[:min(len(pairs), MaxDriftFeatures)] {
		gauge(dDriftFeature, float64(features[p]), p.model, p.feature)
	}
	gauge(dDriftDropped, float64(dropped))
	return drifting
}
