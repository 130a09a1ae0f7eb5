// Package fleet is the controller's core: the device registry and result ingest domain, the Store
// it persists through (declared here, implemented by fleet/boltstore and later fleet/pgstore),
// and the Controller service that consumes device traffic over MQTT and acknowledges results
// once they are durably stored.
package fleet

import (
	"context"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Device is the persisted registry record of one device.
type Device struct {
	ID        string        `json:"id"`
	Online    bool          `json:"online"`     // from the device's last State message
	FirstSeen time.Time     `json:"first_seen"` // controller clock
	LastSeen  time.Time     `json:"last_seen"`  // controller clock, see Controller for retained messages
	Model     wire.ModelRef `json:"model"`
	Health    *wire.Health  `json:"health,omitempty"` // latest health snapshot, nil before the first
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
}

// Appended reports what AppendResults did with one Batch.
type Appended struct {
	Device     string
	Stored     int         // results of this batch newly stored
	Duplicates int         // results of this batch ignored as already stored or acked
	Dropped    uint64      // seqs newly skipped over by this batch's DroppedThrough
	Totals     ResultStats // the counters of the batch's (device, epoch) after this batch
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
	// AppendResults stores every batch in one transaction, in order, and returns one Appended per
	// batch. A result whose seq is already stored or ≤ the watermark of its (device, epoch) is a
	// duplicate and leaves the store unchanged. The first batch of an epoch not seen before for
	// the device makes it the device's current epoch; results of older epochs are kept. The call
	// is atomic: on error nothing was stored. Seq 0 or an invalid device id is an error.
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
	Buffered        uint64 // results the device holds unacked, per its latest health
	ResultsReceived uint64 // distinct results stored by the controller, all time
	Duplicates      uint64 // results received again, all time
	Dropped         uint64 // seqs the device declared dropped, all time
	Acked           uint64 // the device's contiguous watermark (last ack sent)
	Malformed       uint64 // messages from this device rejected since the controller started
	LastSeen        time.Time
	Health          *wire.Health
}

// Stats are controller-wide counters since Run started.
type Stats struct {
	Messages   uint64 // device messages taken from the broker
	Batches    uint64 // result batches stored
	Stored     uint64 // results newly stored
	Duplicates uint64 // results ignored as duplicates
	Dropped    uint64 // seqs skipped over by DroppedThrough
	Malformed  uint64 // messages rejected (bad JSON, version, topic/device mismatch, bad seq)
	Commits    uint64 // result transactions committed
	AcksSent   uint64 // ack publishes handed to the MQTT client
	AckErrors  uint64 // ack publishes the client reported failed (the device will resend)
}
