package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"
)

// Model updates travel over MQTT only (docs/updates.md has the whole protocol):
//
//   - The controller publishes each device's Desired state, retained, on c/{device}/desired.
//   - The device pulls what it needs, TUF metadata first and then the target package, with
//     FetchRequests on d/{device}/fetch; the controller answers each wanted block with a
//     binary Block frame on c/{device}/chunk (raw bytes, no base64).
//   - The device reports its update phase in Health.Update and every transition as an Event
//     on d/{device}/events.
//
// Block transfer is device-pulled and windowed: a request names up to MaxBlocksPerRequest
// blocks of one file; the device keeps the partial file and its bitmap on disk, so a reboot
// resumes where it stopped.

// Update topic leaves; the constants LeafFetch, LeafEvents (device side) and LeafDesired,
// LeafChunk (controller side) are declared with the other leaves in wire.go.

// Block transfer limits.
const (
	DefaultBlockSize    = 64 << 10  // bytes per block unless the request asks otherwise
	MinBlockSize        = 4 << 10   // smallest block size a controller serves
	MaxBlockSize        = 256 << 10 // largest block size a controller serves
	MaxBlocksPerRequest = 16        // set bits allowed in FetchRequest.Mask
	MaxFetchPath        = 256       // bytes of FetchRequest.Path
)

// Fetch paths name what a device may ask for. Metadata files are TUF role files by the
// names TUF gives them (consistent snapshots: "3.root.json", "timestamp.json",
// "7.snapshot.json", "7.targets.json"); targets are "{sha256 hex}.{target name}".
const (
	FetchMetaPrefix   = "meta/"
	FetchTargetPrefix = "targets/"
)

// FetchRequest asks for blocks of one file. Block i covers bytes [i*BlockSize,
// (i+1)*BlockSize) of the file. Bit k of Mask (least significant first) asks for block
// Start+k; at most MaxBlocksPerRequest bits may be set. A request with Mask 0 asks for the
// file's size only: the controller answers with block Start (normally 0) as usual, and every
// Block carries the file's total size.
type FetchRequest struct {
	V         int    `json:"v"`
	ID        uint64 `json:"id"`         // chosen by the device, echoed in every Block
	Path      string `json:"path"`       // FetchMetaPrefix or FetchTargetPrefix + name
	BlockSize int    `json:"block_size"` // 0 means DefaultBlockSize
	Start     uint32 `json:"start"`      // index of the block Mask's bit 0 stands for
	Mask      uint32 `json:"mask"`       // wanted blocks, see above
}

// Validate reports the first problem with r in one line.
func (r *FetchRequest) Validate() error {
	switch {
	case len(r.Path) == 0 || len(r.Path) > MaxFetchPath:
		return fmt.Errorf("fetch request: path length %d (want 1 to %d)", len(r.Path), MaxFetchPath)
	case !strings.HasPrefix(r.Path, FetchMetaPrefix) && !strings.HasPrefix(r.Path, FetchTargetPrefix):
		return fmt.Errorf("fetch request: path %q must start with %q or %q", r.Path, FetchMetaPrefix, FetchTargetPrefix)
	case strings.Contains(r.Path, "..") || strings.ContainsAny(r.Path, "\\\x00"):
		return fmt.Errorf("fetch request: path %q is not a plain name", r.Path)
	case r.BlockSize != 0 && (r.BlockSize < MinBlockSize || r.BlockSize > MaxBlockSize):
		return fmt.Errorf("fetch request: block size %d (want %d to %d)", r.BlockSize, MinBlockSize, MaxBlockSize)
	case bits.OnesCount32(r.Mask) > MaxBlocksPerRequest:
		return fmt.Errorf("fetch request: %d blocks asked (at most %d)", bits.OnesCount32(r.Mask), MaxBlocksPerRequest)
	case uint64(r.Start)+32 > 1<<32:
		return fmt.Errorf("fetch request: start block %d out of range", r.Start)
	}
	return nil
}

// Block statuses.
const (
	BlockOK          byte = 0 // Data is the block's content
	BlockNotFound    byte = 1 // no such file; Data is a one-line reason
	BlockRateLimited byte = 2 // try again later; Data is a one-line reason
	BlockBadRequest  byte = 3 // the request was refused; Data is a one-line reason
	BlockOutOfRange  byte = 4 // index beyond the file's last block; Size is still right
)

// Block is one binary frame on c/{device}/chunk. Layout (big-endian):
//
//	"OPB1" | status u8 | id u64 | index u32 | size u64 | block_size u32 | path_len u16 | path | data
//
// Size is the file's total length in bytes, so the receiver knows the block count from any
// frame. For BlockOK, Data is exactly BlockSize bytes except in the last block.
type Block struct {
	Status    byte
	ID        uint64
	Index     uint32
	Size      uint64
	BlockSize uint32
	Path      string
	Data      []byte
}

var blockMagic = [4]byte{'O', 'P', 'B', '1'}

