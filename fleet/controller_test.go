package fleet_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/boltstore"
	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// startBroker runs an embedded broker on a free loopback port for the test's lifetime.
func startBroker(t *testing.T) *broker.Broker {
	t.Helper()
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return b
}

// runningController is a Controller on its own store in dir, running until stop.
type runningController struct {
	*fleet.Controller
	stop func() error
}

func startController(t *testing.T, b *broker.Broker, dir string, queue int) *runningController {
	t.Helper()
	store, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	user, pass := b.ControllerCredentials()
	c, err := fleet.New(fleet.Options{
		Store: store, BrokerURL: b.URL(), Username: user, Password: pass,
		QueueSize: queue, RetryInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("controller did not stop within 10s")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	waitFor(t, "controller to connect", c.Connected)
	return &runningController{Controller: c, stop: stop}
}

// device is a paho client acting as an agent: it publishes and records the acks it receives.
type device struct {
	t  *testing.T
	id string
	c  paho.Client

	mu        sync.Mutex
	acks      []uint64
	ackEpochs []uint64 // Ack.Epoch of each of acks
	full      []wire.Ack
}

func newDevice(t *testing.T, b *broker.Broker, id string) *device {
	t.Helper()
	d := &device{t: t, id: id}
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetUsername(id).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5*time.Second).
		SetWill(wire.DeviceTopic(id, wire.LeafState), `{"v":1,"device":"`+id+`","state":"offline"}`, 1, true)
	d.c = paho.NewClient(o)
	if tok := d.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device %s connect: %v", id, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(100) })
	tok := d.c.Subscribe(wire.ControllerTopic(id, wire.LeafAck), 1, func(_ paho.Client, m paho.Message) {
		var a wire.Ack
		if err := wire.Decode(m.Payload(), &a); err != nil {
			t.Errorf("device %s: bad ack %q: %v", id, m.Payload(), err)
			return
		}
		d.mu.Lock()
		d.acks = append(d.acks, a.Seq)
		d.ackEpochs = append(d.ackEpochs, a.Epoch)
		d.full = append(d.full, a)
		d.mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device %s subscribe: %v", id, tok.Error())
	}
	return d
}

func (d *device) lastAck() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.acks) == 0 {
		return 0
	}
	return d.acks[len(d.acks)-1]
}

func (d *device) ackCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.acks)
}

func (d *device) publishRaw(leaf string, payload []byte, retained bool) {
	d.t.Helper()
	tok := d.c.Publish(wire.DeviceTopic(d.id, leaf), 1, retained, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		d.t.Fatalf("device %s publish %s: %v", d.id, leaf, tok.Error())
	}
}

func (d *device) publish(leaf string, msg any, retained bool) {
	d.t.Helper()
	b, err := wire.Encode(msg)
	if err != nil {
		d.t.Fatal(err)
	}
	d.publishRaw(leaf, b, retained)
}

func (d *device) results(dropped uint64, seqs ...uint64) {
	d.t.Helper()
	b := &wire.ResultBatch{Device: d.id, DroppedThrough: dropped}
	for _, s := range seqs {
		b.Results = append(b.Results, wire.Result{Seq: s, Time: time.Unix(int64(s), 0).UTC(), Model: "vib@1", Score: float64(s), LatencyUs: 100})
	}
	d.publish(wire.LeafResults, b, false)
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitMessages waits until the controller has taken n device messages in all.
func waitMessages(t *testing.T, c *runningController, n uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("controller to take %d messages", n), func() bool { return c.Stats().Messages >= n })
}

func status(c *runningController, id string) (fleet.DeviceStatus, bool) {
	for _, s := range c.Devices() {
		if s.ID == id {
			return s, true
		}
	}
	return fleet.DeviceStatus{}, false
}

