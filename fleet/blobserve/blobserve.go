// Package blobserve is the controller's answering side of the model-update block transfer:
// it takes devices' wire.FetchRequests from d/+/fetch and answers each wanted block with a
// binary wire.Block frame on c/{device}/chunk, read from a Source (the TUF repository's
// metadata and targets).
//
// Sending is paced by token buckets in bytes per second, one per device and one for all of
// them, so a rollout to many devices does not flood the broker; devices take turns block by
// block. Waiting requests are bounded per device and in total; a request over either bound is
// answered at once with wire.BlockRateLimited and the device asks again later.
//
// Several controller replicas can split the requests (Options.ShareGroup): a request is
// answered whole by the replica that got it, and a device whose replica dies asks again after
// its timeout and is answered by another. Pacing is then per replica, so the fleet-wide rate
// is at most the number of replicas times GlobalRate.
//
// The device a request comes from is the one its topic names: the broker's ACL lets a device
// publish only under its own d/{id}/ and read only its own c/{id}/, so no device can ask for
// blocks on another's behalf or read another's.
package blobserve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/pahostore"
)

// Source serves the files devices may fetch.
type Source interface {
	// Open returns the file at path ("meta/{role file}" or "targets/{sha256}.{name}") and its
	// size. An error wrapping fs.ErrNotExist is answered with wire.BlockNotFound. The reader
	// is closed after use if it is an io.Closer.
	Open(path string) (io.ReaderAt, int64, error)
}

// Options configure New. Source and BrokerURL are required.
type Options struct {
	Source             Source
	BrokerURL          string // tcp://host:port …
	Username, Password string // the controller's broker credentials
	ClientID           string // default DefaultClientID
	// ShareGroup, when set, subscribes through the MQTT shared subscription
	// $share/ShareGroup/..., so the broker hands each fetch request to one of the replicas in
	// the group. Any replica can answer: the answer goes to the device's own chunk topic, and
	// every replica reads the same repository (a shared tufrepo.Storage).
	ShareGroup string

	DeviceRate  float64 // bytes/s sent to one device; default DefaultDeviceRate
	GlobalRate  float64 // bytes/s sent to all devices together; default DefaultGlobalRate
	QueueSize   int     // requests waiting, all devices; default DefaultQueueSize
	DeviceQueue int     // requests waiting per device; default DefaultDeviceQueue
	InFlight    int     // frames published and not yet acknowledged by the broker; default 64
	Logger      *slog.Logger
}

// Defaults for zero Options fields.
const (
	DefaultClientID    = "outpost-blobserve"
	DefaultDeviceRate  = 1 << 20  // 1 MiB/s (8.4 Mbit/s) per device
	DefaultGlobalRate  = 16 << 20 // 16 MiB/s (134 Mbit/s) in all
	DefaultQueueSize   = 1024
	DefaultDeviceQueue = 8
	DefaultInFlight    = 64
)

// Stats are the server's counters since New.
type Stats struct {
	Requests    uint64 // fetch requests received
	Malformed   uint64 // requests that could not be decoded
	Refused     uint64 // answered BlockBadRequest or BlockNotFound
	RateLimited uint64 // answered BlockRateLimited
	Blocks      uint64 // BlockOK frames sent
	Bytes       uint64 // frame bytes sent, all statuses
	SendErrors  uint64 // frames not sent: the broker did not take them, or the answer queue was full
	Queued      int    // requests waiting now
}

// Server answers fetch requests. Run it once.
type Server struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	// mu guards the fields below.
	mu      sync.Mutex
	devices map[string]*device
	ring    []string // devices with waiting requests, in turn order
	turn    int      // index into ring of the next device to serve
	global  *bucket
	queued  int

	wake    chan struct{} // capacity 1: a request or an answer arrived
	answers chan outgoing // status frames waiting to be sent, bounded; full: dropped

	subscribed atomic.Bool

	requests, malformed, refused, limited, blocks, bytes, sendErrs atomic.Uint64
}

// device is one device's waiting requests and its bucket.
type device struct {
	id     string
	jobs   []*job
	bucket *bucket
}

// job is one accepted request being answered block by block.
type job struct {
	req  wire.FetchRequest
	r    io.ReaderAt
	size int64
	bs   int
	mask uint32 // blocks still to send, relative to req.Start
}

