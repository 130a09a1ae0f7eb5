package wire

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Data capture for retraining (docs/monitoring.md): the controller's Desired state may carry a
// CapturePolicy; while it does, the agent keeps some raw input windows with their results in a
// capture buffer of its own and uploads them in CaptureBatches on d/{device}/capture (QoS 1).
// The controller stores them and acks with an Ack on c/{device}/capture.ack, exactly as for
// results: cumulative, per epoch of the capture buffer. Without a policy nothing is captured,
// so raw data leaves a device only when the controller asked for it.

// Capture topic leaves.
const (
	// LeafCapture (device side, QoS 1) carries a CaptureBatch, gzip-compressed (RFC 1952) or
	// plain JSON; receivers accept both (JSON never starts with gzip's magic bytes).
	LeafCapture = "capture"
	// LeafCaptureAck (controller side, QoS 1) carries the Ack for capture batches.
	LeafCaptureAck = "capture.ack"
)

// Capture reasons in CaptureItem.Reason: which part of the policy chose the window.
const (
	CaptureRandom        = "random"
	CaptureLowConfidence = "low_confidence"
	CaptureDrift         = "drift"
)

// Limits of the capture path; a receiver rejects a message beyond them.
const (
	MaxCaptureItems    = 256      // items in one CaptureBatch
	MaxCaptureValues   = 1 << 16  // float values of one item's window
	MaxCaptureChannels = 64       // channels of one window
	MaxCaptureName     = 128      // bytes of a channel name
	MaxCaptureBytes    = 1 << 20  // JSON of one CaptureBatch (what a compressed one inflates to)
	MaxCapturePerHour  = 1000_000 // CapturePolicy.MaxPerHour
	MaxCaptureHoldS    = 86400    // CapturePolicy.DriftHoldS
)

// CapturePolicy says which windows a device captures. Each fraction is a probability applied
// to every window that qualifies: Random to all windows, LowConfidence to windows whose score
// lies within Band of the model's threshold, Drift to all windows while the drift monitor
// reports drift (and for DriftHoldS seconds after its last drifted window). A window that
// qualifies several ways is captured at most once, with the first reason that chose it in the
// order drift, low confidence, random. MaxPerHour caps captures whatever chose them (0: 3600,
// one a second on average).
type CapturePolicy struct {
	Random        float64 `json:"random,omitempty"`
	LowConfidence float64 `json:"low_confidence,omitempty"`
	Band          float64 `json:"band,omitempty"`
	Drift         float64 `json:"drift,omitempty"`
	DriftHoldS    float64 `json:"drift_hold_s,omitempty"`
	MaxPerHour    int     `json:"max_per_hour,omitempty"`
}

// DefaultCapturePerHour is CapturePolicy.MaxPerHour when it is 0.
const DefaultCapturePerHour = 3600

// Validate reports the first problem with p in one line.
func (p *CapturePolicy) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"random", p.Random}, {"low_confidence", p.LowConfidence}, {"drift", p.Drift}} {
		if !(f.v >= 0 && f.v <= 1) {
			return fmt.Errorf("capture policy: %s %v is not a fraction in [0, 1]", f.name, f.v)
		}
	}
	switch {
	case !(p.Band >= 0) || math.IsInf(p.Band, 0):
		return fmt.Errorf("capture policy: band %v must be a finite number ≥ 0", p.Band)
	case p.LowConfidence > 0 && p.Band == 0:
		return errors.New("capture policy: low_confidence needs a band > 0 (|score - threshold| ≤ band)")
	case !(p.DriftHoldS >= 0 && p.DriftHoldS <= MaxCaptureHoldS):
		return fmt.Errorf("capture policy: drift_hold_s %v out of range [0, %d]", p.DriftHoldS, MaxCaptureHoldS)
	case p.MaxPerHour < 0 || p.MaxPerHour > MaxCapturePerHour:
		return fmt.Errorf("capture policy: max_per_hour %d out of range [0, %d]", p.MaxPerHour, MaxCapturePerHour)
	}
	return nil
}

// Off reports whether p captures nothing.
func (p *CapturePolicy) Off() bool {
	return p == nil || (p.Random == 0 && p.LowConfidence == 0 && p.Drift == 0)
}

// DecodeDesired decodes a Desired state and validates the parts a device acts on without
// signed metadata (the capture policy).
func DecodeDesired(data []byte) (*Desired, error) {
	var d Desired
	if err := Decode(data, &d); err != nil {
		return nil, err
	}
	if d.Capture != nil {
		if err := d.Capture.Validate(); err != nil {
			return nil, fmt.Errorf("desired generation %d: %w", d.Generation, err)
		}
	}
	return &d, nil
}

