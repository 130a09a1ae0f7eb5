// Package wire is the MQTT contract between outpost-agent and the fleet controller: topic names
// and the JSON messages on them. Both sides import it, so it depends on the standard library only.
// docs/protocol.md is the prose version of this file; keep the two in step.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SchemaVersion is carried as "v" in every message. A receiver rejects messages whose major
// version it does not know, so the field is checked by Decode.
const SchemaVersion = 1

// Root is the topic prefix; devices publish under Root/d/{id}/ and receive under Root/c/{id}/.
const Root = "outpost/v1"

// Device-published topic leaves (outpost/v1/d/{device}/{leaf}).
const (
	LeafState   = "state"   // retained, QoS 1: State; "offline" is also the last-will
	LeafHealth  = "health"  // retained, QoS 1: Health
	LeafResults = "results" // QoS 1: ResultBatch
	LeafDrift   = "drift"   // QoS 1: DriftSummary (drift.go); the controller stores each window once
	LeafEvents  = "events"  // QoS 1: Event (update transitions, alerts, errors)
	LeafFetch   = "fetch"   // QoS 1: FetchRequest for update metadata and package blocks

	// LeafResultsZ carries a ResultBatch compressed with gzip (RFC 1952), QoS 1. The agent uses
	// it for batches large enough to gain from compression; receivers accept both leaves.
	LeafResultsZ = "results.z"
)

// Controller-published topic leaves (outpost/v1/c/{device}/{leaf}).
const (
	LeafAck     = "ack"     // QoS 1: Ack
	LeafDesired = "desired" // retained, QoS 1: Desired model and update settings
	LeafChunk   = "chunk"   // QoS 1: binary Block frames answering FetchRequests
	// LeafDriftAck carries DriftAck (QoS 1): the drift summaries the controller stored.
	LeafDriftAck = "drift-ack"
)

// DeviceTopic is the topic a device publishes leaf on.
func DeviceTopic(device, leaf string) string { return Root + "/d/" + device + "/" + leaf }

// ControllerTopic is the topic the controller publishes leaf on for device.
func ControllerTopic(device, leaf string) string { return Root + "/c/" + device + "/" + leaf }

// DeviceWildcard matches every device-published topic with the given leaf ("+" for all leaves
// is not used: subscribe per leaf so handlers stay typed).
func DeviceWildcard(leaf string) string { return Root + "/d/+/" + leaf }

// ParseDeviceTopic splits outpost/v1/d/{device}/{leaf}; ok is false for any other shape.
func ParseDeviceTopic(topic string) (device, leaf string, ok bool) {
	rest, found := strings.CutPrefix(topic, Root+"/d/")
	if !found {
		return "", "", false
	}
	device, leaf, found = strings.Cut(rest, "/")
	if !found || ValidDeviceID(device) != nil || leaf == "" || strings.Contains(leaf, "/") {
		return "", "", false
	}
	return device, leaf, true
}

// ValidDeviceID reports whether id can be used as a device id: 1–64 characters of
// [A-Za-z0-9._-]. MQTT wildcards and separators can never appear in one.
func ValidDeviceID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("device id %q: must be 1 to 64 characters", id)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("device id %q: character %q not allowed (use A-Z a-z 0-9 . _ -)", id, r)
		}
	}
	return nil
}

// Online states carried by State.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// State is the retained device presence message. The agent publishes online after connecting
// and registers offline as its MQTT last-will, so the broker announces a lost device.
type State struct {
	V      int    `json:"v"`
	Device string `json:"device"`
	State  string `json:"state"`
	// Time is when the device said it; absent in the last-will, which the broker may deliver
	// long after it was registered (the controller stamps the time it saw the message).
	Time time.Time `json:"ts,omitzero"`
}

// ModelRef names the model a device runs.
type ModelRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256,omitempty"`
}

// String formats the reference as name@version.
func (m ModelRef) String() string {
	if m.Name == "" {
		return "-"
	}
	return m.Name + "@" + m.Version
}

