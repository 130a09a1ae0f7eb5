// Package fleet is the controller's core: the device registry and result ingest domain, the Store
// it persists through (declared here, implemented by fleet/boltstore and fleet/pgstore),
// and the Controller service that consumes device traffic over MQTT and acknowledges results
// once they are durably stored.
package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Device is the persisted registry record of one device.
type Device struct {
	ID        string    `json:"id"`
	Online    bool      `json:"online"`     // from the device's last State message
	FirstSeen time.Time `json:"first_seen"` // controller clock
	LastSeen  time.Time `json:"last_seen"`  // controller clock, see Controller for retained messages
	// StateAt is when Online last took its value: the device's State time, or the time the
	// controller saw the message when the device gave none (the last-will carries none) or
	// claimed one in the future.
	StateAt time.Time     `json:"state_at,omitzero"`
	Model   wire.ModelRef `json:"model"`
	Health  *wire.Health  `json:"health,omitempty"` // latest health snapshot, nil before the first
}

// ResultStats are a device's running result counters as the store keeps them.
type ResultStats struct {
	Stored     uint64 `json:"stored"`     // distinct results stored, all time
	Duplicates uint64 `json:"duplicates"` // results received again (seq already stored or acked)
	Dropped    uint64 `json:"dropped"`    // seqs skipped because the device declared them dropped
	Contiguous uint64 `json:"contiguous"` // every seq ≤ Contiguous is stored or dropped: the ack watermark
	// Epoch is the sequence space the counters belong to (wire.ResultBatch.Epoch): a device
	// whose data directory is wiped starts a new one, with seq 1 and counters at zero.
	Epoch uint64 `json:"epoch,omitempty"`
	// Rejected counts seqs the controller refused one by one (Batch.Rejected): covered by the
	// watermark like stored results, never stored.
	Rejected uint64 `json:"rejected,omitempty"`
	// Advanced is when Contiguous last moved (controller clock; zero when unknown, e.g. for a
	// space written before this field existed). It bounds how far DroppedThrough may move it.
	Advanced time.Time `json:"advanced,omitzero"`
}

// MaxResultRate is the most results per second a device can produce: the agent reads sensors
// at up to 100 kHz and makes at most one result per sample. A DroppedThrough may move a
// watermark by at most this rate times the time since the watermark last moved (plus
// wire.MaxBatchResults for clock granularity), so a spoofed huge value cannot push it past
// results the real device will still send.
const MaxResultRate = 100_000

// PlausibleDrop is the watermark a batch may move st to by its DroppedThrough (st.Contiguous
// when the claim is refused), given the first seq the batch carries (0: none) and when it
// arrived. A device always holds results above what it dropped, so a DroppedThrough is
// believed only below the first seq of the same batch, and only as far as the device could
// have produced results since the watermark last moved. A space seen for the first time has
// no history, so only the first rule applies to it.
func PlausibleDrop(st ResultStats, known bool, droppedThrough, firstSeq uint64, at time.Time) uint64 {
	if droppedThrough <= st.Contiguous || firstSeq == 0 || droppedThrough >= firstSeq {
		return st.Contiguous
	}
	if known && !st.Advanced.IsZero() {
		elapsed := at.Sub(st.Advanced).Seconds()
		limit := float64(st.Contiguous) + MaxResultRate*max(elapsed, 0) + wire.MaxBatchResults
		if float64(droppedThrough) > limit {
			return st.Contiguous
		}
	}
	return droppedThrough
}

// Batch is one device's results to append, as carried by a wire.ResultBatch.
type Batch struct {
	Device  string
	Results []wire.Result
	// DroppedThrough: every absent seq ≤ it will never arrive (wire.ResultBatch.DroppedThrough).
	DroppedThrough uint64
	// Epoch is the device's sequence space (wire.ResultBatch.Epoch); seqs, de-duplication and
	// the watermark are per (Device, Epoch).
	Epoch uint64
	// Rejected are seqs of the batch the controller refused (a damaged or implausible result),
	// ascending, disjoint from Results' seqs. They fill the watermark like stored results
	// (the device is told and deletes them) but are not stored as results.
	Rejected []wire.Rejected
	// Received is when the controller received the batch; it bounds DroppedThrough (see
	// PlausibleDrop). Zero means now.
	Received time.Time
}

// Appended reports what AppendResults did with one Batch.
type Appended struct {
	Device     string
	Stored     int    // results of this batch newly stored
	Duplicates int    // results of this batch ignored as already stored or acked
	Dropped    uint64 // seqs newly skipped over by this batch's DroppedThrough
	Rejected   int    // seqs of this batch's Rejected newly recorded
	// DropRefused: the batch's DroppedThrough was not believed (see PlausibleDrop).
	DropRefused bool
	// OverQuota counts results of this batch not stored because the device holds its quota of
	// results and none could be evicted (see the store's quota); they are not acked.
	OverQuota int
	Totals    ResultStats // the counters of the batch's (device, epoch) after this batch
	// Restarted: this batch opened a new epoch for a device known under another one (its data
	// directory was wiped); the new epoch is now the device's current one.
	Restarted bool
}

