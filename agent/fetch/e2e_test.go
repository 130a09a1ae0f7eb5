package fetch_test

// End-to-end tests and benchmarks of the block transfer through the real parts: the
// embedded mochi broker with the device ACL (strict), fleet/blobserve answering, and the
// agent's own MQTT link (agent/mqttlink) under agent/fetch. Like agent/faulttest, these tests
// wire controller parts the way cmd/ does; the agent packages themselves never import them.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/agent/faulttest"
	"github.com/outpost-ml/outpost/agent/fetch"
	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/agent/trust"
	"github.com/outpost-ml/outpost/agent/trust/trusttest"
	"github.com/outpost-ml/outpost/fleet/blobserve"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// target makes n deterministic bytes and the Want for them.
func target(n int, name string) ([]byte, fetch.Want) {
	data := make([]byte, n)
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	return data, fetch.Want{Path: h + "." + name, Length: int64(n), SHA256: h}
}

// rig is a broker and a blobserve Server on it.
type rig struct {
	b          *broker.Broker // nil for an external broker
	url        string
	user, pass string // the controller's credentials
	src        blobserve.Source
	opts       blobserve.Options
	srv        *blobserve.Server
	stopSrv    func()
	online     *presence
}

func startRig(t testing.TB, src blobserve.Source, opts blobserve.Options) *rig {
	t.Helper()
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	r := &rig{b: b, url: b.URL(), src: src, opts: opts}
	r.user, r.pass = b.ControllerCredentials()
	r.startServer(t)
	r.online = watchPresence(t, r)
	return r
}

// startServer (re)starts the blobserve Server.
func (r *rig) startServer(t testing.TB) {
	t.Helper()
	o := r.opts
	o.Source, o.BrokerURL = r.src, r.url
	o.Username, o.Password = r.user, r.pass
	srv, err := blobserve.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(ctx); err != nil {
			t.Errorf("blobserve: %v", err)
		}
	}()
	var once sync.Once
	r.srv, r.stopSrv = srv, func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(r.stopSrv)
	waitFor(t, "blobserve to subscribe", srv.Subscribed)
}

// presence watches devices' retained state as the controller does: a device announces
// "online" only after subscribing to its own topics, so once it is online its chunk
// subscription is in place.
type presence struct {
	mu     sync.Mutex
	online map[string]int // device → times seen online
}

func watchPresence(t testing.TB, r *rig) *presence {
	t.Helper()
	p := &presence{online: map[string]int{}}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(r.url).SetClientID("presence").SetUsername(r.user).SetPassword(r.pass))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("presence connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	tok := c.Subscribe(wire.DeviceWildcard(wire.LeafState), 1, func(_ paho.Client, m paho.Message) {
		var s wire.State
		if wire.Decode(m.Payload(), &s) == nil && s.State == wire.StateOnline {
			p.mu.Lock()
			p.online[s.Device]++
			p.mu.Unlock()
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("presence subscribe: %v", tok.Error())
	}
	return p
}

func (p *presence) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.online[id]
}

// device is one agent's link and downloader.
type device struct {
	link *mqttlink.Link
	f    *fetch.Fetcher
}

