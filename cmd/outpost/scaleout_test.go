package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// syncBuffer collects a process's output for polling.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestScaleOutReplicaKilled runs two real `outpost serve --broker --store postgres://`
// replicas against one Debian Mosquitto and one PostgreSQL. Devices (plain MQTT clients that
// behave like the agent's buffer: send, keep until acked, resend what stays unacked) stream
// results; one replica is SIGKILLed mid-ingest, so batches in flight to it and results it
// stored but never acked are resent and reach the other through the shared subscription.
// Afterwards every device's buffer has drained (acked through its last seq), the database
// holds every result exactly once (rows, counters and output summaries agree), and no ack
// ever claimed a seq that was not stored. Replica a is also the elected rollout leader when
// it is killed; b must take over the rollout engine.
func TestScaleOutReplicaKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds outpost and starts Mosquitto and PostgreSQL")
	}
	t.Parallel()
	addr := startMosquitto(t)
	dbURL := pgtest.Start(t, pgtest.Options{}).NewDB(t)
	outpostBin, _ := binaries(t)

	type replica struct {
		cmd *exec.Cmd
		log *syncBuffer
	}
	start := func(name string) *replica {
		r := &replica{log: &syncBuffer{}}
		r.cmd = exec.Command(outpostBin, "serve", "--broker", "tcp://"+addr, "--store", dbURL,
			"--data-dir", t.TempDir(), "--replica", name, "--log-level", "debug")
		r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
		if err := r.cmd.Start(); err != nil {
			t.Fatalf("start replica %s: %v", name, err)
		}
		t.Cleanup(func() {
			stopProcess(t, r.cmd)
			if t.Failed() {
				t.Logf("replica %s log:\n%s", name, r.log.String())
			}
		})
		return r
	}
	// a starts first and so wins the rollout-engine election; killing it below kills the
	// leader, and b must take over.
	const leads = "leader election: this replica leads"
	a := start("a")
	waitLog := func(r *replica, what string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(r.log.String(), what); {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log within 20s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLog(a, leads)
	b := start("b")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(a.log.String(), "controller connected and subscribed") || !strings.Contains(b.log.String(), "controller connected and subscribed") {
		if time.Now().After(deadline) {
			t.Fatal("replicas not subscribed within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	const (
		devices   = 6
		perDevice = 400 // results each device makes
		perBatch  = 5
		every     = 40 * time.Millisecond // about 4 s of production
		resend    = 700 * time.Millisecond
	)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	devs := make([]*fakeDevice, devices)
	for i := range devs {
		devs[i] = newFakeDevice(t, addr, fmt.Sprintf("so-%d", i), uint64(1000+i))
	}
	var g errgroup.Group
	for _, d := range devs {
		g.Go(func() error { return d.run(ctx, perDevice, perBatch, every, resend) })
	}

	// Kill replica a once ingest is well under way on both.
	acked := func() (n uint64) {
		for _, d := range devs {
			n += d.acked()
		}
		return n
	}
	for acked() < devices*perDevice/4 || !strings.Contains(a.log.String(), "results stored") || !strings.Contains(b.log.String(), "results stored") {
		if ctx.Err() != nil {
			t.Fatalf("only %d results acked before the kill", acked())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	killedAt := acked()
	t.Logf("replica a killed at %v", time.Now().Format("15:04:05.000"))
	if strings.Contains(b.log.String(), leads) {
		t.Error("replica b led the rollout engine while a still held the lock")
	}
	// PostgreSQL ends the dead leader's session (its connection closed with the process), which
	// releases the lock; b takes it on its next attempt.
	waitLog(b, leads)
	t.Logf("replica b leads at %v", time.Now().Format("15:04:05.000"))

	if err := g.Wait(); err != nil {
		t.Fatalf("devices did not drain: %v (acked %d of %d; %d when replica a was killed)", err, acked(), devices*perDevice, killedAt)
	}
	t.Logf("devices drained at %v", time.Now().Format("15:04:05.000"))
	if err := stopProcess(t, b.cmd); err != nil {
		t.Errorf("replica b did not stop cleanly: %v", err)
	}

	s, err := pgstore.Open(context.Background(), dbURL, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Each device was registered by whichever replica first received its results.
	if ds, err := s.Devices(ctx); err != nil || len(ds) != devices {
		t.Errorf("registry holds %d devices, %v; want %d", len(ds), err, devices)
	}
	var resent int
	for _, d := range devs {
		resent += d.resent
		st, err := s.ResultStats(ctx, d.id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Stored != perDevice || st.Contiguous != perDevice || st.Epoch != d.epoch {
			t.Errorf("%s: stored %d, watermark %d, epoch %d; want %d stored once each, watermark %d, epoch %d",
				d.id, st.Stored, st.Contiguous, st.Epoch, perDevice, perDevice, d.epoch)
		}
		rs, err := s.Results(ctx, d.id, 0, 2*perDevice)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != perDevice || rs[0].Seq != 1 || rs[len(rs)-1].Seq != perDevice {
			t.Errorf("%s: %d result rows, want seqs 1..%d", d.id, len(rs), perDevice)
		}
		if max := d.maxAck(); max > perDevice {
			t.Errorf("%s: an ack claimed seq %d, beyond the last one made (%d)", d.id, max, perDevice)
		}
		sums, err := s.OutputSummaries(ctx, d.id, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		var counted uint64
		for _, b := range sums {
			counted += b.Count
		}
		if counted != perDevice {
			t.Errorf("%s: output summaries count %d results, want %d (each once)", d.id, counted, perDevice)
		}
	}
	t.Logf("%d devices × %d results: all acked and stored once; replica a killed at %d acked; %d batches resent by devices",
		devices, perDevice, killedAt, resent)
	if !strings.Contains(b.log.String(), "shared=true") {
		t.Errorf("replica b's log does not say it runs with a shared subscription")
	}
}

// fakeDevice publishes results like the agent's buffer: every batch is kept until an ack
// covers it and resent while unacked.
type fakeDevice struct {
	id    string
	epoch uint64
	c     mqtt.Client

	mu     sync.Mutex
	ack    uint64 // highest ack seen
	acks   []uint64
	resent int
}

func newFakeDevice(t *testing.T, addr, id string, epoch uint64) *fakeDevice {
	t.Helper()
	d := &fakeDevice{id: id, epoch: epoch}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(true).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(true).
		SetOnConnectHandler(func(c mqtt.Client) {
			c.Subscribe(wire.ControllerTopic(id, wire.LeafAck), 1, func(_ mqtt.Client, m mqtt.Message) {
				var a wire.Ack
				if wire.Decode(m.Payload(), &a) != nil || a.Epoch != epoch {
					return
				}
				d.mu.Lock()
				d.acks = append(d.acks, a.Seq)
				d.ack = max(d.ack, a.Seq)
				d.mu.Unlock()
			})
		})
	d.c = mqtt.NewClient(opts)
	if tok := d.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device %s connect: %v", id, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(100) })
	return d
}

func (d *fakeDevice) acked() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ack
}

func (d *fakeDevice) maxAck() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slicesMax(d.acks)
}

func slicesMax(xs []uint64) uint64 {
	var m uint64
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// send publishes seqs [from, to] as one batch, QoS 1.
func (d *fakeDevice) send(from, to uint64) error {
	b := wire.ResultBatch{Device: d.id, Epoch: d.epoch}
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for q := from; q <= to; q++ {
		b.Results = append(b.Results, wire.Result{Seq: q, Time: t0.Add(time.Duration(q) * 100 * time.Millisecond),
			Model: "vib@1.0.0", Score: float64(q%10) / 10, Event: q%7 == 0, LatencyUs: 100})
	}
	payload, err := wire.Encode(&b)
	if err != nil {
		return err
	}
	tok := d.c.Publish(wire.DeviceTopic(d.id, wire.LeafResults), 1, false, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("%s: publish not acknowledged by the broker", d.id)
	}
	return tok.Error()
}

// run makes n results in batches of per, one batch every tick, and resends from its ack when
// it has not moved for resend, until every result is acked or ctx ends.
func (d *fakeDevice) run(ctx context.Context, n, per uint64, tick, resend time.Duration) error {
	next := uint64(1)
	lastAck, lastMove := uint64(0), time.Now()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		ack := d.acked()
		if ack >= n {
			return nil
		}
		if ack != lastAck {
			lastAck, lastMove = ack, time.Now()
		}
		if next <= n {
			to := min(next+per-1, n)
			if err := d.send(next, to); err != nil {
				return err
			}
			next = to + 1
		} else if time.Since(lastMove) > resend {
			// Resend everything unacked, as the agent does after its ack timeout.
			for from := ack + 1; from < next; from += per {
				if err := d.send(from, min(from+per-1, next-1)); err != nil {
					return err
				}
				d.mu.Lock()
				d.resent++
				d.mu.Unlock()
			}
			lastMove = time.Now()
		}
		select {
		case <-tk.C:
		case <-ctx.Done():
			return fmt.Errorf("%s: acked %d of %d: %w", d.id, ack, n, ctx.Err())
		}
	}
}