func TestIngestEndToEnd(t *testing.T) {
	b := startBroker(t)
	dir := t.TempDir()
	c := startController(t, b, dir, 0)
	d := newDevice(t, b, "dev-1")

	model := wire.ModelRef{Name: "vib", Version: "1.2.0"}
	d.publish(wire.LeafState, &wire.State{Device: "dev-1", State: wire.StateOnline, Time: time.Now()}, true)
	d.publish(wire.LeafHealth, &wire.Health{Device: "dev-1", Time: time.Now(), Model: model, InferencesPerS: 12.5, LatencyP50Ms: 1.5, LatencyP99Ms: 4, Buffered: 7}, true)

	steps := []struct {
		name    string
		dropped uint64
		seqs    []uint64
		wantAck uint64
	}{
		{"first batch", 0, []uint64{1, 2, 3}, 3},
		{"resend with one new", 0, []uint64{2, 3, 4}, 4},
		{"gap at 5 holds the ack", 0, []uint64{6, 7}, 4},
		{"5 declared dropped, 8 missing", 5, []uint64{9}, 7},
		{"8 arrives", 0, []uint64{8}, 9},
	}
	msgs := uint64(2)
	for _, st := range steps {
		before := d.ackCount()
		d.results(st.dropped, st.seqs...)
		msgs++
		waitMessages(t, c, msgs)
		waitFor(t, st.name+": ack", func() bool { return d.ackCount() > before })
		if got := d.lastAck(); got != st.wantAck {
			t.Fatalf("%s: ack = %d, want %d", st.name, got, st.wantAck)
		}
	}

	// Garbage of every kind is counted and dropped; ingest carries on.
	garbage := []struct {
		leaf    string
		payload string
	}{
		{wire.LeafResults, `{not json`},
		{wire.LeafResults, `{"v":99,"device":"dev-1","results":[]}`},
		{wire.LeafResults, `{"device":"dev-1","results":[]}`},
		{wire.LeafResults, `{"v":1,"device":"dev-2","results":[{"seq":10}]}`},
		{wire.LeafResults, `{"v":1,"device":"dev-1","results":[{"seq":0}]}`},
		{wire.LeafState, `{"v":1,"device":"dev-1","state":"bogus"}`},
		{wire.LeafHealth, `[1,2,3]`},
	}
	for _, g := range garbage {
		d.publishRaw(g.leaf, []byte(g.payload), false)
	}
	msgs += uint64(len(garbage))
	waitMessages(t, c, msgs)
	if got := c.Stats().Malformed; got != uint64(len(garbage)) {
		t.Errorf("Stats().Malformed = %d, want %d", got, len(garbage))
	}
	before := d.ackCount()
	d.results(0, 10)
	waitFor(t, "ack 10 after garbage", func() bool { return d.ackCount() > before && d.lastAck() == 10 })

	// A stranger sending only garbage is not registered.
	x := newDevice(t, b, "dev-x")
	x.publishRaw(wire.LeafResults, []byte("garbage"), false)
	waitFor(t, "stranger's garbage counted", func() bool { return c.Stats().Malformed == uint64(len(garbage))+1 })

	s, ok := status(c, "dev-1")
	if !ok {
		t.Fatal("dev-1 not in Devices()")
	}
	want := fleet.DeviceStatus{ID: "dev-1", Online: true, Model: model, InferencesPerS: 12.5, LatencyP50Ms: 1.5, LatencyP99Ms: 4,
		Buffered: 7, ResultsReceived: 9, Duplicates: 2, Dropped: 1, Acked: 10, Malformed: uint64(len(garbage))}
	got := s
	got.FirstSeen, got.LastSeen, got.StateAt, got.Health = time.Time{}, time.Time{}, time.Time{}, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("status =\n %+v\nwant\n %+v", got, want)
	}
	if s.FirstSeen.IsZero() || s.FirstSeen.After(s.LastSeen) {
		t.Errorf("first seen %v, want set and not after last seen %v", s.FirstSeen, s.LastSeen)
	}
	if s.Health == nil || s.LastSeen.IsZero() || time.Since(s.LastSeen) > time.Minute {
		t.Errorf("status health %v last seen %v", s.Health, s.LastSeen)
	}
	if _, ok := status(c, "dev-x"); ok {
		t.Error("dev-x registered from garbage only")
	}
	st := c.Stats()
	if st.Stored != 9 || st.Duplicates != 2 || st.Dropped != 1 || st.Commits == 0 || st.Commits > st.Batches {
		t.Errorf("Stats() = %+v", st)
	}

	// The device says it goes offline (the agent's last-will carries the same message).
	d.publish(wire.LeafState, &wire.State{Device: "dev-1", State: wire.StateOffline, Time: time.Now()}, true)
	waitFor(t, "dev-1 offline", func() bool { s, _ := status(c, "dev-1"); return !s.Online })

	if err := c.stop(); err != nil {
		t.Fatalf("controller Run: %v", err)
	}

	// The store holds each result exactly once.
	store, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rs, err := store.Results(context.Background(), "dev-1", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range rs {
		seqs = append(seqs, r.Seq)
	}
	if want := []uint64{1, 2, 3, 4, 6, 7, 8, 9, 10}; !slices.Equal(seqs, want) {
		t.Errorf("stored seqs = %v, want %v", seqs, want)
	}
	devs, err := store.Devices(context.Background())
	if err != nil || len(devs) != 1 || devs[0].ID != "dev-1" || devs[0].Model != model || devs[0].Online {
		t.Errorf("stored devices = %+v, %v", devs, err)
	}
}

