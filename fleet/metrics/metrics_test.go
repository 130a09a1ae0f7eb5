package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/monitor"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// table is a fixed fleet: the collector's input seam, so the cap and the arithmetic can be
// checked exactly. The real controller is scraped end to end in cmd/outpost's dashboard test.
type table struct {
	devs  []fleet.DeviceStatus
	stats fleet.Stats
}

func (t table) Devices() []fleet.DeviceStatus { return t.devs }
func (t table) Stats() fleet.Stats            { return t.stats }
func (t table) Connected() bool               { return true }

type rollouts []fleet.Rollout

func (r rollouts) List() []fleet.Rollout { return r }

func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics = %d: %s", rec.Code, rec.Body)
	}
	fams, err := Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// Parse reads the Prometheus text format.
func Parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("metric %s missing", name)
	}
	for _, m := range f.Metric {
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("metric %s%v missing", name, labels)
	return 0
}

func devices(n int) []fleet.DeviceStatus {
	out := make([]fleet.DeviceStatus, n)
	for i := range out {
		out[i] = fleet.DeviceStatus{ID: fmt.Sprintf("dev-%04d", i), Online: i%2 == 0, InferencesPerS: float64(i), LatencyP99Ms: 20, Buffered: uint64(i), ResultsReceived: 7}
	}
	return out
}

func TestCollector(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := fleet.Stats{Stored: 100, Duplicates: 3, Malformed: 2, AcksSent: 9, QueueMessages: 4, QueueBytes: 400, NewestResult: now.Add(-1500 * time.Millisecond)}
	st.IngestLatency[0], st.IngestLatency[3], st.IngestLatency[len(fleet.IngestLatencyBuckets)] = 1, 2, 1
	st.IngestLatencySum = 20.5
	ros := rollouts{
		{State: fleet.RolloutRunning, Waves: []fleet.Wave{{Devices: []fleet.RolloutDevice{{Outcome: fleet.OutcomeSucceeded}, {Outcome: ""}, {Outcome: "bogus"}}}}},
		{State: fleet.RolloutCompleted}, {State: "unknown-state"},
	}
	tests := []struct {
		name      string
		n, max    int
		wantSerie int
	}{
		{"under cap", 5, 0, 5},
		{"capped", 30, 10, 10},
		{"none", 4, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fams := scrape(t, Handler(Options{Fleet: table{devices(tt.n), st}, Rollouts: ros, MaxDevices: tt.max, Now: func() time.Time { return now }}))
			if got := value(t, fams, "outpost_devices"); got != float64(tt.n) {
				t.Errorf("devices = %v", got)
			}
			if got := value(t, fams, "outpost_devices_online"); got != float64((tt.n+1)/2) {
				t.Errorf("online = %v", got)
			}
			for name, want := range map[string]float64{"outpost_results_stored_total": 100, "outpost_results_duplicate_total": 3,
				"outpost_messages_malformed_total": 2, "outpost_acks_sent_total": 9, "outpost_ingest_queue_messages": 4,
				"outpost_ingest_queue_bytes": 400, "outpost_ingest_lag_seconds": 1.5, "outpost_ingest_latency_seconds": 4,
				"outpost_device_series_dropped": float64(tt.n - tt.wantSerie)} {
				if got := value(t, fams, name); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			h := fams["outpost_ingest_latency_seconds"].Metric[0].Histogram
			if h.GetSampleSum() != 20.5 || h.Bucket[0].GetCumulativeCount() != 1 || h.Bucket[3].GetCumulativeCount() != 3 || h.Bucket[len(fleet.IngestLatencyBuckets)-1].GetCumulativeCount() != 3 {
				t.Errorf("latency histogram = %v", h)
			}
			for _, name := range []string{"outpost_device_online", "outpost_device_inferences_per_second", "outpost_device_latency_p99_seconds", "outpost_device_buffered_results", "outpost_device_results_stored_total"} {
				got := 0
				if f := fams[name]; f != nil {
					got = len(f.Metric)
				}
				if got != tt.wantSerie {
					t.Errorf("%s: %d series, want %d", name, got, tt.wantSerie)
				}
			}
			if tt.wantSerie > 0 {
				if got := value(t, fams, "outpost_device_latency_p99_seconds", "device", "dev-0000"); got != 0.02 {
					t.Errorf("p99 = %v, want 0.02", got)
				}
				if got := value(t, fams, "outpost_device_inferences_per_second", "device", "dev-0003"); tt.wantSerie > 3 && got != 3 {
					t.Errorf("rate = %v", got)
				}
			}
			if got := len(fams["outpost_rollouts"].Metric); got != 5 {
				t.Errorf("rollout states: %d series, want the 5 known", got)
			}
			if value(t, fams, "outpost_rollouts", "state", "running") != 1 || value(t, fams, "outpost_rollout_devices", "outcome", "succeeded") != 1 || value(t, fams, "outpost_rollout_devices", "outcome", "pending") != 1 {
				t.Error("rollout figures wrong")
			}
		})
	}
}

