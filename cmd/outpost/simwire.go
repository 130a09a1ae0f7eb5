package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/pahostore"
)

// The --wire devices of `outpost sim`: what an agent sends and expects on the wire, without
// the sensor, interpreter and buffer behind it, so one process can stand in for thousands of
// devices. Timings follow the agent's defaults (agent.Default*): results leave in a batch per
// commit interval, at most simWindow batches await their ack, and everything unacked is sent
// again after simAckTimeout without progress.
const (
	simCommit     = 100 * time.Millisecond // agent.DefaultCommitInterval
	simWindow     = 8                      // agent.DefaultWindow
	simAckTimeout = 10 * time.Second       // agent.DefaultAckTimeout
	simBatchMax   = 1000                   // agent.DefaultBatchMax
	// simConnecting bounds connection attempts in flight, so thousands of devices do not all
	// open TCP connections (and TLS handshakes) in the same millisecond.
	simConnecting = 100
	// simConnectTime bounds the connection phase before production starts.
	simConnectTime = 2 * time.Minute
)

// simPhases sequence the devices of one run: connect (until connect ends; each device calls
// ready.Done once it is connected or gave up), then, once start is closed, produce until
// produce ends.
type simPhases struct {
	connect, produce context.Context
	start            <-chan struct{}
	ready            *sync.WaitGroup
	sem              chan struct{}
	connected        *atomic.Int64
}

func runWireSim(ctx context.Context, cfg simConfig, creds []simCredential) (simSummary, error) {
	u, err := fleet.ParseBrokerURL(cfg.Broker)
	if err != nil {
		return simSummary{}, err
	}
	sum := simSummary{Mode: "wire", Devices: len(creds)}
	var connected atomic.Int64
	lags := &lagLog{}
	var produced, acked atomic.Uint64
	var lastAck atomic.Int64 // unix ns
	sem := make(chan struct{}, simConnecting)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	// Every device connects first (bounded by simConnectTime); production then starts for
	// all at once, so the figures are the steady state, not the login storm.
	connectCtx, stopConnecting := context.WithTimeout(runCtx, simConnectTime)
	defer stopConnecting()
	produceCtx, stopProducing := context.WithCancel(runCtx)
	defer stopProducing()
	startCh := make(chan struct{})
	var ready sync.WaitGroup
	ready.Add(len(creds))
	ph := simPhases{connect: connectCtx, start: startCh, produce: produceCtx, ready: &ready, sem: sem, connected: &connected}
	g, gctx := errgroup.WithContext(runCtx)
	for _, c := range creds {
		g.Go(func() error {
			if cfg.Rate == 0 {
				return idleDevice(gctx, u.Host, c, ph)
			}
			d := &wireDevice{cfg: cfg, cred: c, lags: lags, produced: &produced, acked: &acked, lastAck: &lastAck}
			return d.run(gctx, ph)
		})
	}
	ready.Wait()
	cfg.Logger.Info("devices connected", "connected", connected.Load(), "devices", len(creds))
	close(startCh)
	start := time.Now()
	producing := time.AfterFunc(cfg.Duration, stopProducing)
	defer producing.Stop()
	<-produceCtx.Done()
	elapsed := time.Since(start)
	// Production has ended; each device then drains, bounded by Drain.
	drainTimer := time.AfterFunc(cfg.Drain, stop)
	defer drainTimer.Stop()
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return simSummary{}, err
	}
	sum.Connected = int(connected.Load())
	sum.Seconds = elapsed.Seconds()
	sum.Produced, sum.Acked = produced.Load(), acked.Load()
	sum.Unacked = sum.Produced - sum.Acked
	sum.LagKind = "per result, from its creation to the ack covering it"
	fillLag(&sum, lags.lags)
	if last := lastAck.Load(); last > 0 {
		sum.AckedSeconds = time.Unix(0, last).Sub(start).Seconds()
		sum.Sustained = float64(sum.Acked) / sum.AckedSeconds
	}
	return sum, nil
}

// wireDevice is one --wire device with a --rate.
type wireDevice struct {
	cfg                   simConfig
	cred                  simCredential
	lags                  *lagLog
	produced, acked       *atomic.Uint64
	lastAck               *atomic.Int64
	epoch                 uint64
	mu                    sync.Mutex
	pending               []wire.Result // unacked, seq order
	created               []time.Time   // creation time of pending[i]
	sent                  int           // pending[:sent] have been sent since the last resend
	inflight              []uint64      // last seq of each batch sent and not yet acked
	lastProgress          time.Time
	ackCh                 chan struct{}
	nextSeq, ackedThrough uint64
}

