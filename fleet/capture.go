package fleet

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Data capture for retraining: devices upload the windows their capture policy chose
// (wire.CaptureBatch on d/{device}/capture); the ingest loop stores them through a
// CaptureStore and acks each batch on c/{device}/capture.ack once it is committed. Items are
// identified by (device, epoch, seq): a batch sent again is acked again and stored once.

// CapturedItem is one stored capture: the item as the device sent it, with where and when
// it came from.
type CapturedItem struct {
	Device   string    `json:"device"`
	Epoch    uint64    `json:"epoch,omitempty"`
	Received time.Time `json:"received"` // controller clock
	wire.CaptureItem
	// Feedback is the ground-truth label attached to the item's result, when one was given.
	// Stores leave it nil; GET /v1/captures joins it from the stored results' feedback.
	Feedback *Feedback `json:"feedback,omitempty"`
}

// CaptureBatch is one device's capture items to store (a decoded wire.CaptureBatch).
type CaptureBatch struct {
	Device   string
	Epoch    uint64
	Items    []wire.CaptureItem // seqs increasing
	Received time.Time          // zero means now
}

// CaptureAppended reports what AppendCaptures did with one batch.
type CaptureAppended struct {
	Stored, Duplicates int
	// Through is the highest seq of the batch's (device, epoch) now stored or known
	// duplicate: the seq to ack.
	Through uint64
}

// CaptureQuery selects stored captures, oldest received first.
type CaptureQuery struct {
	Model  string    // NAME (any version) or NAME@VERSION of Result.Model; empty: any
	Device string    // empty: any
	Since  time.Time // received at or after; zero: any
	After  string    // the Next of the previous page; empty: from the start
	Limit  int       // most items returned; ≤ 0 or over MaxCapturePage: MaxCapturePage
}

// MaxCapturePage is the most items one Captures call returns.
const MaxCapturePage = 1000

// CapturePage is one page of a query.
type CapturePage struct {
	Items []CapturedItem `json:"items"`
	// Next continues the query (CaptureQuery.After); empty when this page is the last.
	Next string `json:"next,omitempty"`
}

// CaptureStore keeps captured windows. Implementations must be safe for concurrent use; the
// contract is fleet/storetest.RunCapture.
type CaptureStore interface {
	// AppendCaptures stores every batch in one transaction and returns one CaptureAppended
	// per batch. An item whose seq is at or below the highest stored for its (device, epoch)
	// is a duplicate and changes nothing, even after retention deleted the original.
	AppendCaptures(ctx context.Context, batches []CaptureBatch) ([]CaptureAppended, error)
	// Captures returns one page of the items q selects.
	Captures(ctx context.Context, q CaptureQuery) (CapturePage, error)
	// PruneCaptures deletes items received before before, then the oldest received until at
	// most keep remain (keep ≤ 0: no count limit), and returns how many it deleted.
	PruneCaptures(ctx context.Context, keep int, before time.Time) (int, error)
}

// Capture retention defaults (Retention.CaptureCount and CaptureAge, retention.go).
const (
	DefaultCaptureRetainCount = 100_000
	DefaultCaptureRetainAge   = 90 * 24 * time.Hour
)

// CaptureStats are the controller's capture counters since Run started.
type CaptureStats struct {
	Batches    uint64 // capture batches stored
	Stored     uint64 // items newly stored
	Duplicates uint64 // items received again
	Unstored   uint64 // batches not stored because the store keeps no captures
}

// captureState is the ingest loop's capture bookkeeping.
type captureState struct {
	mu     sync.Mutex
	stats  CaptureStats
	warned bool
}

// CaptureStats returns the capture counters.
func (c *Controller) CaptureStats() CaptureStats {
	c.capture.mu.Lock()
	defer c.capture.mu.Unlock()
	return c.capture.stats
}

// decodeCapture decodes a capture leaf's payload.
func decodeCapture(device string, payload []byte, at time.Time) (*CaptureBatch, int64, error) {
	b, err := wire.DecodeCaptureBatch(device, payload)
	if err != nil {
		return nil, int64(len(payload)), err
	}
	// The group bound counts decoded bytes: a compressed payload is far smaller than what it
	// holds in memory, so count the values instead (a float32 is about 12 bytes of JSON).
	size := int64(len(payload))
	for _, it := range b.Items {
		size += int64(12*len(it.Values) + 512)
	}
	return &CaptureBatch{Device: device, Epoch: b.Epoch, Items: b.Items, Received: at}, size, nil
}

// handleCaptures stores the group's capture batches in one transaction, then acks each
// (device, epoch) with the highest seq now stored. Retention is the Retention loop's.
func (c *Controller) handleCaptures(ctx context.Context, l *ingestLoop, group []decoded) error {
	var batches []CaptureBatch
	for _, d := range group {
		if d.err == nil && d.capture != nil {
			batches = append(batches, *d.capture)
		}
	}
	if len(batches) == 0 {
		return nil
	}
	cs, ok := c.store.(CaptureStore)
	if !ok {
		c.capture.mu.Lock()
		c.capture.stats.Unstored += uint64(len(batches))
		warn := !c.capture.warned
		c.capture.warned = true
		c.capture.mu.Unlock()
		if warn {
			c.log.Warn("captures received but this store keeps none; not acked", "device", batches[0].Device)
		}
		return nil
	}
	appended, err := cs.AppendCaptures(ctx, batches)
	if err != nil {
		return fmt.Errorf("store captures: %w", err)
	}
	type space struct {
		device string
		epoch  uint64
	}
	through := map[space]uint64{}
	var order []space
	c.capture.mu.Lock()
	for i, a := range appended {
		c.capture.stats.Batches++
		c.capture.stats.Stored += uint64(a.Stored)
		c.capture.stats.Duplicates += uint64(a.Duplicates)
		sp := space{batches[i].Device, batches[i].Epoch}
		if _, seen := through[sp]; !seen {
			order = append(order, sp)
		}
		through[sp] = max(through[sp], a.Through)
	}
	c.capture.mu.Unlock()
	// Only now, after the commit, may the devices hear about it.
	for _, sp := range order {
		payload, err := wire.Encode(&wire.Ack{Seq: through[sp], Epoch: sp.epoch})
		if err != nil {
			return fmt.Errorf("encode capture ack: %w", err)
		}
		tok := l.client.Publish(wire.ControllerTopic(sp.device, wire.LeafCaptureAck), 1, false, payload)
		if len(l.pending) >= maxPendingAcks {
			l.pending = l.pending[1:]
		}
		l.pending = append(l.pending, pendingAck{device: sp.device, tok: tok})
	}
	return nil
}
