// Package faulttest holds the agent's fault tests: they drive the real outpost-agent binary
// against a real controller and broker and break things on purpose — SIGKILL at random
// moments, a broker outage, a flaky network, a full disk — and then check that every result
// reached the controller exactly once. The tests wire controller parts (fleet/…) the way cmd/
// does; the only non-test code here is Proxy, a TCP proxy that fakes a bad network.
package faulttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ProxyOptions configure NewProxy. Target is required.
type ProxyOptions struct {
	Listen string // loopback address to listen on; default "127.0.0.1:0"
	Target string // host:port every accepted connection is forwarded to
	// Rate, when positive, limits each direction of each connection to this many bytes/s,
	// like a slow serial link (see throttle.go).
	Rate int64
}

// Proxy forwards TCP connections from its listener to Target and can break them on demand:
// cut them, stall them, half-close them, refuse new ones. Its methods are safe for concurrent
// use.
type Proxy struct {
	ln     net.Listener
	target string
	rate   int64 // bytes/s per direction per connection; 0 unlimited

	// gateMu guards the stall gate: no bytes are forwarded before stallUntil.
	gateMu     sync.Mutex
	stallUntil time.Time
	gateChange chan struct{} // closed and replaced whenever stallUntil changes

	refuse atomic.Bool

	// mu guards conns.
	mu    sync.Mutex
	conns map[*proxyConn]struct{}

	accepted, cuts, stalls, halfCloses, refused atomic.Uint64
}

// proxyConn is one client connection and its upstream.
type proxyConn struct {
	client, upstream *net.TCPConn
	closeOnce        sync.Once
}

func (c *proxyConn) close(reset bool) {
	c.closeOnce.Do(func() {
		if reset {
			// Linger 0 sends RST rather than FIN: the peer sees "connection reset".
			_ = c.client.SetLinger(0)
			_ = c.upstream.SetLinger(0)
		}
		_ = c.client.Close()
		_ = c.upstream.Close()
	})
}

// NewProxy binds the listener; it starts nothing (see Run).
func NewProxy(opts ProxyOptions) (*Proxy, error) {
	if opts.Target == "" {
		return nil, errors.New("proxy: no target")
	}
	if _, _, err := net.SplitHostPort(opts.Target); err != nil {
		return nil, fmt.Errorf("proxy target %q: %w", opts.Target, err)
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("proxy listen on %s: %w", opts.Listen, err)
	}
	return &Proxy{ln: ln, target: opts.Target, rate: opts.Rate, gateChange: make(chan struct{}), conns: map[*proxyConn]struct{}{}}, nil
}

// Addr is the proxy's listening address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Run accepts and forwards until ctx ends, then closes the listener and every connection and
// returns once all its goroutines have stopped.
func (p *Proxy) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() {
		_ = p.ln.Close()
		p.cutAll(false)
	})
	defer stop()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("proxy accept: %w", err)
		}
		client := c.(*net.TCPConn)
		if p.refuse.Load() {
			p.refused.Add(1)
			_ = client.SetLinger(0)
			_ = client.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.serve(ctx, client)
		}()
	}
}

// serve connects client to the target and pumps both ways until either side ends.
func (p *Proxy) serve(ctx context.Context, client *net.TCPConn) {
	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		_ = client.SetLinger(0)
		_ = client.Close()
		return
	}
	pc := &proxyConn{client: client, upstream: up.(*net.TCPConn)}
	p.mu.Lock()
	if ctx.Err() != nil { // Run is stopping: cutAll may already have run
		p.mu.Unlock()
		pc.close(true)
		return
	}
	p.conns[pc] = struct{}{}
	p.mu.Unlock()
	p.accepted.Add(1)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(ctx, pc, pc.upstream, pc.client) }()
	go func() { defer wg.Done(); p.pump(ctx, pc, pc.client, pc.upstream) }()
	wg.Wait()
	pc.close(false)
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
}

// pump copies src to dst, holding bytes while the proxy is stalled. When src ends it
// half-closes dst, so a FIN travels through like it would without the proxy.
func (p *Proxy) pump(ctx context.Context, pc *proxyConn, dst, src *net.TCPConn) {
	buf := make([]byte, p.chunk())
	pace := newPacer(p.rate)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitGate(ctx) || !pace.wait(ctx, n) {
				pc.close(true)
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				pc.close(true)
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = dst.CloseWrite()
				return
			}
			pc.close(true)
			return
		}
	}
}

