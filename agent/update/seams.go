package update

import (
	"context"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Trust answers from signed metadata (TUF, agent/trust): which file a target name stands
// for, and whether a downloaded file is that file.
type Trust interface {
	// Refresh brings the signed metadata up to date (timestamp, snapshot, targets).
	Refresh(ctx context.Context) error
	// Lookup returns the signed description of the target named target.
	Lookup(target string) (Target, error)
	// VerifyFile checks the file at path against t's signed length and sha256.
	VerifyFile(t Target, path string) error
}

// Target is one model package as the signed targets metadata describe it.
type Target struct {
	Name   string       // TUF target name, e.g. "vibration-anomaly-1.1.0.opkg"
	Path   string       // fetch path: "{sha256}.{name}"
	Length int64        // bytes
	SHA256 string       // lower-case hex
	Custom TargetCustom // the target's custom fields
}

// TargetCustom is the JSON in a target's custom field.
type TargetCustom struct {
	Name            string   `json:"name"`
	Version         string   `json:"version"`
	Release         uint64   `json:"release"` // grows with every version; a device never goes below what it committed
	Ops             []string `json:"ops"`
	MinAgentVersion string   `json:"min_agent_version"`
}

// Downloader fetches a target's bytes (agent/fetch over MQTT). It keeps partial files on
// disk so a restart resumes, and checks blocks against the signed length as they come.
type Downloader interface {
	// Download returns the path of the complete file, which the caller then owns. progress,
	// if not nil, is called with the bytes held so far.
	Download(ctx context.Context, w Want, progress func(held, total int64)) (string, error)
}

// Want is what to download, from signed metadata.
type Want struct {
	Path   string // "{sha256}.{name}"
	Length int64
	SHA256 string
}

// DesiredSource delivers the controller's Desired messages (c/{device}/desired, retained).
// The channel is never closed; a value seen again after a reconnect changes nothing, since
// the Manager acts on each Generation once.
type DesiredSource interface {
	Desired() <-chan wire.Desired
}

// Publisher sends an Event to the controller; agent.Uplink satisfies it.
type Publisher interface {
	Publish(ctx context.Context, leaf string, payload []byte, retained bool) error
}