// Store is the controller's durable state. Implementations must be safe for concurrent use; the
// contract is the suite in fleet/storetest, which every implementation runs.
type Store interface {
	// PutDevices inserts or replaces the given device records in one transaction.
	PutDevices(ctx context.Context, devices []Device) error
	// Devices returns every device record ordered by ID.
	Devices(ctx context.Context) ([]Device, error)
	// AddDevice stores the record {ID: id} unless the store holds one for id already (a device
	// registered before its first contact; another replica may have seen it meanwhile), and
	// reports whether it added it. An invalid id is an error.
	AddDevice(ctx context.Context, id string) (added bool, err error)
	// AppendResults stores every batch in one transaction, in order, and returns one Appended per
	// batch. A result whose seq is already stored or ≤ the watermark of its (device, epoch) is a
	// duplicate and leaves the store unchanged. The first batch of an epoch not seen before for
	// the device makes it the device's current epoch; results of older epochs are kept. The call
	// is atomic: on error nothing was stored. Seq 0 or an invalid device id is an error.
	// A batch's Rejected seqs fill the watermark as stored results do, and its DroppedThrough
	// moves the watermark only as far as PlausibleDrop allows.
	AppendResults(ctx context.Context, batches []Batch) ([]Appended, error)
	// ResultStats returns the counters of device's current epoch (zero for an unknown device).
	ResultStats(ctx context.Context, device string) (ResultStats, error)
	// Results returns up to limit stored results of device's current epoch with seq > after,
	// ascending.
	Results(ctx context.Context, device string, after uint64, limit int) ([]wire.Result, error)
	// EpochResults is Results for the given epoch of device, current or not.
	EpochResults(ctx context.Context, device string, epoch, after uint64, limit int) ([]wire.Result, error)
	// UpdateStore holds models, rollouts, desired states and device tags (updates.go).
	UpdateStore
	// PolicyStore holds per-device monitoring settings (devicepolicy.go).
	PolicyStore
	// ViewStore holds results by time, output summaries, health history, drift and
	// feedback (views.go).
	ViewStore
	// Close releases the store; it waits for nothing but in-flight calls.
	Close() error
}

// DeviceStatus is one row of the live fleet table: the registry record plus the controller's
// counters. Figures from the device come from its latest Health and are zero before the first.
type DeviceStatus struct {
	ID              string
	Online          bool
	Model           wire.ModelRef
	InferencesPerS  float64
	LatencyP50Ms    float64
	LatencyP99Ms    float64
	Buffered        uint64    // results the device holds unacked, per its latest health
	ResultsReceived uint64    // distinct results stored by the controller, all time
	Duplicates      uint64    // results received again, all time
	Dropped         uint64    // seqs the device declared dropped, all time
	Rejected        uint64    // results the controller rejected one by one, current epoch
	Acked           uint64    // the device's contiguous watermark (last ack sent)
	Malformed       uint64    // messages from this device rejected since the controller started
	FirstSeen       time.Time // when the device first registered (controller clock)
	LastSeen        time.Time
	StateAt         time.Time // when Online took its value (see Device.StateAt)
	Health          *wire.Health
}

// Stats are controller-wide counters since Run started.
type Stats struct {
	Messages   uint64 // device messages taken from the broker
	Batches    uint64 // result batches stored
	Stored     uint64 // results newly stored
	Duplicates uint64 // results ignored as duplicates
	// Resent counts result batches answered with an ack alone, not stored again: every seq
	// was at or below the device's committed watermark (a resend; see Controller.resentLocked).
	Resent    uint64
	Dropped   uint64 // seqs skipped over by DroppedThrough
	Malformed uint64 // messages rejected whole (bad JSON, version, topic/device mismatch, bad seq, too large)
	Rejected  uint64 // results rejected one by one (listed in the ack with a reason)
	// DropRefused counts batches whose DroppedThrough was not believed (PlausibleDrop).
	DropRefused uint64
	// OverQuota counts results not stored because their device holds its result quota.
	OverQuota uint64
	// Overflowed counts messages dropped because the ingest queue was full (count or bytes);
	// see Options.QueueSize.
	Overflowed uint64
	Commits    uint64 // result transactions committed
	AcksSent   uint64 // ack publishes handed to the MQTT client
	AckErrors  uint64 // ack publishes the client reported failed (the device will resend)
	Drift      uint64 // drift summaries stored (a redelivered one counts again, stored once)

	// For /metrics (fleet/metrics). QueueMessages and QueueBytes are the ingest queue's fill
	// when Stats was called; NewestResult is the latest result time (device clock) stored.
	QueueMessages int
	QueueBytes    int64
	NewestResult  time.Time
	// IngestLatency counts stored batches by receive-to-commit time: IngestLatency[i] those
	// at most IngestLatencyBuckets[i] seconds (and over the previous edge), the last entry
	// the rest. IngestLatencySum is their total in seconds.
	IngestLatency    [len(IngestLatencyBuckets) + 1]uint64
	IngestLatencySum float64
}

// IngestLatencyBuckets are the upper edges, in seconds, of Stats.IngestLatency.
var IngestLatencyBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// ValidateBatches reports the first batch no Store may take: an invalid device id, or a
// result or rejected seq of 0. Every Store's AppendResults checks it before writing anything.
func ValidateBatches(batches []Batch) error {
	for _, b := range batches {
		if err := wire.ValidDeviceID(b.Device); err != nil {
			return fmt.Errorf("append results: %w", err)
		}
		for _, r := range b.Results {
			if r.Seq == 0 {
				return fmt.Errorf("append results for %s: seq 0 is not a valid sequence number", b.Device)
			}
		}
		for _, j := range b.Rejected {
			if j.Seq == 0 {
				return fmt.Errorf("append results for %s: rejected seq 0 is not a valid sequence number", b.Device)
			}
		}
	}
	return nil
}
