// Package fetch is the device's downloader for model updates over MQTT: it pulls TUF metadata
// into memory (FetchMeta) and target packages onto disk (Download) with windowed block
// requests on d/{device}/fetch, answered by binary wire.Block frames on c/{device}/chunk.
//
// A download keeps its partial file and a bitmap of the blocks it holds on disk, keyed by the
// target's sha256, so a restart or a reconnect resumes where it stopped. Every block is checked
// against the length from signed metadata as it arrives and the whole file against the signed
// sha256 at the end; nothing the controller says about sizes is trusted beyond that.
//
// Only one transfer runs at a time: FetchMeta and Download serialize on the Fetcher, because
// they share the link's one stream of frames. Frames that belong to no running transfer (a
// late answer to an abandoned request) are read and dropped.
package fetch

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-ml/outpost/agent/sysstat"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Link is what the downloader needs from the agent's MQTT link.
type Link interface {
	// Publish sends payload at QoS 1 on the device topic leaf (agent.Uplink's contract).
	Publish(ctx context.Context, leaf string, payload []byte, retained bool) error
	// Blocks delivers raw frames received on c/{device}/chunk. The channel is never closed;
	// the link may drop frames when nobody reads (the downloader asks again).
	Blocks() <-chan []byte
}

// Want is a target to download, as signed metadata describes it.
type Want struct {
	Path   string // "{sha256 hex}.{target name}", the TUF consistent-snapshot target path
	Length int64  // bytes, from signed metadata
	SHA256 string // lower-case hex, from signed metadata
}

// Options configure New. Dir and Link are required.
type Options struct {
	Dir  string // data directory for partial and completed downloads (created if absent)
	Link Link

	BlockSize     int           // bytes per block; default wire.DefaultBlockSize
	Window        int           // blocks per request, 1 to wire.MaxBlocksPerRequest; default 16
	InFlight      int           // requests outstanding at once; default DefaultInFlight
	IdleTimeout   time.Duration // no frame for this long: outstanding requests are unanswered; default 10 s
	MaxUnanswered int           // consecutive unanswered requests before giving up; default 32
	// RateLimitBackoff is the mean pause after the controller answers BlockRateLimited
	// (jittered ±50 %); default 2 s.
	RateLimitBackoff time.Duration
	MaxLength        int64  // largest target accepted, bytes; default 1 GiB
	Reserve          uint64 // bytes to leave free on Dir's filesystem; default 1 MiB
	// FreeSpace reports the bytes writable on the filesystem holding dir; default
	// sysstat.DiskFree.
	FreeSpace func(dir string) (uint64, error)
	Logger    *slog.Logger // nil logs nothing
}

// Defaults for zero Options fields.
const (
	DefaultInFlight         = 2
	DefaultIdleTimeout      = 10 * time.Second
	DefaultMaxUnanswered    = 32
	DefaultRateLimitBackoff = 2 * time.Second
	DefaultMaxLength        = 1 << 30
	DefaultReserve          = 1 << 20
)

// Errors callers branch on; the returned errors wrap them with a one-line reason.
var (
	ErrUnanswered = errors.New("controller did not answer")
	// ErrNotFound also matches fs.ErrNotExist: go-tuf (through agent/trust) learns it holds
	// the newest root only from a "not found".
	ErrNotFound error = notFound{}
	ErrRefused        = errors.New("refused by the controller")
	ErrTooLong        = errors.New("longer than allowed")
	ErrLength         = errors.New("length differs from signed metadata")
	ErrDigest         = errors.New("sha256 differs from signed metadata")
	ErrNoSpace        = errors.New("not enough free disk")
)

// notFound is ErrNotFound's type.
type notFound struct{}

func (notFound) Error() string        { return "not found on the controller" }
func (notFound) Is(target error) bool { return target == fs.ErrNotExist }

// Fetcher downloads over a Link. Its methods are safe for concurrent use; transfers run one
// at a time.
type Fetcher struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex // held for the length of a transfer: one reader of Link.Blocks
	nextID atomic.Uint64

	badFrames atomic.Uint64
}

// New checks opts; it starts nothing and touches no file.
func New(opts Options) (*Fetcher, error) {
	if opts.Dir == "" {
		return nil, errors.New("fetch: no data directory")
	}
	if opts.Link == nil {
		return nil, errors.New("fetch: no link")
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = wire.DefaultBlockSize
	}
	if opts.BlockSize < wire.MinBlockSize || opts.BlockSize > wire.MaxBlockSize {
		return nil, fmt.Errorf("fetch: block size %d (want %d to %d)", opts.BlockSize, wire.MinBlockSize, wire.MaxBlockSize)
	}
	if opts.Window == 0 {
		opts.Window = wire.MaxBlocksPerRequest
	}
	if opts.Window < 1 || opts.Window > wire.MaxBlocksPerRequest {
		return nil, fmt.Errorf("fetch: window %d (want 1 to %d)", opts.Window, wire.MaxBlocksPerRequest)
	}
	if opts.InFlight <= 0 {
		opts.InFlight = DefaultInFlight
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxUnanswered <= 0 {
		opts.MaxUnanswered = DefaultMaxUnanswered
	}
	if opts.RateLimitBackoff <= 0 {
		opts.RateLimitBackoff = DefaultRateLimitBackoff
	}
	if opts.MaxLength <= 0 {
		opts.MaxLength = DefaultMaxLength
	}
	if opts.Reserve == 0 {
		opts.Reserve = DefaultReserve
	}
	if opts.FreeSpace == nil {
		opts.FreeSpace = sysstat.DiskFree
	}
	f := &Fetcher{opts: opts, log: opts.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	// Request ids start at a random point so that answers to a previous process's requests
	// are not mistaken for answers to ours.
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	f.nextID.Store(binary.BigEndian.Uint64(seed[:]) >> 1)
	return f, nil
}

// BadFrames counts frames that could not be decoded.
func (f *Fetcher) BadFrames() uint64 { return f.badFrames.Load() }

// FetchMeta fetches the TUF metadata file name ("timestamp.json", "3.root.json", …) into
// memory. A file longer than maxLen bytes is refused as soon as its size is known, before
// its content is read (TUF's endless-data attack). It satisfies agent/trust's MetaFetcher.
//
// A small file is one request in flight, so a controller that never answers is given up on
// only after MaxUnanswered idle timeouts (about 5 minutes at the defaults): bound ctx when
// waiting that long is not wanted.
func (f *Fetcher) FetchMeta(ctx context.Context, name string, maxLen int64) ([]byte, error) {
	if maxLen <= 0 {
		return nil, fmt.Errorf("fetch meta %s: max length %d must be positive", name, maxLen)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var buf []byte
	t := &transfer{
		path: wire.FetchMetaPrefix + name,
		size: -1,
		onSize: func(n int64) error {
			if n > maxLen {
				return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, n, maxLen)
			}
			buf = make([]byte, n)
			return nil
		},
		onBlock: func(off int64, data []byte) error {
			copy(buf[off:], data)
			return nil
		},
	}
	if err := f.run(ctx, t); err != nil {
		return nil, fmt.Errorf("fetch meta %s: %w", name, err)
	}
	return buf, nil
}