func (d *wireDevice) run(ctx context.Context, ph simPhases) error {
	var e [8]byte
	rand.Read(e[:])
	d.epoch = binary.BigEndian.Uint64(e[:])%(1<<53-1) + 1 // wire: 1 ≤ epoch < 2^53
	d.nextSeq, d.ackCh, d.lastProgress = 1, make(chan struct{}, 1), time.Now()
	offline, _ := wire.Encode(&wire.State{Device: d.cred.ID, State: wire.StateOffline})
	opts := paho.NewClientOptions().SetStore(pahostore.New()).AddBroker(d.cfg.Broker).
		SetClientID(d.cred.ID).SetUsername(d.cred.ID).SetPassword(d.cred.Secret).
		SetCleanSession(true).SetAutoReconnect(true).SetMaxReconnectInterval(10*time.Second).
		SetConnectTimeout(10*time.Second).SetKeepAlive(60*time.Second).
		SetBinaryWill(wire.DeviceTopic(d.cred.ID, wire.LeafState), offline, 1, true).
		SetOnConnectHandler(func(c paho.Client) {
			// On every (re)connect: listen for acks, announce, and send everything unacked
			// again, as the agent does.
			c.Subscribe(wire.ControllerTopic(d.cred.ID, wire.LeafAck), 1, d.onAck)
			online, _ := wire.Encode(&wire.State{Device: d.cred.ID, State: wire.StateOnline, Time: time.Now()})
			c.Publish(wire.DeviceTopic(d.cred.ID, wire.LeafState), 1, true, online)
			d.mu.Lock()
			d.sent, d.inflight = 0, d.inflight[:0]
			d.mu.Unlock()
		})
	opts.SetConnectRetry(false)
	client := paho.NewClient(opts)
	// The first connection is tried until the connection phase ends, unless the broker
	// refused the login (counted as not connected); paho reconnects by itself after.
	ok := false
	for !ok {
		select {
		case ph.sem <- struct{}{}:
		case <-ph.connect.Done():
			ph.ready.Done()
			return nil
		}
		tok := client.Connect()
		ok = tok.WaitTimeout(30*time.Second) && tok.Error() == nil
		<-ph.sem
		if refused(tok.Error()) {
			ph.ready.Done()
			d.cfg.Logger.Warn("device login refused", "device", d.cred.ID, "err", tok.Error())
			return nil
		}
		if !ok {
			select {
			case <-ph.connect.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
	ph.connected.Add(1)
	ph.ready.Done()
	select {
	case <-ph.start:
	case <-ctx.Done():
		client.Disconnect(250)
		return nil
	}
	defer client.Disconnect(250)

	tick := time.NewTicker(simCommit)
	defer tick.Stop()
	start := time.Now()
	producing := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-d.ackCh:
		}
		now := time.Now()
		if producing && ph.produce.Err() != nil {
			producing = false
		}
		d.mu.Lock()
		if producing {
			// Results due by now at Rate, so the long-run rate is exact whatever the ticks.
			due := uint64(math.Floor(d.cfg.Rate * now.Sub(start).Seconds()))
			for d.nextSeq <= due {
				d.pending = append(d.pending, d.result(d.nextSeq, now))
				d.created = append(d.created, now)
				d.nextSeq++
				d.produced.Add(1)
			}
		}
		if len(d.pending) > 0 && now.Sub(d.lastProgress) > simAckTimeout {
			d.sent, d.inflight, d.lastProgress = 0, d.inflight[:0], now // resend from the watermark
		}
		var batches [][]byte
		for d.sent < len(d.pending) && len(d.inflight) < simWindow && client.IsConnectionOpen() {
			end := min(len(d.pending), d.sent+simBatchMax)
			data, err := wire.Encode(&wire.ResultBatch{Device: d.cred.ID, Epoch: d.epoch, Results: d.pending[d.sent:end]})
			if err != nil {
				d.mu.Unlock()
				return err
			}
			batches = append(batches, data)
			d.sent = end
			d.inflight = append(d.inflight, d.pending[end-1].Seq)
		}
		done := !producing && len(d.pending) == 0
		d.mu.Unlock()
		for _, b := range batches {
			client.Publish(wire.DeviceTopic(d.cred.ID, wire.LeafResults), 1, false, b)
		}
		if done {
			return nil
		}
	}
}

func (d *wireDevice) result(seq uint64, t time.Time) wire.Result {
	score := mrand.Float64() * 0.3
	label, event := "normal", false
	if mrand.IntN(100) == 0 {
		score, label, event = 0.9, "anomaly", true
	}
	return wire.Result{Seq: seq, Time: t, Model: "sim@1.0.0", Score: score, Label: label, Event: event, Outputs: []float32{float32(score)}, LatencyUs: 40}
}

// onAck drops what the ack covers and records each covered result's lag.
func (d *wireDevice) onAck(_ paho.Client, m paho.Message) {
	var a wire.Ack
	if wire.Decode(m.Payload(), &a) != nil || a.Epoch != d.epoch {
		return
	}
	now := time.Now()
	d.mu.Lock()
	n := 0
	for n < len(d.pending) && d.pending[n].Seq <= a.Seq {
		n++
	}
	var lags []time.Duration
	if n > 0 {
		lags = make([]time.Duration, n)
		for i := range n {
			lags[i] = now.Sub(d.created[i])
		}
		d.pending, d.created = d.pending[n:], d.created[n:]
		d.sent = max(d.sent-n, 0)
		k := 0
		for k < len(d.inflight) && d.inflight[k] <= a.Seq {
			k++
		}
		d.inflight = d.inflight[k:]
		d.lastProgress = now
		d.ackedThrough = a.Seq
		d.acked.Add(uint64(n))
		for t := now.UnixNano(); ; {
			old := d.lastAck.Load()
			if old >= t || d.lastAck.CompareAndSwap(old, t) {
				break
			}
		}
	}
	d.mu.Unlock()
	if n > 0 {
		d.lags.add(lags...)
		select {
		case d.ackCh <- struct{}{}:
		default:
		}
	}
}

// idleDevice connects over a bare TCP connection (no client library goroutines, so ten
// thousand of them fit in one process), announces itself online with a retained state as an
// agent does, subscribes to its acks, and stays connected until produceCtx ends, answering
// nothing but keeping the connection alive. Plain tcp:// only.
func idleDevice(ctx context.Context, addr string, c simCredential, ph simPhases) error {
	var conn net.Conn
	for conn == nil {
		select {
		case ph.sem <- struct{}{}:
		case <-ph.connect.Done():
			ph.ready.Done()
			return nil
		}
		var err error
		conn, err = idleConnect(ph.connect, addr, c)
		<-ph.sem
		if errors.Is(err, errRefused) {
			ph.ready.Done()
			return nil
		}
		if err != nil {
			select {
			case <-ph.connect.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
	defer conn.Close()
	ph.connected.Add(1)
	ph.ready.Done()
	// Drain whatever the broker sends (nothing, normally) until the end.
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	ping := time.NewTicker(60 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ph.produce.Done():
			d := packets.NewControlPacket(packets.Disconnect)
			d.Write(conn)
			return nil
		case <-ping.C:
			if err := packets.NewControlPacket(packets.Pingreq).Write(conn); err != nil {
				return nil
			}
		}
	}
}

func idleConnect(ctx context.Context, addr string, c simCredential) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.ClientIdentifier, cp.CleanSession, cp.Keepalive = c.ID, true, 120
	cp.UsernameFlag, cp.Username = true, c.ID
	if c.Secret != "" {
		cp.PasswordFlag, cp.Password = true, []byte(c.Secret)
	}
	offline, _ := wire.Encode(&wire.State{Device: c.ID, State: wire.StateOffline})
	cp.WillFlag, cp.WillQos, cp.WillRetain, cp.WillTopic, cp.WillMessage = true, 1, true, wire.DeviceTopic(c.ID, wire.LeafState), offline
	if err := cp.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	p, err := packets.ReadPacket(r)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: connect: %w", c.ID, err)
	}
	if ca, ok := p.(*packets.ConnackPacket); !ok || ca.ReturnCode != 0 {
		conn.Close()
		return nil, fmt.Errorf("%s: %w: %s", c.ID, errRefused, p.String())
	}
	sp := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sp.MessageID, sp.Topics, sp.Qoss = 1, []string{wire.ControllerTopic(c.ID, wire.LeafAck)}, []byte{1}
	online, _ := wire.Encode(&wire.State{Device: c.ID, State: wire.StateOnline, Time: time.Now()})
	pp := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pp.MessageID, pp.Qos, pp.Retain, pp.TopicName, pp.Payload = 2, 1, true, wire.DeviceTopic(c.ID, wire.LeafState), online
	for _, p := range []packets.ControlPacket{sp, pp} {
		if err := p.Write(conn); err != nil {
			conn.Close()
			return nil, err
		}
	}
	for range 2 {
		if err := expect(r, func(p packets.ControlPacket) bool {
			switch p.(type) {
			case *packets.SubackPacket, *packets.PubackPacket:
				return true
			}
			return false
		}); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%s: %w", c.ID, err)
		}
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// errRefused: the broker answered the login with a refusal.
var errRefused = errors.New("login refused")

// refused reports whether a paho connect error is the broker's refusal of the login.
func refused(err error) bool {
	return errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised)
}

func expect(r *bufio.Reader, ok func(packets.ControlPacket) bool) error {
	p, err := packets.ReadPacket(r)
	if err != nil {
		return err
	}
	if !ok(p) {
		return fmt.Errorf("unexpected %s", p.String())
	}
	return nil
}