// TestGrafanaDashboard checks docs/grafana/outpost.json is valid JSON and that every PromQL
// expression in it names only metrics this package exports.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("../../docs/grafana/outpost.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("outpost.json: %v", err)
	}
	st := fleet.Stats{NewestResult: time.Now()}
	drift := driftState{monitor.NewAlerter([]fleet.DriftRecord{window("dev-0000", "vib", "1", 1, "accel")}, 0), monitor.Stats{}}
	fams := scrape(t, Handler(Options{Fleet: table{devices(2), st}, Rollouts: rollouts{}, Drift: drift}))
	known := map[string]bool{}
	for name, f := range fams {
		known[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			known[name+"_bucket"], known[name+"_sum"], known[name+"_count"] = true, true, true
		}
	}
	ident := regexp.MustCompile(`\b(outpost_[a-z0-9_]+|process_[a-z0-9_]+|go_[a-z0-9_]+)`)
	exprs := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs++
			names := ident.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: expr %q names no metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				if !known[n] {
					t.Errorf("panel %q: expr %q: metric %s is not exported", p.Title, tg.Expr, n)
				}
			}
		}
	}
	if exprs < 8 || !strings.Contains(dash.Title, "Outpost") {
		t.Errorf("dashboard %q has %d expressions, want at least 8", dash.Title, exprs)
	}
}

// driftState is the monitor's state seam, filled by a real monitor.Alerter from records.
type driftState struct {
	a  *monitor.Alerter
	st monitor.Stats
}

func (d driftState) Drifting() []monitor.DeviceDrift { return d.a.State() }
func (d driftState) Stats() monitor.Stats            { return d.st }

// window is one drift record: device dev's window w of model name@ver, received at minute w,
// drifting on the given features (none: clean).
func window(dev, name, ver string, w uint64, drifted ...string) fleet.DriftRecord {
	at := time.Date(2026, 3, 1, 0, int(w), 0, 0, time.UTC)
	var fs []wire.DriftFeature
	for _, f := range append([]string{"clean"}, drifted...) {
		df := wire.DriftFeature{Name: f, Role: wire.DriftInput, Count: 1000, Scored: true}
		if f != "clean" {
			df.Drifted = []string{wire.ScorePSI}
		}
		fs = append(fs, df)
	}
	return fleet.DriftRecord{Received: at, Summary: wire.DriftSummary{V: 1, Device: dev, Model: wire.ModelRef{Name: name, Version: ver},
		Window: w, Start: at.Add(-time.Minute), End: at, Features: fs}}
}

// TestDriftMetrics: per model version, devices reporting and drifting count each device once,
// under the version it last reported; features drifting are counted per model; the per-device
// flag stays within the device cap; transitions and published alerts are counters; the model
// cap holds.
func TestDriftMetrics(t *testing.T) {
	recs := []fleet.DriftRecord{
		window("a", "vib", "1", 1, "accel"),
		window("b", "vib", "1", 1),
		window("c", "vib", "1", 1, "accel"), // c moved to version 2 while drifting
		window("c", "vib", "2", 2),
		window("d", "vib", "2", 1, "accel", "temp"),
	}
	st := monitor.Stats{Started: 3, Recovered: 1, Alerts: 4}
	devs := []fleet.DeviceStatus{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}
	fams := scrape(t, Handler(Options{Fleet: table{devs, fleet.Stats{}}, Drift: driftState{monitor.NewAlerter(recs, 0), st}, MaxDevices: 3}))
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"outpost_drift_devices", []string{"model", "vib@1"}, 2},
		{"outpost_drift_devices_drifting", []string{"model", "vib@1"}, 1},
		{"outpost_drift_devices", []string{"model", "vib@2"}, 2},
		{"outpost_drift_devices_drifting", []string{"model", "vib@2"}, 1},
		{"outpost_drift_feature_devices", []string{"model", "vib@1", "feature", "accel"}, 1},
		{"outpost_drift_feature_devices", []string{"model", "vib@2", "feature", "accel"}, 1},
		{"outpost_drift_feature_devices", []string{"model", "vib@2", "feature", "temp"}, 1},
		{"outpost_drift_transitions_total", []string{"state", "started"}, 3},
		{"outpost_drift_transitions_total", []string{"state", "recovered"}, 1},
		{"outpost_drift_alerts_published_total", nil, 4},
		{"outpost_drift_series_dropped", nil, 0},
		{"outpost_device_drifting", []string{"device", "a"}, 1},
		{"outpost_device_drifting", []string{"device", "b"}, 0},
		{"outpost_device_drifting", []string{"device", "c"}, 0},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := len(fams["outpost_device_drifting"].Metric); n != 3 {
		t.Errorf("outpost_device_drifting: %d series, want 3 (the device cap)", n)
	}
	if n := len(fams["outpost_drift_feature_devices"].Metric); n != 3 {
		t.Errorf("outpost_drift_feature_devices: %d series, want 3", n)
	}

	// More model versions than the cap: the first MaxDriftModels by name are kept.
	recs = nil
	for i := range MaxDriftModels + 6 {
		recs = append(recs, window(fmt.Sprintf("dev-%03d", i), fmt.Sprintf("m%03d", i), "1", 1, "x"))
	}
	fams = scrape(t, Handler(Options{Fleet: table{}, Drift: driftState{monitor.NewAlerter(recs, 0), monitor.Stats{}}}))
	if n := len(fams["outpost_drift_devices_drifting"].Metric); n != MaxDriftModels {
		t.Errorf("%d model series, want %d", n, MaxDriftModels)
	}
	if got := value(t, fams, "outpost_drift_series_dropped"); got != 6 {
		t.Errorf("series dropped = %v, want 6 (the models beyond the cap)", got)
	}
	if n := len(fams["outpost_drift_feature_devices"].Metric); n != MaxDriftModels {
		t.Errorf("%d model/feature series, want %d (none of a model left out)", n, MaxDriftModels)
	}
}