// New checks opts; it connects to nothing and starts no goroutines.
func New(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("blobserve: no source")
	}
	if opts.BrokerURL == "" {
		return nil, errors.New("blobserve: no broker url")
	}
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if strings.ContainsAny(opts.ShareGroup, "/+#") {
		return nil, fmt.Errorf("blobserve: share group %q must not contain '/', '+' or '#'", opts.ShareGroup)
	}
	if opts.DeviceRate <= 0 {
		opts.DeviceRate = DefaultDeviceRate
	}
	if opts.GlobalRate <= 0 {
		opts.GlobalRate = DefaultGlobalRate
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.DeviceQueue <= 0 {
		opts.DeviceQueue = DefaultDeviceQueue
	}
	if opts.InFlight <= 0 {
		opts.InFlight = DefaultInFlight
	}
	s := &Server{opts: opts, log: opts.Logger, now: time.Now, devices: map[string]*device{}, wake: make(chan struct{}, 1), answers: make(chan outgoing, 256)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.global = newBucket(opts.GlobalRate, s.now())
	return s, nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	q := s.queued
	s.mu.Unlock()
	return Stats{
		Requests: s.requests.Load(), Malformed: s.malformed.Load(), Refused: s.refused.Load(),
		RateLimited: s.limited.Load(), Blocks: s.blocks.Load(), Bytes: s.bytes.Load(),
		SendErrors: s.sendErrs.Load(), Queued: q,
	}
}

// Subscribed reports whether Run is connected and subscribed to the fetch topics.
func (s *Server) Subscribed() bool { return s.subscribed.Load() }

// filter is the subscription to every device's fetch topic, shared when ShareGroup is set.
func (s *Server) filter() string {
	f := wire.DeviceWildcard(wire.LeafFetch)
	if s.opts.ShareGroup != "" {
		f = "$share/" + s.opts.ShareGroup + "/" + f
	}
	return f
}

// Run connects to the broker (retrying until it answers), subscribes to every device's fetch
// topic and answers until ctx ends. Waiting requests are dropped on return; devices ask again.
func (s *Server) Run(ctx context.Context) error {
	connected := make(chan struct{}, 1)
	onFetch := func(_ paho.Client, m paho.Message) {
		// A shared subscription delivers the publication's own topic.
		if dev, leaf, ok := wire.ParseDeviceTopic(m.Topic()); ok && leaf == wire.LeafFetch {
			s.handle(dev, m.Payload())
		}
	}
	filter := s.filter()
	o := paho.NewClientOptions().SetStore(pahostore.New()).
		AddBroker(s.opts.BrokerURL).
		SetClientID(s.opts.ClientID).
		SetUsername(s.opts.Username).
		SetPassword(s.opts.Password).
		SetCleanSession(true). // requests are retried by devices: nothing to keep across a restart
		SetOrderMatters(true). // handle is quick; in order keeps a device's requests in order
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetConnectionLostHandler(func(paho.Client, error) { s.subscribed.Store(false) }).
		SetDefaultPublishHandler(onFetch). // in case the router does not match a $share filter
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.Subscribe(filter, 1, onFetch)
			if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
				if q := tok.(*paho.SubscribeToken).Result()[filter]; q > 1 {
					s.log.Error("broker refused the fetch subscription", "topic", filter, "code", q)
					return
				}
				s.log.Info("blobserve subscribed", "topic", filter, "shared", s.opts.ShareGroup != "")
				s.subscribed.Store(true)
				select {
				case connected <- struct{}{}:
				default:
				}
				return
			}
			s.log.Error("blobserve subscribe", "err", tok.Error())
		})
	client := paho.NewClient(o)
	client.Connect()
	defer client.Disconnect(250)
	pub := &pahoPublisher{c: client, sem: make(chan struct{}, s.opts.InFlight), s: s}
	return s.dispatch(ctx, pub, connected)
}

// publisher sends frames to devices; the dispatch loop is its only caller.
type publisher interface {
	// send publishes frame to device's chunk topic; it may block while InFlight frames wait.
	send(ctx context.Context, device string, frame []byte)
	// up reports whether frames can be sent now.
	up() bool
}

type pahoPublisher struct {
	c   paho.Client
	sem chan struct{}
	s   *Server
}

func (p *pahoPublisher) up() bool { return p.c.IsConnectionOpen() }