// Health is the retained, human-readable health snapshot a device publishes periodically.
// Every figure is derived from counters at the time of the report, never stored.
type Health struct {
	V               int       `json:"v"`
	Device          string    `json:"device"`
	Time            time.Time `json:"ts"`
	AgentVersion    string    `json:"agent_version"`
	Model           ModelRef  `json:"model"`
	UptimeSeconds   float64   `json:"uptime_s"`
	Inferences      uint64    `json:"inferences"`        // since start
	InferencesPerS  float64   `json:"inferences_per_s"`  // over the last report interval
	LatencyP50Ms    float64   `json:"latency_p50_ms"`    // inference only, recent window
	LatencyP95Ms    float64   `json:"latency_p95_ms"`    //
	LatencyP99Ms    float64   `json:"latency_p99_ms"`    //
	Buffered        uint64    `json:"buffered"`          // results in bbolt awaiting ack
	OldestBufferedS float64   `json:"oldest_buffered_s"` // age of the oldest unacked result
	Dropped         uint64    `json:"dropped"`           // results discarded by retention
	LastSeq         uint64    `json:"last_seq"`          // highest sequence produced
	AckedSeq        uint64    `json:"acked_seq"`         // highest sequence the controller acked
	SensorStatus    string    `json:"sensor_status"`     // "ok" or the last sensor error
	SensorErrors    uint64    `json:"sensor_errors"`
	LastError       string    `json:"last_error,omitempty"`

	// Added within version 1, so a receiver must accept them absent (older agents).
	SamplesDropped uint64 `json:"samples_dropped"` // samples skipped because inference fell behind
	PredictErrors  uint64 `json:"predict_errors"`  // windows whose inference failed
	// Host figures, read from /proc, statfs and /sys/class/thermal when the report is made.
	CPUPercent float64 `json:"cpu_percent"`         // agent process, % of one core over the last report interval
	RSSBytes   uint64  `json:"rss_bytes,omitempty"` // agent process resident set size; absent when unknown
	// DiskFreeBytes is the space still writable on the data directory's filesystem; absent
	// when unknown (0 is a full disk, so it is a pointer).
	DiskFreeBytes *uint64 `json:"disk_free_bytes,omitempty"`
	// SoCTempC is the SoC (or CPU) temperature in °C; absent where /sys/class/thermal has none.
	SoCTempC *float64 `json:"soc_temp_c,omitempty"`
	// LastErrorAt is when LastError happened (UTC, RFC 3339), so a reader can tell a stale
	// error from a current one; absent with LastError.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Update is the model-update state machine's reported state (docs/updates.md); absent
	// from agents that predate updates.
	Update *UpdateStatus `json:"update,omitempty"`
	// Unsigned is true when the agent runs a bare .tflite under --allow-unsigned.
	Unsigned bool `json:"unsigned,omitempty"`
	// Damaged storage and refused results. Quarantined: records the agent found unreadable
	// in its buffer and set aside, over the life of the buffer file (their seqs are announced
	// in DroppedThrough). Rejected: results the controller refused (Ack.Rejected) since start.
	// EpochRenewals: new epochs opened because the controller acked a seq the buffer never
	// assigned (the buffer went back to an older state), over the life of the buffer file.
	// BufferRecovered: set when the agent found its buffer file damaged at start and replaced
	// it; says what was wrong and where the damaged file went.
	Quarantined     uint64 `json:"quarantined"`
	Rejected        uint64 `json:"rejected"`
	EpochRenewals   uint64 `json:"epoch_renewals"`
	BufferRecovered string `json:"buffer_recovered,omitempty"`
	// LinkRedials counts the connections the agent dropped and made again, since start,
	// because its publishes went through but no ack came back (docs/agent.md, "Silent acks").
	LinkRedials uint64 `json:"link_redials,omitempty"`
	// Data capture (capture.go; absent from agents without it): captured windows held
	// awaiting the controller's ack, and those the capture quota dropped, over the life of the
	// capture buffer.
	CaptureBuffered uint64 `json:"capture_buffered,omitempty"`
	CaptureDropped  uint64 `json:"capture_dropped,omitempty"`
}