const blockHeader = 4 + 1 + 8 + 4 + 8 + 4 + 2

// ErrBlockFrame is wrapped by DecodeBlock's errors.
var ErrBlockFrame = errors.New("bad block frame")

// EncodeBlock appends b's frame to dst and returns it.
func EncodeBlock(dst []byte, b *Block) []byte {
	dst = append(dst, blockMagic[:]...)
	dst = append(dst, b.Status)
	dst = binary.BigEndian.AppendUint64(dst, b.ID)
	dst = binary.BigEndian.AppendUint32(dst, b.Index)
	dst = binary.BigEndian.AppendUint64(dst, b.Size)
	dst = binary.BigEndian.AppendUint32(dst, b.BlockSize)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b.Path)))
	dst = append(dst, b.Path...)
	return append(dst, b.Data...)
}

// DecodeBlock parses one frame. Data aliases frame. It checks the frame's own consistency
// (lengths, sizes); whether the content is right is the receiver's business (signed lengths
// and digests).
func DecodeBlock(frame []byte) (Block, error) {
	var b Block
	if len(frame) < blockHeader {
		return b, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBlockFrame, len(frame), blockHeader)
	}
	if [4]byte(frame[:4]) != blockMagic {
		return b, fmt.Errorf("%w: magic %q", ErrBlockFrame, frame[:4])
	}
	b.Status = frame[4]
	b.ID = binary.BigEndian.Uint64(frame[5:])
	b.Index = binary.BigEndian.Uint32(frame[13:])
	b.Size = binary.BigEndian.Uint64(frame[17:])
	b.BlockSize = binary.BigEndian.Uint32(frame[25:])
	n := int(binary.BigEndian.Uint16(frame[29:]))
	rest := frame[blockHeader:]
	if n > MaxFetchPath || n > len(rest) {
		return b, fmt.Errorf("%w: path length %d", ErrBlockFrame, n)
	}
	b.Path, b.Data = string(rest[:n]), rest[n:]
	if b.Status > BlockOutOfRange {
		return b, fmt.Errorf("%w: status %d", ErrBlockFrame, b.Status)
	}
	if b.Status == BlockOK {
		if b.BlockSize < MinBlockSize || b.BlockSize > MaxBlockSize {
			return b, fmt.Errorf("%w: block size %d", ErrBlockFrame, b.BlockSize)
		}
		start := uint64(b.Index) * uint64(b.BlockSize)
		want := min(uint64(b.BlockSize), b.Size-min(start, b.Size))
		if start >= b.Size || uint64(len(b.Data)) != want {
			return b, fmt.Errorf("%w: block %d holds %d bytes, want %d of a %d-byte file", ErrBlockFrame, b.Index, len(b.Data), want, b.Size)
		}
	} else if len(b.Data) > 1024 {
		return b, fmt.Errorf("%w: reason of %d bytes", ErrBlockFrame, len(b.Data))
	}
	return b, nil
}

// Desired is the controller's retained instruction on c/{device}/desired: which model the
// device should run and how to bring it in. Generation grows by one each time the desired
// state of the device changes; a device acts on a Generation once and reports it back in
// UpdateStatus, so a retained message seen again after a reconnect changes nothing.
type Desired struct {
	V          int           `json:"v"`
	Generation uint64        `json:"generation"`
	Model      *DesiredModel `json:"model,omitempty"` // nil: keep what runs
	Rollout    string        `json:"rollout,omitempty"`
	// Shadow, when positive, runs the candidate beside the active model on the same windows
	// for this long before activating it; Probation watches the activated model for this long
	// before committing it. Seconds.
	ShadowS    float64 `json:"shadow_s,omitempty"`
	ProbationS float64 `json:"probation_s,omitempty"`
	// Limits the device applies during probation on its own; crossing one rolls it back
	// without waiting for the controller. Zero means no limit.
	MaxErrorRate       float64   `json:"max_error_rate,omitempty"`       // failed windows / windows
	MaxLatencyRatio    float64   `json:"max_latency_ratio,omitempty"`    // candidate p99 / previous p99
	MinShadowAgreement float64   `json:"min_shadow_agreement,omitempty"` // fraction of shadow windows with the same outcome
	MaxDriftPSI        float64   `json:"max_drift_psi,omitempty"`        // worst input or output PSI
	Rollback           bool      `json:"rollback,omitempty"`             // controller orders a return to the previous model
	Time               time.Time `json:"ts,omitzero"`
	// Capture, when set, is the data-capture policy the device follows (capture.go); absent
	// means capture nothing. Added within version 1.
	Capture *CapturePolicy `json:"capture,omitempty"`
	// Drift overrides the model manifest's drift thresholds and the agent's window on this
	// device (docs/monitoring.md) until a later Desired state says otherwise; nil keeps
	// them. Added within version 1.
	Drift *DriftOverrides `json:"drift,omitempty"`
}