func TestRestartKeepsExactlyOnce(t *testing.T) {
	b := startBroker(t)
	dir := t.TempDir()
	c := startController(t, b, dir, 0)
	d := newDevice(t, b, "dev-r")
	d.results(0, 1, 2, 3)
	waitFor(t, "ack 3", func() bool { return d.lastAck() == 3 })
	if err := c.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	c = startController(t, b, dir, 0)
	s, ok := status(c, "dev-r")
	if !ok || s.Online || s.ResultsReceived != 3 || s.Acked != 3 {
		t.Fatalf("after restart status = %+v (ok %v), want registered, offline, 3 results, acked 3", s, ok)
	}
	before := d.ackCount()
	d.results(0, 1, 2, 3) // the device never got an ack it trusted and resends
	waitFor(t, "ack re-sent", func() bool { return d.ackCount() > before })
	if got := d.lastAck(); got != 3 {
		t.Fatalf("re-sent ack = %d, want 3", got)
	}
	d.results(0, 3, 4)
	waitFor(t, "ack 4", func() bool { return d.lastAck() == 4 })
	s, _ = status(c, "dev-r")
	if s.ResultsReceived != 4 || s.Duplicates != 4 {
		t.Errorf("status = %+v, want 4 results and 4 duplicates", s)
	}
	// The resend of 1–3, all under the loaded watermark, was answered by an ack alone; the
	// batch holding 4 went to the store.
	if st := c.Stats(); st.Resent != 1 || st.Duplicates != 4 || st.Stored != 1 {
		t.Errorf("Stats() = %+v, want 1 resent batch, 4 duplicates, 1 stored", st)
	}
}

// gatedStore is a real store whose AppendResults waits while the gate is closed, to stall the
// ingest loop on purpose.
type gatedStore struct {
	fleet.Store
	mu   sync.Mutex
	open chan struct{}
}