// Result is one inference outcome. (Device, Seq) identifies it; Seq starts at 1 and grows by one
// per result for the life of the device's data directory, across restarts.
type Result struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"ts"`              // when the window's last sample was taken
	Model     string    `json:"model"`           // name@version that produced it
	Score     float64   `json:"score"`           // primary output (anomaly score or top-class prob)
	Label     string    `json:"label,omitempty"` // class label or "anomaly"/"normal"
	Event     bool      `json:"event,omitempty"` // score crossed the model's threshold
	Outputs   []float32 `json:"outputs,omitempty"`
	LatencyUs int64     `json:"latency_us"` // inference time in microseconds
}

// ResultBatch carries results oldest first. Seqs are increasing but need not be contiguous:
// a retention drop leaves a gap, which the agent announces with DroppedThrough.
type ResultBatch struct {
	V       int      `json:"v"`
	Device  string   `json:"device"`
	Results []Result `json:"results"`
	// DroppedThrough, when non-zero, says every seq ≤ it that is absent was discarded by the
	// agent's retention policy and will never arrive; the controller may ack past such gaps.
	DroppedThrough uint64 `json:"dropped_through,omitempty"`
	// Epoch names the sequence space of the results: a random id the agent draws when it
	// creates its buffer file, so a device whose data directory was wiped (seq restarts at 1)
	// is told apart from one resending old results. 0 means a buffer older than epochs. Values
	// stay below 2^53 so every JSON reader holds them exactly.
	Epoch uint64 `json:"epoch,omitempty"`
}

// Size limits of the result path. A receiver rejects a message beyond them (a batch that size
// would be a bug or an attack, never a normal upload); a sender must stay within them. The agent
// sends at most --batch-max results (default 1000) and 256 KiB of JSON per batch, or a single
// result when one alone is larger, so its batches are well inside these bounds.
const (
	// MaxBatchResults is the most results one ResultBatch may carry; the agent's --batch-max
	// may not exceed it.
	MaxBatchResults = 5000
	// MaxBatchBytes bounds the JSON of one ResultBatch: a LeafResults payload, or what a
	// LeafResultsZ payload decompresses to.
	MaxBatchBytes = 1 << 20
	// MaxResultBytes bounds the JSON of one Result inside a batch. A larger one is rejected
	// alone (see Ack.Rejected); an agent never buffers one.
	MaxResultBytes = 64 << 10
	// MaxStatusBytes bounds a State or Health payload.
	MaxStatusBytes = 64 << 10
	// MaxPacketSize is the largest MQTT packet a broker must accept from a device (fixed
	// header, topic and payload): a plain batch of MaxBatchBytes with room for the topic, or a
	// compressed one with gzip's framing of incompressible data. The embedded broker refuses
	// (and disconnects) anything larger; set Mosquitto's max_packet_size to it.
	MaxPacketSize = MaxBatchBytes + 16<<10

	// MaxResultsZ is MaxBatchBytes under its older name: the decompressed bound of LeafResultsZ.
	MaxResultsZ = MaxBatchBytes
)

// Validate reports why r cannot be stored as a result, or nil. It checks what a receiver can
// judge without knowing the device: a seq, a timestamp, a model name, a latency that is not
// negative. It does not judge clocks (a device without a real-time clock may report 1970).
func (r *Result) Validate() error {
	switch {
	case r.Seq == 0:
		return errors.New("seq 0 (seqs start at 1)")
	case r.Time.IsZero():
		return errors.New("no timestamp \"ts\"")
	case r.Model == "":
		return errors.New("no model name \"model\"")
	case len(r.Model) > 256 || len(r.Label) > 256:
		return errors.New("model or label longer than 256 bytes")
	case r.LatencyUs < 0:
		return fmt.Errorf("negative latency_us %d", r.LatencyUs)
	}
	return nil
}

// Ack tells a device the controller has durably stored every result with seq ≤ Seq.
// Acks are cumulative and idempotent; the device deletes acked results from its buffer.
type Ack struct {
	V   int    `json:"v"`
	Seq uint64 `json:"seq"`
	// Epoch echoes the ResultBatch.Epoch the ack is about; a device ignores acks for any epoch
	// but its own, so a late ack for a wiped data directory can delete nothing.
	Epoch uint64 `json:"epoch,omitempty"`
	// Rejected lists results of the acked range that the controller could not accept (a
	// damaged record, an implausible value) with a one-line reason each. They are covered by
	// Seq like stored results, so the device deletes them and logs each reason; a bad result
	// never blocks the results after it. Added within version 1: absent means none.
	Rejected []Rejected `json:"rejected,omitempty"`
}

// Rejected names one result the controller refused and why.
type Rejected struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

// ErrVersion is returned by Decode for a message of an unknown schema version.
var ErrVersion = errors.New("unsupported schema version")

// Encode marshals msg; msg must be one of this package's message types with V set or zero
// (zero is filled with SchemaVersion).
func Encode(msg any) ([]byte, error) {
	switch m := msg.(type) {
	case *State:
		setV(&m.V)
	case *Health:
		setV(&m.V)
	case *ResultBatch:
		setV(&m.V)
	case *Ack:
		setV(&m.V)
	case *Desired:
		setV(&m.V)
	case *FetchRequest:
		setV(&m.V)
	case *Event:
		setV(&m.V)
	case *FeedbackBatch:
		setV(&m.V)
	case *DriftAlert:
		setV(&m.V)
	case *DriftSummary:
		setV(&m.V)
	case *DriftAck:
		setV(&m.V)
	case *CaptureBatch:
		setV(&m.V)
	}
	return json.Marshal(msg)
}

func setV(v *int) {
	if *v == 0 {
		*v = SchemaVersion
	}
}

// Decode unmarshals data into msg (a pointer to a message type) and checks its version. The
// error is one line that says what was wrong, suitable for logs and counters.
func Decode(data []byte, msg any) error {
	var head struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("decode %T: %w", msg, err)
	}
	if head.V == nil {
		return fmt.Errorf("decode %T: missing schema version \"v\"", msg)
	}
	if *head.V != SchemaVersion {
		return fmt.Errorf("decode %T: %w %d (want %d)", msg, ErrVersion, *head.V, SchemaVersion)
	}
	if err := json.Unmarshal(data, msg); err != nil {
		return fmt.Errorf("decode %T: %w", msg, err)
	}
	return nil
}
