package assemble

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/outpost-ml/outpost/agent/capture"
	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/agent/sensor"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// CaptureFile is the capture buffer's name inside Config.DataDir (beside BufferFile).
const CaptureFile = "capture.db"

// CaptureConfig configures data capture for retraining (docs/monitoring.md). What is captured
// is the controller's policy, delivered in the Desired state; until one arrives, Policy (nil:
// nothing) applies.
type CaptureConfig struct {
	// Disabled builds no capturer at all: a policy from the controller is ignored.
	Disabled bool
	// MaxBytes and MaxItems are the capture buffer's disk quota (capture.StoreOptions).
	MaxBytes int64
	MaxItems int
	Policy   *wire.CapturePolicy
	// Seed seeds the sampling decisions; 0 draws one.
	Seed uint64
}

// openCapture opens the capture buffer and builds the capturer, or nothing when disabled.
func openCapture(cfg Config, src sensor.Source, link *mqttlink.Link, log *slog.Logger) (*capture.Store, *capture.Capturer, error) {
	if cfg.Capture.Disabled {
		return nil, nil, nil
	}
	st, err := capture.OpenStore(filepath.Join(cfg.DataDir, CaptureFile), capture.StoreOptions{MaxBytes: cfg.Capture.MaxBytes, MaxItems: cfg.Capture.MaxItems})
	if err != nil {
		return nil, nil, err
	}
	c, err := capture.New(capture.Options{
		DeviceID: cfg.DeviceID, Store: st, Link: link, Channels: src.Info().ChannelNames(),
		Policy: cfg.Capture.Policy, Seed: cfg.Capture.Seed, Logger: log.With("component", "capture"),
	})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, c, nil
}

// teeDesired passes every desired state on to the update manager and applies its capture
// policy first (absent: capture off). It keeps only the newest state when the reader is
// behind, as the link does.
func (d *Device) teeDesired(ctx context.Context, in <-chan wire.Desired) <-chan wire.Desired {
	if d.Capture == nil || in == nil {
		return in
	}
	out := make(chan wire.Desired, 1)
	go func() {
		var applied uint64 // generation of the policy in force
		for {
			var des wire.Desired
			select {
			case <-ctx.Done():
				return
			case des = <-in:
			}
			// An older generation (a stale retained message) never replaces a newer policy;
			// the same one seen again after a reconnect changes nothing.
			if des.Generation >= applied {
				if err := d.Capture.SetPolicy(des.Capture); err != nil {
					d.log.Warn("capture policy refused; keeping the previous one", "generation", des.Generation, "err", err)
				} else {
					applied = des.Generation
				}
			}
			select {
			case out <- des:
			default:
				select {
				case <-out:
				default:
				}
				out <- des
			}
		}
	}()
	return out
}