func (g *gatedStore) AppendResults(ctx context.Context, bs []fleet.Batch) ([]fleet.Appended, error) {
	g.mu.Lock()
	gate := g.open
	g.mu.Unlock()
	select {
	case <-gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Store.AppendResults(ctx, bs)
}

// TestHandlerNeverBlocks stalls the controller's store and floods it through a small queue:
// paho's callback must keep returning (so the broker sees every message acknowledged and paho
// keeps reading pings and SUBACKs), the overflow is dropped and counted, Devices() answers,
// and once the store moves again the devices' resends (no ack covered the dropped batches)
// deliver everything exactly once. Before the hand-off was non-blocking the callback waited
// for queue space, the broker's in-flight count for the controller stayed up, and with it
// paho's reading of every other packet.
func TestHandlerNeverBlocks(t *testing.T) {
	b := startBroker(t)
	store, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedStore{Store: store, open: make(chan struct{})}
	user, pass := b.ControllerCredentials()
	c, err := fleet.New(fleet.Options{Store: g, BrokerURL: b.URL(), Username: user, Password: pass, QueueSize: 8, RetryInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "controller to connect", c.Connected)

	const devices, batches, per = 4, 50, 10
	devs := make([]*device, devices)
	for i := range devs {
		devs[i] = newDevice(t, b, fmt.Sprintf("flood-%d", i))
	}
	payloads := map[*device][][]byte{}
	publishFrom := func(d *device, from int) {
		for i := from; i < batches; i++ {
			d.c.Publish(wire.DeviceTopic(d.id, wire.LeafResults), 1, false, payloads[d][i])
		}
	}
	for _, d := range devs {
		payloads[d] = make([][]byte, batches)
		for i := range batches {
			rb := &wire.ResultBatch{Device: d.id}
			for j := range per {
				s := uint64(i*per + j + 1)
				rb.Results = append(rb.Results, wire.Result{Seq: s, Time: time.Unix(int64(s), 0), Model: "m@1", Score: 1})
			}
			payloads[d][i], _ = wire.Encode(rb)
		}
		// Not waited on one by one: in-flight QoS 1 publishes pile up at the broker.
		publishFrom(d, 0)
	}
	waitFor(t, "the flood to overflow the stalled queue", func() bool { return c.Stats().Overflowed > 0 })
	waitFor(t, "the broker to see every message to the controller acknowledged", func() bool {
		// At most two queues full are held: one being stored, one waiting.
		return b.Inflight(fleet.DefaultClientID) == 0 && c.Stats().Overflowed+2*8 >= devices*batches
	})
	start := time.Now()
	c.Devices()
	c.Stats()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Devices() and Stats() took %v with the store stalled", d)
	}

	close(g.open)
	// Each device goes back to its last ack and sends again, as the agent does after its ack
	// timeout, until everything is acked.
	deadline := time.Now().Add(30 * time.Second)
	for _, d := range devs {
		for d.lastAck() < batches*per {
			if time.Now().After(deadline) {
				t.Fatalf("%s: ack %d after 30s, want %d", d.id, d.lastAck(), batches*per)
			}
			publishFrom(d, int(d.lastAck())/per)
			time.Sleep(200 * time.Millisecond)
		}
	}
	st := c.Stats()
	t.Logf("%d results from %d devices: %d messages overflowed, %d commits", devices*batches*per, devices, st.Overflowed, st.Commits)
	if st.Stored != devices*batches*per {
		t.Errorf("Stats() = %+v, want %d stored", st, devices*batches*per)
	}
}

func TestNewErrors(t *testing.T) {
	store, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tests := []struct {
		name string
		opts fleet.Options
	}{
		{"no store", fleet.Options{BrokerURL: "tcp://127.0.0.1:1883"}},
		{"no url", fleet.Options{Store: store}},
		{"bad scheme", fleet.Options{Store: store, BrokerURL: "http://127.0.0.1:1883"}},
		{"no port", fleet.Options{Store: store, BrokerURL: "tcp://127.0.0.1"}},
		{"garbage", fleet.Options{Store: store, BrokerURL: "::nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := fleet.New(tt.opts); err == nil {
				t.Error("New = nil error, want one")
			}
		})
	}
}

func (d *device) lastAckEpoch() (seq, epoch uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.acks) == 0 {
		return 0, 0
	}
	return d.acks[len(d.acks)-1], d.ackEpochs[len(d.ackEpochs)-1]
}