// waitGate blocks while the proxy is stalled; false means ctx ended first.
func (p *Proxy) waitGate(ctx context.Context) bool {
	for {
		p.gateMu.Lock()
		wait := time.Until(p.stallUntil)
		changed := p.gateChange
		p.gateMu.Unlock()
		if wait <= 0 {
			return true
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-changed:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
}

// Stall stops forwarding in both directions for d (connections stay open, bytes wait). A
// later call replaces the end of the stall; Stall(0) resumes at once.
func (p *Proxy) Stall(d time.Duration) {
	p.stalls.Add(1)
	p.gateMu.Lock()
	p.stallUntil = time.Now().Add(d)
	close(p.gateChange)
	p.gateChange = make(chan struct{})
	p.gateMu.Unlock()
}

// Cut closes every open connection, with a RST when reset is set and a FIN otherwise, and
// returns how many it closed.
func (p *Proxy) Cut(reset bool) int {
	n := p.cutAll(reset)
	p.cuts.Add(uint64(n))
	return n
}

func (p *Proxy) cutAll(reset bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pc := range p.conns {
		pc.close(reset)
	}
	return len(p.conns)
}

// Direction names one direction of a proxied connection.
type Direction int

const (
	ToServer Direction = iota // client → target
	ToClient                  // target → client
)

// HalfClose sends a FIN in one direction of every open connection and leaves the other
// direction open, like a peer that shut down writing. It returns how many it half-closed.
func (p *Proxy) HalfClose(dir Direction) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pc := range p.conns {
		if dir == ToServer {
			_ = pc.upstream.CloseWrite()
		} else {
			_ = pc.client.CloseWrite()
		}
	}
	p.halfCloses.Add(uint64(len(p.conns)))
	return len(p.conns)
}

// Refuse makes the proxy reset new connections (true) or forward them again (false).
func (p *Proxy) Refuse(on bool) { p.refuse.Store(on) }

// ChaosOptions configure Chaos. Zero durations take the defaults noted.
type ChaosOptions struct {
	Seed     uint64
	MinGap   time.Duration                    // shortest time between two faults; default 300ms
	MaxGap   time.Duration                    // longest; default 3s
	MaxStall time.Duration                    // longest stall or refusal period; default 5s
	Log      func(format string, args ...any) // optional, one line per fault
}

// ProxyStats counts what the proxy has done.
type ProxyStats struct {
	Accepted, Cuts, Stalls, HalfCloses, Refused uint64
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{
		Accepted: p.accepted.Load(), Cuts: p.cuts.Load(), Stalls: p.stalls.Load(),
		HalfCloses: p.halfCloses.Load(), Refused: p.refused.Load(),
	}
}

// Chaos injects random faults — cut (FIN or RST), stall, half-close either way, refuse new
// connections for a while — at random intervals until ctx ends, reproducibly for a seed. It
// leaves the proxy healthy (no stall, not refusing) when it returns, and returns how many
// faults it injected.
func (p *Proxy) Chaos(ctx context.Context, opts ChaosOptions) int {
	if opts.MinGap <= 0 {
		opts.MinGap = 300 * time.Millisecond
	}
	if opts.MaxGap < opts.MinGap {
		opts.MaxGap = max(opts.MinGap, 3*time.Second)
	}
	if opts.MaxStall <= 0 {
		opts.MaxStall = 5 * time.Second
	}
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	defer func() {
		p.Refuse(false)
		p.Stall(0)
	}()
	faults := 0
	t := time.NewTimer(between(opts.MinGap, opts.MaxGap))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return faults
		case <-t.C:
		}
		faults++
		// Undo a refusal from the previous fault so that the agent gets chances to reconnect.
		p.Refuse(false)
		switch k := rng.IntN(6); k {
		case 0:
			logf("chaos %d: cut %d connections (FIN)", faults, p.Cut(false))
		case 1:
			logf("chaos %d: cut %d connections (RST)", faults, p.Cut(true))
		case 2:
			d := between(100*time.Millisecond, opts.MaxStall)
			p.Stall(d)
			logf("chaos %d: stall %v", faults, d)
		case 3:
			logf("chaos %d: half-close %d connections toward the server", faults, p.HalfClose(ToServer))
		case 4:
			logf("chaos %d: half-close %d connections toward the client", faults, p.HalfClose(ToClient))
		case 5:
			p.Refuse(true)
			logf("chaos %d: cut %d connections (RST) and refuse new ones until the next fault", faults, p.Cut(true))
		}
		t.Reset(between(opts.MinGap, opts.MaxGap))
	}
}