func (p *pahoPublisher) send(ctx context.Context, device string, frame []byte) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	tok := p.c.Publish(wire.ControllerTopic(device, wire.LeafChunk), 1, false, frame)
	p.s.bytes.Add(uint64(len(frame)))
	go func() {
		defer func() { <-p.sem }()
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			p.s.sendErrs.Add(1)
		}
	}()
}

// handle runs on the MQTT client's delivery goroutine: it decodes, validates and queues one
// request, or answers it at once when it is refused or over a bound. It never waits for
// sending.
func (s *Server) handle(dev string, payload []byte) {
	s.requests.Add(1)
	var req wire.FetchRequest
	if err := wire.Decode(payload, &req); err != nil {
		// Without a decoded request there is no id to answer to: count and drop.
		if s.malformed.Add(1) == 1 {
			s.log.Warn("ignoring malformed fetch request", "device", dev, "err", err)
		}
		return
	}
	if err := req.Validate(); err != nil {
		s.answer(dev, &req, wire.BlockBadRequest, err.Error())
		return
	}
	bs := req.BlockSize
	if bs == 0 {
		bs = wire.DefaultBlockSize
	}
	r, size, err := s.opts.Source.Open(req.Path)
	if err != nil {
		status := wire.BlockBadRequest
		if errors.Is(err, fs.ErrNotExist) {
			status = wire.BlockNotFound
			err = fmt.Errorf("%s: not found", req.Path)
		}
		s.answer(dev, &req, status, err.Error())
		return
	}
	j := &job{req: req, r: r, size: size, bs: bs, mask: req.Mask}
	if j.mask == 0 {
		j.mask = 1 // a request for the size only is answered with block Start
	}
	s.mu.Lock()
	d := s.devices[dev]
	if d == nil {
		if len(s.devices) >= 2*s.opts.QueueSize {
			s.forgetIdleLocked()
		}
		d = &device{id: dev, bucket: newBucket(s.opts.DeviceRate, s.now())}
		s.devices[dev] = d
	}
	if s.queued >= s.opts.QueueSize || len(d.jobs) >= s.opts.DeviceQueue {
		s.mu.Unlock()
		closeReader(r)
		s.answer(dev, &req, wire.BlockRateLimited, "too many requests waiting; ask again later")
		return
	}
	if len(d.jobs) == 0 {
		s.ring = append(s.ring, dev)
	}
	d.jobs = append(d.jobs, j)
	s.queued++
	s.mu.Unlock()
	s.log.Debug("fetch request", "device", dev, "path", req.Path, "id", req.ID)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// outgoing is a frame for a device.
type outgoing struct {
	dev   string
	frame []byte
}

// answer queues a frame that carries no data; it is sent outside the pacing (it is tiny).
func (s *Server) answer(dev string, req *wire.FetchRequest, status byte, reason string) {
	switch status {
	case wire.BlockRateLimited:
		s.limited.Add(1)
	default:
		s.refused.Add(1)
	}
	reason, _, _ = strings.Cut(reason, "\n")
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	path := req.Path
	if len(path) > wire.MaxFetchPath {
		path = path[:wire.MaxFetchPath]
	}
	bs := req.BlockSize
	if bs < 0 || bs > wire.MaxBlockSize {
		bs = 0
	}
	frame := wire.EncodeBlock(nil, &wire.Block{Status: status, ID: req.ID, Index: req.Start, BlockSize: uint32(bs), Path: path, Data: []byte(reason)})
	select {
	case s.answers <- outgoing{dev: dev, frame: frame}:
	default:
		s.sendErrs.Add(1) // the device hears nothing and asks again after its timeout
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// forgetIdleLocked drops the devices with nothing waiting whose bucket is full again, so the
// map stays bounded by the devices recently served.
func (s *Server) forgetIdleLocked() {
	now := s.now()
	for id, d := range s.devices {
		if len(d.jobs) == 0 && d.bucket.full(now) {
			delete(s.devices, id)
		}
	}
}

// Files is a Source of files held in memory, by fetch path: for tests, demos and small
// fleets whose metadata is built in memory.
type Files map[string][]byte

// Open implements Source.
func (f Files) Open(path string) (io.ReaderAt, int64, error) {
	b, ok := f[path]
	if !ok {
		return nil, 0, fmt.Errorf("%s: %w", path, fs.ErrNotExist)
	}
	return bytes.NewReader(b), int64(len(b)), nil
}
