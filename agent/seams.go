// Package agent is the device side of Outpost: it samples a sensor, runs the active model on
// sliding windows, buffers results durably and uploads them to the controller. The concrete
// sensor, model runtime, store and MQTT link plug in through the small interfaces declared
// here (the consumer owns its seams); only cmd/ and agent/assemble wire the real adapters.
package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Predictor runs the active model on one window of samples.
type Predictor interface {
	// Predict runs the model on window (Spec().Window samples × Spec().Channels channels,
	// interleaved by time, already normalized). out is owned by the Predictor and valid
	// until the next call; latency is the inference time alone.
	Predict(window []float32) (out []float32, latency time.Duration, err error)
	// Model names the model that Predict runs.
	Model() wire.ModelRef
	// Spec describes the input the model expects and how to read its output.
	Spec() ModelSpec
}

// Output kinds understood by the agent when it turns model outputs into a wire.Result.
const (
	// out[0] is an anomaly score; Event when score >= Threshold. Labels, if two, name the
	// normal and the anomalous outcome (default "normal", "anomaly").
	OutputAnomaly = "anomaly"
	// out is one score per class and Label the top class. Labels[0] is the healthy class by
	// convention: Event when another class wins with a score >= Threshold.
	OutputClassify = "classify"
)

// ModelSpec is what the pipeline needs from a model's manifest.
type ModelSpec struct {
	SampleRateHz float64   // rate the model was trained at
	Window       int       // samples per inference window
	Stride       int       // new samples between two windows; above Window skips samples
	Channels     int       // values per sample
	Mean, Std    []float32 // per-channel normalization: (x - Mean) / Std; empty means none
	OutputKind   string    // OutputAnomaly or OutputClassify
	Labels       []string  // outcome or class names, see the output kinds
	Threshold    float64   // event threshold on the score
}

// Validate reports the first problem with s in one line.
func (s ModelSpec) Validate() error {
	switch {
	case s.Window < 1:
		return fmt.Errorf("model spec: window %d must be at least 1", s.Window)
	case s.Stride < 1:
		return fmt.Errorf("model spec: stride %d must be at least 1", s.Stride)
	case s.Channels < 1:
		return fmt.Errorf("model spec: channels %d must be at least 1", s.Channels)
	case len(s.Mean) != 0 && len(s.Mean) != s.Channels, len(s.Std) != 0 && len(s.Std) != s.Channels:
		return fmt.Errorf("model spec: normalization has %d means and %d stds for %d channels", len(s.Mean), len(s.Std), s.Channels)
	case s.OutputKind != OutputAnomaly && s.OutputKind != OutputClassify:
		return fmt.Errorf("model spec: output kind %q (want %q or %q)", s.OutputKind, OutputAnomaly, OutputClassify)
	}
	for i, sd := range s.Std {
		if !(sd > 0) {
			return fmt.Errorf("model spec: std of channel %d is %v, must be positive", i, sd)
		}
	}
	return nil
}

// Buffer is the durable FIFO of results awaiting the controller's ack.
type Buffer interface {
	// Append assigns each result the next sequence number (rs[i].Seq is set in place) and
	// returns once all of them are on stable storage, in one transaction. When the buffer is
	// full the oldest unacked results are discarded and counted in BufferStats.Dropped.
	Append(rs []wire.Result) error
	// Oldest returns up to n unacked results, lowest seq first.
	Oldest(n int) ([]wire.Result, error)
	// After returns up to n unacked results with seq > after, lowest seq first: the upload
	// loop reads past the batches it already has in flight.
	After(after uint64, n int) ([]wire.Result, error)
	// Ack deletes every result with seq ≤ seq. Acks are cumulative and idempotent; an ack
	// beyond the last appended seq is an error and changes nothing.
	Ack(seq uint64) error
	// Stats is a snapshot of the buffer's counters.
	Stats() BufferStats
}

// BufferStats describes a Buffer's contents.
type BufferStats struct {
	Len      uint64 // unacked results held
	LastSeq  uint64 // highest seq assigned (0 before the first Append)
	AckedSeq uint64 // highest seq acked
	Dropped  uint64 // results discarded by retention, over the life of the store
	// DroppedThrough: every seq ≤ it that is neither acked nor held was discarded (by
	// retention or quarantine) and will never be sent; 0 if none.
	DroppedThrough uint64
	Oldest         time.Time // Time of the oldest held result; zero when empty
	Bytes          uint64    // stored size of the unacked results
	// Epoch is the random id of the buffer's sequence space, drawn when its storage was
	// created (0 for storage older than epochs); it is sent with every batch.
	Epoch uint64
	// Quarantined counts records found unreadable (damaged key or JSON) and moved out of
	// the results, over the life of the store. Their seqs are announced like dropped ones.
	Quarantined uint64
	// EpochRenewals counts the new epochs opened over the life of the store because the
	// controller acked a seq beyond LastSeq (storage that went back to an older state).
	EpochRenewals uint64
	// Recovered is set when the store was found damaged at open and replaced by a fresh one:
	// one line saying what was wrong and where the damaged file went. Empty otherwise.
	Recovered string
}

// Uplink carries messages to the controller.
type Uplink interface {
	// Publish sends payload at QoS 1 on the device topic leaf and returns after the broker's
	// PUBACK, ctx's end, or at once with ErrNotConnected while disconnected. A nil error
	// means the broker has the message, not that the controller stored it.
	Publish(ctx context.Context, leaf string, payload []byte, retained bool) error
	// Acks delivers the controller's cumulative acks for the buffer's epoch; acks for another
	// epoch are not delivered (a receiver still checks Epoch: it may have just changed).
	// The channel is never closed; values may be coalesced to the highest Seq, with the
	// Rejected lists of both.
	Acks() <-chan wire.Ack
	// Connected reports whether the link is connected now.
	Connected() bool
}

// Redialer is implemented by an Uplink that can drop its connection and make a new one
// (mqttlink.Link.Redial). The upload loop calls it, with a growing interval, while publishes go
// through but acks have stopped: a broker can lose a session's subscriptions while the
// connection lives on (mochi v2.7.9 did, fleet/broker/takeover.go), and then only a new
// session brings them back. Against a controller that is simply down it costs a reconnect.
type Redialer interface {
	// Redial reports whether it started a new connection: false while the link is down
	// (it is reconnecting already) or closed.
	Redial(reason string) bool
}

// ErrNotConnected is returned by Uplink.Publish while the link is down.
var ErrNotConnected = errors.New("uplink not connected")

// StateStore keeps small named records durably (update phase, counters).
type StateStore interface {
	// Get returns the record's value, or ErrNoRecord.
	Get(name string) ([]byte, error)
	// Put stores value under name; it is on stable storage when Put returns.
	Put(name string, value []byte) error
}

// ErrNoRecord is returned by StateStore.Get for a name never Put.
var ErrNoRecord = errors.New("no such record")
