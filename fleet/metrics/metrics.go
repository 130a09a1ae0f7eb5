// Package metrics exposes the controller on Prometheus' /metrics. One collector reads the
// controller's live table and counters at scrape time, so ingest pays nothing per message and
// the figures are never staler than the scrape. Per-device series are capped (Options.MaxDevices)
// so a large fleet cannot blow up the scraper's cardinality: beyond the cap only fleet-wide
// series are kept, and outpost_device_series_dropped says how many devices were left out.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outpost-ml/outpost/fleet"
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

// DefaultMaxDevices is the default cap on devices with per-device series.
const DefaultMaxDevices = 1000

// Options configure New.
type Options struct {
	Fleet    Fleet
	Rollouts Rollouts // nil: no rollout series
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
)

// Describe sends every descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dDevices, dDevicesOnline, dConnected, dMessages, dResults, dBatches,
		dDuplicates, dDropped, dRejected, dOverQuota, dMalformed, dOverflowed, dCommits, dAcks, dAckErrors,
		dQueueMessages, dQueueBytes, dLag, dLatency, dSeriesDropped, dDevOnline, dDevRate, dDevP99, dDevBuffered,
		dDevStored, dRollouts, dRolloutDevices} {
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

	limit := min(max(c.o.MaxDevices, 0), len(devs))
	gauge(dSeriesDropped, float64(len(devs)-limit))
	for _, d := range devs[:limit] { // Devices() is ordered by id: the cap is stable
		gauge(dDevOnline, b2f(d.Online), d.ID)
		gauge(dDevRate, d.InferencesPerS, d.ID)
		gauge(dDevP99, d.LatencyP99Ms/1000, d.ID)
		gauge(dDevBuffered, float64(d.Buffered), d.ID)
		ch <- prometheus.MustNewConstMetric(dDevStored, prometheus.CounterValue, float64(d.ResultsReceived), d.ID)
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