func gz(t *testing.T, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestEpochsAndCompressedBatches: batches come plain or gzipped on results.z; acks echo the
// batch's epoch; a device that starts a new epoch (its data dir was wiped, seq restarts at 1)
// has its new results stored, not discarded as duplicates; garbage on results.z is counted.
func TestEpochsAndCompressedBatches(t *testing.T) {
	b := startBroker(t)
	dir := t.TempDir()
	c := startController(t, b, dir, 0)
	d := newDevice(t, b, "dev-e")
	batch := func(epoch uint64, seqs ...uint64) []byte {
		rb := &wire.ResultBatch{Device: "dev-e", Epoch: epoch}
		for _, s := range seqs {
			rb.Results = append(rb.Results, wire.Result{Seq: s, Time: time.Unix(int64(s), 0).UTC(), Model: "vib@1", Score: float64(s)})
		}
		p, err := wire.Encode(rb)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	const e1, e2 = 111, 222
	steps := []struct {
		name        string
		leaf        string
		payload     []byte
		seq, epoch  uint64
		stored, dup uint64 // the device table: current epoch's counters
	}{
		{"gzipped", wire.LeafResultsZ, gz(t, batch(e1, 1, 2, 3)), 3, e1, 3, 0},
		{"plain, same epoch", wire.LeafResults, batch(e1, 3, 4), 4, e1, 4, 1},
		{"wiped: new epoch from 1", wire.LeafResultsZ, gz(t, batch(e2, 1, 2)), 2, e2, 2, 0},
		{"late batch of the old epoch", wire.LeafResults, batch(e1, 5), 5, e1, 2, 0},
	}
	for _, st := range steps {
		before := d.ackCount()
		d.publishRaw(st.leaf, st.payload, false)
		waitFor(t, st.name+": ack", func() bool { return d.ackCount() > before })
		if seq, epoch := d.lastAckEpoch(); seq != st.seq || epoch != st.epoch {
			t.Fatalf("%s: ack = seq %d epoch %d, want seq %d epoch %d", st.name, seq, epoch, st.seq, st.epoch)
		}
		s, _ := status(c, "dev-e")
		if s.ResultsReceived != st.stored || s.Duplicates != st.dup {
			t.Fatalf("%s: status %d results %d duplicates, want %d and %d", st.name, s.ResultsReceived, s.Duplicates, st.stored, st.dup)
		}
	}

	// A zip bomb and a corrupt stream are rejected, one line each, and counted.
	bomb := gz(t, bytes.Repeat([]byte(" "), wire.MaxResultsZ+1))
	for _, p := range [][]byte{bomb, []byte("not gzip"), gz(t, []byte("{not json"))} {
		d.publishRaw(wire.LeafResultsZ, p, false)
	}
	waitFor(t, "garbage on results.z counted", func() bool { return c.Stats().Malformed == 3 })

	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	for _, tt := range []struct {
		epoch uint64
		want  []uint64
	}{{e1, []uint64{1, 2, 3, 4, 5}}, {e2, []uint64{1, 2}}} {
		rs, err := store.EpochResults(ctx, "dev-e", tt.epoch, 0, 100)
		var seqs []uint64
		for _, r := range rs {
			seqs = append(seqs, r.Seq)
		}
		if err != nil || !slices.Equal(seqs, tt.want) {
			t.Errorf("EpochResults(dev-e, %d) = %v, %v; want %v", tt.epoch, seqs, err, tt.want)
		}
	}
}

// TestRejectOneResult: a damaged result is rejected alone with a reason in the ack, the ack
// covers it so the device can delete it, and the results around it are stored. Before, the
// whole batch was dropped as malformed and never acked, so the device resent it forever.
func TestRejectOneResult(t *testing.T) {
	b := startBroker(t)
	dir := t.TempDir()
	c := startController(t, b, dir, 0)
	d := newDevice(t, b, "dev-r")
	good := func(seq int) string {
		return fmt.Sprintf(`{"seq":%d,"ts":"2026-01-02T03:04:05Z","model":"vib@1","score":0.1,"latency_us":5}`, seq)
	}
	payload := `{"v":1,"device":"dev-r","epoch":9,"results":[` + good(1) + `,{"seq":2,"ts":"2026-01-02T03:04:05Z","model":"vib@1","score":"NaN"},` + good(3) + `]}`
	d.publishRaw(wire.LeafResults, []byte(payload), false)
	waitFor(t, "ack", func() bool { return d.ackCount() > 0 })
	d.mu.Lock()
	ack := d.full[len(d.full)-1]
	d.mu.Unlock()
	if ack.Seq != 3 || ack.Epoch != 9 || len(ack.Rejected) != 1 || ack.Rejected[0].Seq != 2 || !strings.Contains(ack.Rejected[0].Reason, "score") {
		t.Fatalf("ack = %+v, want seq 3 epoch 9 rejecting seq 2 for its score", ack)
	}
	s, _ := status(c, "dev-r")
	if st := c.Stats(); st.Rejected != 1 || st.Stored != 2 || st.Malformed != 0 || s.Rejected != 1 {
		t.Errorf("Stats() = %+v, device rejected %d; want 2 stored, 1 rejected, none malformed", st, s.Rejected)
	}
	// A batch whose JSON is broken is still refused whole and not acked.
	d.publishRaw(wire.LeafResults, []byte(`{"v":1,"device":"dev-r","epoch":9,"results":[`+good(4)+`,{"seq":5,"score":1.2.3}]}`), false)
	waitFor(t, "broken batch counted", func() bool { return c.Stats().Malformed == 1 })
	if n := d.ackCount(); n != 1 {
		t.Errorf("%d acks, want still 1 (a broken batch is not acked)", n)
	}
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rs, err := store.Results(context.Background(), "dev-r", 0, 10)
	if err != nil || len(rs) != 2 || rs[0].Seq != 1 || rs[1].Seq != 3 {
		t.Errorf("stored %+v, %v; want seqs 1 and 3", rs, err)
	}
}

// TestStateTime: the last-will carries no time, so the controller stamps when it saw it; a
// device clock far in the future is not believed; a plausible device time is kept.
func TestStateTime(t *testing.T) {
	b := startBroker(t)
	c := startController(t, b, t.TempDir(), 0)
	d := newDevice(t, b, "dev-s")
	steps := []struct {
		name  string
		state string
		ts    time.Time
		want  func(sent time.Time, got time.Time) bool
	}{
		{"device time kept", wire.StateOnline, time.Now().Add(-3 * time.Second).UTC(),
			nil},
		{"will without time stamped on arrival", wire.StateOffline, time.Time{},
			func(sent, got time.Time) bool { return !got.Before(sent) && got.Sub(sent) < 5*time.Second }},
		{"future claim replaced", wire.StateOnline, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
			func(sent, got time.Time) bool { return !got.Before(sent) && got.Sub(sent) < 5*time.Second }},
	}
	for i, st := range steps {
		sent := time.Now()
		payload := fmt.Sprintf(`{"v":1,"device":"dev-s","state":%q`, st.state)
		if !st.ts.IsZero() {
			payload += fmt.Sprintf(`,"ts":%q`, st.ts.Format(time.RFC3339Nano))
		}
		// Delivered live, as the broker delivers a will to a subscribed controller.
		d.publishRaw(wire.LeafState, []byte(payload+"}"), false)
		waitMessages(t, c, uint64(i+1))
		s, _ := status(c, "dev-s")
		ok := st.want == nil && s.StateAt.Equal(st.ts) || st.want != nil && st.want(sent, s.StateAt)
		if s.Online != (st.state == wire.StateOnline) || !ok {
			t.Errorf("%s: online %v, StateAt %v (sent at %v)", st.name, s.Online, s.StateAt, sent)
		}
		if s.LastSeen.After(time.Now()) {
			t.Errorf("%s: LastSeen %v in the future", st.name, s.LastSeen)
		}
	}
}

// TestAuthRefused: wrong controller credentials are reported once as an authentication
// refusal, not as an unreachable broker, and retried only every AuthRetry.
func TestAuthRefused(t *testing.T) {
	var logs syncBuffer
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(bctx) }()
	defer func() { bcancel(); <-bdone }()

	store, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var clog syncBuffer
	user, _ := b.ControllerCredentials()
	c, err := fleet.New(fleet.Options{Store: store, BrokerURL: b.URL(), Username: user, Password: "wrong",
		RetryInterval: 20 * time.Millisecond, AuthRetry: 400 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&clog, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(1100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	out := clog.String()
	if n := strings.Count(out, "authentication refused"); n != 1 {
		t.Errorf("controller said %q %d times, want once:\n%s", "authentication refused", n, out)
	}
	if strings.Contains(out, "not reachable") {
		t.Errorf("controller calls a refused login an unreachable broker:\n%s", out)
	}
	// 1.1 s at one attempt per AuthRetry (400 ms) is 3 attempts; at RetryInterval it would be ~50.
	if n := strings.Count(logs.String(), "broker refused connection"); n < 1 || n > 4 {
		t.Errorf("broker saw %d refused attempts in 1.1s, want 1 to 4 (AuthRetry 400ms):\n%s", n, logs.String())
	}
	if c.Connected() {
		t.Error("Connected() with a wrong password")
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDevicesPromptWhileDecoding floods the controller with the largest batches allowed and
// checks that Devices() and Stats() answer promptly meanwhile: decoding happens outside the
// controller's lock. Before, a group of up to 256 messages was decoded under it, so the table
// stalled for as long as the whole group took to decode.
func TestDevicesPromptWhileDecoding(t *testing.T) {
	b := startBroker(t)
	c := startController(t, b, t.TempDir(), 0)
	d := newDevice(t, b, "big")
	// The same 1000 seqs every time: after the first batch they are duplicates, so the store
	// does little and decoding is most of the work.
	rb := &wire.ResultBatch{Device: "big", Epoch: 1}
	for i := range 1000 {
		rb.Results = append(rb.Results, wire.Result{Seq: uint64(i + 1), Time: time.Unix(int64(i), 0), Model: "vib@1.0.0",
			Score: 0.123456, Label: "normal", Outputs: []float32{0.123456, 0.5}, LatencyUs: 1234})
	}
	payload, err := wire.Encode(rb)
	if err != nil {
		t.Fatal(err)
	}
	const batches = 20 // about 3 MB: within the queue's bounds, so none overflows
	var worst time.Duration
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			c.Devices()
			c.Stats()
			worst = max(worst, time.Since(start))
			time.Sleep(time.Millisecond)
		}
	}()
	for range batches {
		d.c.Publish(wire.DeviceTopic("big", wire.LeafResults), 1, false, payload)
	}
	// A batch decoded after the first one committed is every seq a duplicate and is answered
	// as a resend (Resent), one decoded in the same group as the first is stored (Batches):
	// which depends on timing, so count both.
	deadline := time.Now().Add(60 * time.Second)
	for st := c.Stats(); st.Batches+st.Resent < batches; st = c.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %+v, want %d batches stored or answered as resends", st, batches)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	<-polled
	t.Logf("%d batches of %d bytes: slowest Devices()+Stats() %v", batches, len(payload), worst)
	if worst > 500*time.Millisecond {
		t.Errorf("Devices()+Stats() took up to %v while batches were decoded, want well under 500ms", worst)
	}
}

// TestHealthFutureTime: a kept health snapshot claiming a time far in the future must not make
// every later retained snapshot look stale (before, it did, across controller restarts).
func TestHealthFutureTime(t *testing.T) {
	b := startBroker(t)
	dir := t.TempDir()
	c := startController(t, b, dir, 0)
	d := newDevice(t, b, "dev-h")
	d.publish(wire.LeafHealth, &wire.Health{Device: "dev-h", Time: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), Inferences: 1}, true)
	waitMessages(t, c, 1)
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	// While the controller is down the device reports again; the broker retains this one.
	d.publish(wire.LeafHealth, &wire.Health{Device: "dev-h", Time: time.Now(), Inferences: 2}, true)
	// A new session (another client id), so the snapshot arrives as a retained message.
	store, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	user, pass := b.ControllerCredentials()
	c2, err := fleet.New(fleet.Options{Store: store, BrokerURL: b.URL(), Username: user, Password: pass, ClientID: "outpost-controller-2"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c2.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the retained snapshot", func() bool { return c2.Stats().Messages >= 1 })
	for _, s := range c2.Devices() {
		if s.ID == "dev-h" && (s.Health == nil || s.Health.Inferences != 2) {
			t.Errorf("health %+v, want the retained snapshot with 2 inferences", s.Health)
		}
	}
}

// TestDefaultQueueHoldsFleetWindow stalls the store under a burst of 4,000 single-result
// batches, five times what the old default queue took, and checks that the default queue
// takes them all: nothing overflows, so once the store moves every batch is stored and acked
// without a device having to resend after its ack timeout (the scale load's 10 s ack lag,
// docs/performance.md). 1,000 agents can have 8,000 batches unacked; this takes half of that
// with 4 devices to stay quick.
func TestDefaultQueueHoldsFleetWindow(t *testing.T) {
	b := startBroker(t)
	store, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedStore{Store: store, open: make(chan struct{})}
	user, pass := b.ControllerCredentials()
	c, err := fleet.New(fleet.Options{Store: g, BrokerURL: b.URL(), Username: user, Password: pass, RetryInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "controller to connect", c.Connected)

	const devices, batches = 4, 1000
	devs := make([]*device, devices)
	payloads := map[*device][][]byte{}
	for i := range devs {
		d := newDevice(t, b, fmt.Sprintf("burst-%d", i))
		devs[i] = d
		payloads[d] = make([][]byte, batches)
		for j := range batches {
			s := uint64(j + 1)
			payloads[d][j], _ = wire.Encode(&wire.ResultBatch{Device: d.id, Results: []wire.Result{{Seq: s, Time: time.Unix(int64(s), 0), Model: "m@1", Score: 1}}})
		}
	}
	publishFrom := func(d *device, from int) {
		for i := from; i < batches; i++ {
			d.c.Publish(wire.DeviceTopic(d.id, wire.LeafResults), 1, false, payloads[d][i])
		}
	}
	for _, d := range devs {
		publishFrom(d, 0)
	}
	// Every batch is either in the group stalled in the store or waiting in the queue.
	waitFor(t, "the burst to reach the controller", func() bool {
		st := c.Stats()
		return st.Messages+uint64(st.QueueMessages) >= devices*batches || st.Overflowed > 0
	})
	if st := c.Stats(); st.Overflowed != 0 {
		t.Fatalf("%d of %d batches overflowed the default queue", st.Overflowed, devices*batches)
	}

	close(g.open)
	deadline := time.Now().Add(30 * time.Second)
	for _, d := range devs {
		for d.lastAck() < batches {
			if time.Now().After(deadline) {
				t.Fatalf("%s: ack %d after 30s, want %d", d.id, d.lastAck(), batches)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	st := c.Stats()
	t.Logf("%d batches: %d commits, %d overflowed", devices*batches, st.Commits, st.Overflowed)
	if st.Stored != devices*batches || st.Duplicates != 0 || st.Overflowed != 0 {
		t.Errorf("Stats() = %+v, want %d stored, no duplicates or overflow", st, devices*batches)
	}
}

// TestStopUnderStalledStore stops a controller whose store transaction hangs until the drain
// limit cancels it: nothing of that group was acked (its devices resend it), so Run returns
// nil, and the registry is still written.
func TestStopUnderStalledStore(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	dir := t.TempDir()
	store, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedStore{Store: store, open: make(chan struct{})} // never opened
	user, pass := b.ControllerCredentials()
	c, err := fleet.New(fleet.Options{Store: g, BrokerURL: b.URL(), Username: user, Password: pass,
		RetryInterval: 100 * time.Millisecond, DrainTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "controller to connect", c.Connected)

	d := newDevice(t, b, "dev-stall")
	d.results(0, 1, 2, 3)
	d.results(0, 4, 5) // queued behind the stalled group
	waitFor(t, "the device registered", func() bool { return len(c.Devices()) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after the drain limit cut a transaction: %v, want nil (nothing acked, nothing lost)", err)
	}
	if n := d.ackCount(); n != 0 {
		t.Errorf("%d acks published, want none: nothing was stored", n)
	}
	store, err = boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	devs, err := store.Devices(context.Background())
	if err != nil || len(devs) != 1 || devs[0].ID != "dev-stall" {
		t.Errorf("stored registry %+v, %v; want dev-stall written at the stop", devs, err)
	}
	if rs, err := store.Results(context.Background(), "dev-stall", 0, 10); err != nil || len(rs) != 0 {
		t.Errorf("stored results %d, %v; want none", len(rs), err)
	}
}