// DriftOverrides are drift-monitor settings from the controller; a zero field keeps the
// manifest's (or the agent's) value. Fields as in the manifest's "drift" object.
type DriftOverrides struct {
	PSI        float64 `json:"psi,omitempty"`
	KS         float64 `json:"ks,omitempty"`
	JS         float64 `json:"js,omitempty"`
	CUSUMK     float64 `json:"cusum_k,omitempty"`
	CUSUMH     float64 `json:"cusum_h,omitempty"`
	MinSamples int64   `json:"min_samples,omitempty"`
	Window     int64   `json:"window,omitempty"` // inferences per window
}

// Validate reports the first out-of-range override in one line.
func (o *DriftOverrides) Validate() error {
	for _, c := range []struct {
		name   string
		v, max float64
	}{{"psi", o.PSI, 100}, {"ks", o.KS, 1}, {"js", o.JS, 1}, {"cusum_k", o.CUSUMK, 100}, {"cusum_h", o.CUSUMH, 1000}} {
		if !(c.v >= 0 && c.v <= c.max) {
			return fmt.Errorf("drift override %s %v is not in [0,%v]", c.name, c.v, c.max)
		}
	}
	if o.MinSamples < 0 || o.MinSamples > 1<<40 {
		return fmt.Errorf("drift override min_samples %d is out of range", o.MinSamples)
	}
	if o.Window < 0 || o.Window > 1<<30 {
		return fmt.Errorf("drift override window %d is out of range", o.Window)
	}
	return nil
}

// DesiredModel names the target package by its TUF target name; the device looks up the
// length, digest and custom fields in signed metadata, never in this message.
type DesiredModel struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Target  string `json:"target"` // TUF target name, e.g. "vibration-anomaly-1.1.0.opkg"
	SHA256  string `json:"sha256"` // for display and early mismatch detection only
}

// Update phases reported in UpdateStatus.Phase and Event.Phase.
const (
	PhaseIdle        = "idle"
	PhaseDownloading = "downloading"
	PhaseVerifying   = "verifying"
	PhaseStaging     = "staging"
	PhaseShadow      = "shadow"
	PhaseActivating  = "activating"
	PhaseProbation   = "probation"
	PhaseCommitted   = "committed"
	PhaseRolledBack  = "rolled_back"
	PhaseFailed      = "failed" // refused before activation; the active model never changed
)

// UpdateStatus is the device's reported update state, carried in Health.Update.
type UpdateStatus struct {
	Generation uint64    `json:"generation"` // the Desired.Generation being acted on or last done
	Rollout    string    `json:"rollout,omitempty"`
	Phase      string    `json:"phase"`
	Target     ModelRef  `json:"target"`             // the candidate
	Previous   ModelRef  `json:"previous,omitzero"`  // what ran before it
	Reason     string    `json:"reason,omitempty"`   // one line: why it failed or rolled back
	Progress   float64   `json:"progress,omitempty"` // downloading: fraction of bytes held
	Since      time.Time `json:"since,omitzero"`     // when Phase was entered (device clock)
	// Figures gathered in shadow and probation, for the controller's gates.
	Shadow    *ShadowStats    `json:"shadow,omitempty"`
	Probation *ProbationStats `json:"probation,omitempty"`
}

// ShadowStats compares the candidate with the active model on the same windows.
type ShadowStats struct {
	Windows      uint64  `json:"windows"`
	Agreement    float64 `json:"agreement"`     // fraction with the same outcome (label/event)
	OutputJS     float64 `json:"output_js"`     // Jensen–Shannon distance of the score distributions
	LatencyRatio float64 `json:"latency_ratio"` // candidate p99 / active p99
}

// ProbationStats watches the activated candidate.
type ProbationStats struct {
	Windows      uint64  `json:"windows"`
	Errors       uint64  `json:"errors"`
	LatencyRatio float64 `json:"latency_ratio"` // candidate p99 / previous model's p99
	DriftPSI     float64 `json:"drift_psi"`     // worst PSI against the package baseline; 0 unknown
}

// Event kinds.
const (
	EventUpdate = "update" // an update phase transition
	EventError  = "error"  // something the operator should see (corrupt buffer, quarantine…)
	EventDrift  = "drift"  // a drift score crossed its threshold
	// EventBufferRecovered: the agent found its buffer file damaged at start, moved it aside
	// and started a fresh one with a new epoch; results it held were not sent.
	EventBufferRecovered = "buffer_recovered"
)

// Event is one thing that happened on a device, on d/{device}/events (QoS 1, not retained),
// for operators and logs.
type Event struct {
	V       int       `json:"v"`
	Device  string    `json:"device"`
	Time    time.Time `json:"ts"`
	Kind    string    `json:"kind"`
	Phase   string    `json:"phase,omitempty"` // EventUpdate: the phase entered
	Model   ModelRef  `json:"model,omitzero"`
	Rollout string    `json:"rollout,omitempty"`
	Reason  string    `json:"reason,omitempty"` // one human-readable line: what happened or why
}