// startDevice connects an agent link for id (through brokerURL, which may be a proxy) and
// waits until it is online.
func startDevice(t testing.TB, r *rig, brokerURL, id, dir string, fo fetch.Options) *device {
	t.Helper()
	seen := r.online.count(id)
	l, err := mqttlink.New(mqttlink.Options{
		Broker: brokerURL, DeviceID: id, Username: id,
		ConnectRetryInterval: 100 * time.Millisecond, MaxReconnectInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Connect()
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	waitFor(t, id+" online", func() bool { return r.online.count(id) > seen })
	fo.Dir, fo.Link = dir, l
	f, err := fetch.New(fo)
	if err != nil {
		t.Fatal(err)
	}
	return &device{link: l, f: f}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func checkFile(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the %d sent (%v)", path, len(got), len(want), err)
	}
}

// TestEndToEnd: metadata into memory and a 1 MiB target onto disk through the broker.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	data, w := target(1<<20+5, "model-1.1.0.opkg")
	meta := bytes.Repeat([]byte(`{"signed":"x"}`), 10000)
	r := startRig(t, blobserve.Files{"targets/" + w.Path: data, "meta/2.targets.json": meta}, blobserve.Options{})
	d := startDevice(t, r, r.url, "dev-1", t.TempDir(), fetch.Options{})
	got, err := d.f.FetchMeta(t.Context(), "2.targets.json", 1<<20)
	if err != nil || !bytes.Equal(got, meta) {
		t.Fatalf("FetchMeta = %d bytes, %v", len(got), err)
	}
	if _, err := d.f.FetchMeta(t.Context(), "3.targets.json", 1<<20); err == nil {
		t.Fatal("FetchMeta of a missing file succeeded")
	}
	path, err := d.f.Download(t.Context(), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, data)
	if st := r.srv.Stats(); st.Blocks != 17+3 {
		t.Errorf("server sent %d blocks, want 17 of the target and 3 of the metadata", st.Blocks)
	}
}

// TestMetaFetcherContract runs agent/trust's contract for a MetaFetcher against the real
// downloader, broker and block server: exact bytes, "not found" as fs.ErrNotExist, the
// length limit enforced before the content is read.
func TestMetaFetcherContract(t *testing.T) {
	t.Parallel()
	trusttest.RunMetaFetcher(t, func(t *testing.T, src trusttest.Source) trust.MetaFetcher {
		r := startRig(t, src, blobserve.Options{DeviceRate: 64 << 20, GlobalRate: 64 << 20})
		return startDevice(t, r, r.url, "dev-contract", t.TempDir(), fetch.Options{}).f
	})
}

// TestAgentRestartResumes stops the agent part way through a download, as a reboot would
// (link gone, downloader gone), and starts a new one on the same data directory: it asks only
// for what it lacks.
func TestAgentRestartResumes(t *testing.T) {
	t.Parallel()
	const blocks = 64
	data, w := target(blocks*wire.DefaultBlockSize, "big.opkg")
	r := startRig(t, blobserve.Files{"targets/" + w.Path: data}, blobserve.Options{DeviceRate: 8 << 20})
	dir := t.TempDir()
	d := startDevice(t, r, r.url, "dev-r", dir, fetch.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	_, err := d.f.Download(ctx, w, func(held, _ int64) {
		if held >= blocks/2*wire.DefaultBlockSize {
			cancel()
		}
	})
	if err == nil || ctx.Err() == nil {
		t.Fatalf("interrupted download: %v", err)
	}
	_ = d.link.Close(context.Background())
	before := r.srv.Stats().Blocks

	d2 := startDevice(t, r, r.url, "dev-r", dir, fetch.Options{})
	var first int64 = -1
	path, err := d2.f.Download(t.Context(), w, func(held, _ int64) {
		if first < 0 {
			first = held
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, data)
	if first < blocks/2*wire.DefaultBlockSize {
		t.Errorf("the restarted download began with %d bytes held, want at least %d", first, blocks/2*wire.DefaultBlockSize)
	}
	// Blocks sent after the restart: the missing half, plus at most the requests that were
	// in flight at the stop (two of 16), answered to the old connection or the new one.
	if after := r.srv.Stats().Blocks - before; after > blocks/2+2*wire.MaxBlocksPerRequest {
		t.Errorf("%d blocks sent after the restart, want at most %d", after, blocks/2+2*wire.MaxBlocksPerRequest)
	}
}

// TestControllerRestart stops the answering side mid-download and starts it again: the
// device's requests go unanswered, time out, are asked again and the download completes.
func TestControllerRestart(t *testing.T) {
	t.Parallel()
	const blocks = 48
	data, w := target(blocks*wire.DefaultBlockSize, "c.opkg")
	// Slow enough per device that the download is still running when the server stops.
	r := startRig(t, blobserve.Files{"targets/" + w.Path: data}, blobserve.Options{DeviceRate: 1 << 20})
	d := startDevice(t, r, r.url, "dev-c", t.TempDir(), fetch.Options{IdleTimeout: 300 * time.Millisecond})
	type result struct {
		path string
		err  error
	}
	part := make(chan struct{})
	res := make(chan result, 1)
	go func() {
		var once sync.Once
		p, err := d.f.Download(t.Context(), w, func(held, _ int64) {
			if held >= 8*wire.DefaultBlockSize {
				once.Do(func() { close(part) })
			}
		})
		res <- result{p, err}
	}()
	select {
	case <-part:
	case r := <-res:
		t.Fatalf("download ended before the restart: %v", r.err)
	}
	r.stopSrv()
	time.Sleep(time.Second) // a few idle timeouts with nobody answering
	r.startServer(t)
	got := <-res
	if got.err != nil {
		t.Fatal(got.err)
	}
	if n := r.srv.Stats().Blocks; n == 0 {
		t.Error("the restarted server sent no blocks: the download did not need it")
	}
	path := got.path
	checkFile(t, path, data)
}

// TestMosquitto downloads through Debian's Mosquitto (anonymous access, default limits such
// as 20 QoS 1 messages in flight per client) instead of the embedded broker.
func TestMosquitto(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/mosquitto"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("mosquitto not found; `make test` installs it with scripts/ensure-deps")
			}
			t.Skip("mosquitto not installed")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "mosquitto to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	data, w := target(2<<20+1, "mosq.opkg")
	r := &rig{url: "tcp://" + addr, src: blobserve.Files{"targets/" + w.Path: data}}
	r.startServer(t)
	r.online = watchPresence(t, r)
	d := startDevice(t, r, r.url, "dev-m", t.TempDir(), fetch.Options{})
	path, err := d.f.Download(t.Context(), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, data)
}

// TestThrottledLink downloads through a TCP proxy that limits the device's link to 1 Mbit/s
// each way (the speed figure is BenchmarkThrottledLink's).
func TestThrottledLink(t *testing.T) {
	t.Parallel()
	data, w := target(256<<10, "slow.opkg")
	r := startRig(t, blobserve.Files{"targets/" + w.Path: data}, blobserve.Options{})
	url := throttled(t, r.b.Addr(), 1_000_000/8)
	d := startDevice(t, r, url, "dev-slow", t.TempDir(), fetch.Options{})
	path, err := d.f.Download(t.Context(), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, data)
}

// throttled starts a proxy to addr limited to rate bytes/s each way and returns its URL.
func throttled(t testing.TB, addr string, rate int64) string {
	t.Helper()
	return "tcp://" + startProxy(t, addr, rate).Addr()
}

// startProxy runs a faulttest proxy to addr (rate 0: unlimited) until the test ends.
func startProxy(t testing.TB, addr string, rate int64) *faulttest.Proxy {
	t.Helper()
	p, err := faulttest.NewProxy(faulttest.ProxyOptions{Target: addr, Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

// TestReconnect cuts the device's connection (RST) twice mid-download: the link reconnects
// and subscribes again, the lost requests time out and are asked again, and the download
// completes in the same call.
func TestReconnect(t *testing.T) {
	t.Parallel()
	const blocks = 48
	data, w := target(blocks*wire.DefaultBlockSize, "cut.opkg")
	r := startRig(t, blobserve.Files{"targets/" + w.Path: data}, blobserve.Options{DeviceRate: 2 << 20})
	p := startProxy(t, r.b.Addr(), 0)
	d := startDevice(t, r, "tcp://"+p.Addr(), "dev-cut", t.TempDir(), fetch.Options{IdleTimeout: 500 * time.Millisecond})
	var cuts atomic.Int32
	path, err := d.f.Download(t.Context(), w, func(held, _ int64) {
		if (held >= 10*wire.DefaultBlockSize && cuts.Load() == 0) || (held >= 30*wire.DefaultBlockSize && cuts.Load() == 1) {
			cuts.Add(1)
			p.Cut(true)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, data)
	if n := r.online.count("dev-cut"); n < 2 {
		t.Errorf("device came online %d times, want a reconnection", n)
	}
}

// TestFleet runs 20 devices at once through one broker and server (the 200-device figure is
// BenchmarkFleet's).
func TestFleet(t *testing.T) {
	t.Parallel()
	runFleet(t, 20, 256<<10)
}

// runFleet downloads one target of size bytes to n devices at once and returns the time from
// the first request to the last verified file.
func runFleet(t testing.TB, n, size int) time.Duration {
	data, w := target(size, "fleet.opkg")
	r := startRig(t, blobserve.Files{"targets/" + w.Path: data}, blobserve.Options{})
	devs := make([]*device, n)
	var g errgroup.Group
	g.SetLimit(16)
	for i := range devs {
		g.Go(func() error {
			devs[i] = startDevice(t, r, r.url, fmt.Sprintf("dev-%03d", i), t.TempDir(), fetch.Options{})
			return nil
		})
	}
	_ = g.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	var done atomic.Int64
	g = errgroup.Group{}
	for _, d := range devs {
		g.Go(func() error {
			path, err := d.f.Download(ctx, w, nil)
			if err != nil {
				return err
			}
			checkFile(t, path, data)
			done.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("%d of %d devices done: %v", done.Load(), n, err)
	}
	took := time.Since(start)
	st := r.srv.Stats()
	t.Logf("%d devices × %d bytes in %v (%.1f MiB/s); server: %d blocks, %d rate limited, %d send errors",
		n, size, took.Round(time.Millisecond), float64(n*size)/took.Seconds()/(1<<20), st.Blocks, st.RateLimited, st.SendErrors)
	return took
}

// BenchmarkFleet: a 1 MiB model to 200 downloaders through the embedded broker at the
// server's default rates. Target: ≤ 30 s.
func BenchmarkFleet(b *testing.B) {
	for b.Loop() {
		took := runFleet(b, 200, 1<<20)
		b.ReportMetric(took.Seconds(), "s/fleet")
		if took > 30*time.Second {
			b.Errorf("200 × 1 MiB took %v, target 30 s", took)
		}
	}
}

// BenchmarkThrottledLink: a 4 MiB model to one device over a link limited to 1 Mbit/s each
// way. Target: within 10 % of the link's time for the model's bytes alone.
func BenchmarkThrottledLink(b *testing.B) {
	const size = 4 << 20
	const rate = 1_000_000 / 8 // bytes/s
	data, w := target(size, "4mib.opkg")
	r := startRig(b, blobserve.Files{"targets/" + w.Path: data}, blobserve.Options{})
	url := throttled(b, r.b.Addr(), rate)
	for b.Loop() {
		d := startDevice(b, r, url, "dev-1mbit", b.TempDir(), fetch.Options{})
		start := time.Now()
		path, err := d.f.Download(context.Background(), w, nil)
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		checkFile(b, path, data)
		link := time.Duration(float64(size) / rate * float64(time.Second))
		b.ReportMetric(took.Seconds(), "s/download")
		b.ReportMetric(took.Seconds()/link.Seconds(), "x-link-time")
		b.Logf("4 MiB over 1 Mbit/s: %v, link time %v, ratio %.3f", took.Round(time.Millisecond), link, took.Seconds()/link.Seconds())
		if took > link*11/10 {
			b.Errorf("took %v, more than 10 %% over the link time %v", took, link)
		}
		_ = d.link.Close(context.Background())
	}
}
