package wire

import (
	"errors"
	"fmt"
	"time"
)

// Fleet-level monitoring topics (docs/protocol.md, docs/monitoring.md). They sit beside the
// per-device trees, not inside them: a device may publish only under d/{its id}/ and so can
// never publish on either, which is what keeps a device from labelling its own results.
const (
	// TopicFeedback carries FeedbackBatch messages (QoS 1) from a labelling system to the
	// controller. On the embedded broker only a client holding the controller's credential
	// may publish it; with Mosquitto, the ACL grants it to the users listed for it.
	TopicFeedback = Root + "/feedback"
	// TopicAlerts carries DriftAlert messages (QoS 1, not retained) from the controller: one
	// when a device's model starts drifting and one when it recovers.
	TopicAlerts = Root + "/alerts"
)

// Feedback limits a receiver enforces.
const (
	MaxFeedbackLabels = 1000 // labels in one FeedbackBatch
	MaxFeedbackBytes  = 256 << 10
	MaxLabelBytes     = 256 // as Result.Label
)

// FeedbackLabel is a late label for the result (Device, Epoch, Seq): the true outcome, a
// class label or "anomaly"/"normal". Epoch 0 names the device's current sequence space.
type FeedbackLabel struct {
	Device string `json:"device"`
	Epoch  uint64 `json:"epoch,omitempty"`
	Seq    uint64 `json:"seq"`
	Label  string `json:"label"`
	Source string `json:"source,omitempty"` // who labelled it, free text for the record
}

// FeedbackBatch is one or more labels.
type FeedbackBatch struct {
	V      int             `json:"v"`
	Labels []FeedbackLabel `json:"labels"`
}

// Validate reports the first problem with l in one line.
func (l *FeedbackLabel) Validate() error {
	if err := ValidDeviceID(l.Device); err != nil {
		return err
	}
	switch {
	case l.Seq == 0:
		return fmt.Errorf("%s: seq 0 (seqs start at 1)", l.Device)
	case l.Epoch >= 1<<53:
		return fmt.Errorf("%s seq %d: epoch %d beyond 2^53", l.Device, l.Seq, l.Epoch)
	case l.Label == "" || len(l.Label) > MaxLabelBytes:
		return fmt.Errorf("%s seq %d: label length %d (want 1 to %d bytes)", l.Device, l.Seq, len(l.Label), MaxLabelBytes)
	case len(l.Source) > MaxLabelBytes:
		return fmt.Errorf("%s seq %d: source longer than %d bytes", l.Device, l.Seq, MaxLabelBytes)
	}
	return nil
}

// DecodeFeedback decodes and validates a FeedbackBatch.
func DecodeFeedback(data []byte) (*FeedbackBatch, error) {
	if len(data) > MaxFeedbackBytes {
		return nil, fmt.Errorf("feedback: %d bytes (at most %d)", len(data), MaxFeedbackBytes)
	}
	var b FeedbackBatch
	if err := Decode(data, &b); err != nil {
		return nil, err
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// Validate reports the first problem with b in one line.
func (b *FeedbackBatch) Validate() error {
	switch {
	case len(b.Labels) == 0:
		return errors.New("feedback: no labels")
	case len(b.Labels) > MaxFeedbackLabels:
		return fmt.Errorf("feedback: %d labels (at most %d)", len(b.Labels), MaxFeedbackLabels)
	}
	for i := range b.Labels {
		if err := b.Labels[i].Validate(); err != nil {
			return fmt.Errorf("feedback: label %d: %w", i, err)
		}
	}
	return nil
}

// Alert states.
const (
	AlertDrifting  = "drifting"
	AlertRecovered = "recovered"
)

// DriftAlert says a device's model started drifting or recovered. The controller sends one
// per change (edge-triggered), never one per window.
type DriftAlert struct {
	V      int      `json:"v"`
	Device string   `json:"device"`
	Model  ModelRef `json:"model"`
	State  string   `json:"state"` // AlertDrifting or AlertRecovered
	// Since is the end of the window that started the current state (device clock).
	Since time.Time `json:"since"`
	// Features names the drifted features with their drifted scores, e.g. "accel: psi, cusum";
	// empty on recovery.
	Features []string  `json:"features,omitempty"`
	Window   uint64    `json:"window"` // the window that changed the state
	Time     time.Time `json:"ts"`     // when the controller decided (controller clock)
}