// CaptureItem is one captured window and the result the model gave for it.
type CaptureItem struct {
	// Seq numbers the items of one capture buffer (its own sequence, not the results').
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"ts"` // when the window's last sample was taken
	Reason string    `json:"reason"`
	// Channels names the window's channels (sensor channel names); Shape is [samples,
	// channels] and Values the raw sensor values (before the model's normalization),
	// time-major: Values[i*channels+c] is channel c of sample i.
	Channels []string  `json:"channels"`
	Shape    []int     `json:"shape"`
	Values   []float32 `json:"values"`
	// Result is the model's result for the window; Result.Seq is its seq among the device's
	// results (0 when the result was lost before the buffer numbered it).
	Result Result `json:"result"`
}

// Validate reports the first problem with it in one line.
func (it *CaptureItem) Validate() error {
	switch {
	case it.Seq == 0:
		return errors.New("capture item: seq 0 (seqs start at 1)")
	case it.Time.IsZero():
		return fmt.Errorf("capture item %d: no timestamp", it.Seq)
	case it.Reason != CaptureRandom && it.Reason != CaptureLowConfidence && it.Reason != CaptureDrift:
		return fmt.Errorf("capture item %d: reason %q (want %q, %q or %q)", it.Seq, it.Reason, CaptureRandom, CaptureLowConfidence, CaptureDrift)
	case len(it.Shape) != 2:
		return fmt.Errorf("capture item %d: shape %v (want [samples, channels])", it.Seq, it.Shape)
	case it.Shape[1] < 1 || it.Shape[1] > MaxCaptureChannels || it.Shape[1] != len(it.Channels):
		return fmt.Errorf("capture item %d: %d channels named for shape %v (1 to %d)", it.Seq, len(it.Channels), it.Shape, MaxCaptureChannels)
	case it.Shape[0] < 1 || it.Shape[0] > MaxCaptureValues/it.Shape[1] || it.Shape[0]*it.Shape[1] != len(it.Values):
		return fmt.Errorf("capture item %d: %d values for shape %v (at most %d)", it.Seq, len(it.Values), it.Shape, MaxCaptureValues)
	case it.Result.Model == "" || len(it.Result.Model) > 256 || len(it.Result.Label) > 256:
		return fmt.Errorf("capture item %d: result model %q or label of bad length", it.Seq, it.Result.Model)
	case math.IsNaN(it.Result.Score) || math.IsInf(it.Result.Score, 0):
		return fmt.Errorf("capture item %d: result score %v", it.Seq, it.Result.Score)
	}
	for _, c := range it.Channels {
		if c == "" || len(c) > MaxCaptureName {
			return fmt.Errorf("capture item %d: channel name of %d bytes (1 to %d)", it.Seq, len(c), MaxCaptureName)
		}
	}
	return nil
}

// CaptureBatch carries capture items oldest first, with increasing seqs. Like ResultBatch,
// DroppedThrough says every absent seq ≤ it was discarded by the device (its capture quota)
// and Epoch names the capture buffer's sequence space.
type CaptureBatch struct {
	V              int           `json:"v"`
	Device         string        `json:"device"`
	Epoch          uint64        `json:"epoch,omitempty"`
	DroppedThrough uint64        `json:"dropped_through,omitempty"`
	Items          []CaptureItem `json:"items"`
}

// EncodeCaptureBatch returns b as gzip-compressed JSON, the form the agent publishes,
// compressed by z (nil: a new Gzipper, for a one-off batch).
func EncodeCaptureBatch(b *CaptureBatch, z *Gzipper) ([]byte, error) {
	setV(&b.V)
	js, err := Encode(b)
	if err != nil {
		return nil, err
	}
	if z == nil {
		z = &Gzipper{}
	}
	return z.Compress(js)
}

// DecodeCaptureBatch decodes a LeafCapture payload (gzip or plain JSON) sent on device's topic
// and validates it: the device must match, seqs increase, every item is valid. Memory is
// bounded by MaxCaptureBytes whatever the payload claims.
func DecodeCaptureBatch(device string, payload []byte) (*CaptureBatch, error) {
	js := payload
	if len(payload) >= 2 && payload[0] == 0x1f && payload[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("capture batch: %w", err)
		}
		js, err = io.ReadAll(io.LimitReader(zr, MaxCaptureBytes+1))
		if err != nil {
			return nil, fmt.Errorf("capture batch: gunzip: %w", err)
		}
	}
	if len(js) > MaxCaptureBytes {
		return nil, fmt.Errorf("capture batch: more than %d bytes of JSON", MaxCaptureBytes)
	}
	var b CaptureBatch
	if err := Decode(js, &b); err != nil {
		return nil, err
	}
	switch {
	case b.Device != device:
		return nil, fmt.Errorf("capture batch for device %q on topic of %q", b.Device, device)
	case len(b.Items) == 0:
		return nil, errors.New("capture batch: no items")
	case len(b.Items) > MaxCaptureItems:
		return nil, fmt.Errorf("capture batch: %d items (at most %d)", len(b.Items), MaxCaptureItems)
	case b.Epoch >= 1<<53:
		return nil, fmt.Errorf("capture batch: epoch %d not below 2^53", b.Epoch)
	}
	var prev uint64
	for i := range b.Items {
		it := &b.Items[i]
		if err := it.Validate(); err != nil {
			return nil, fmt.Errorf("capture batch: %w", err)
		}
		if it.Seq <= prev {
			return nil, fmt.Errorf("capture batch: seq %d after %d (must increase)", it.Seq, prev)
		}
		prev = it.Seq
	}
	return &b, nil
}
