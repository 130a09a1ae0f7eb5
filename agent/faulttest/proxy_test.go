package faulttest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// echoServer echoes every line back until the client closes; it runs until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(ProxyOptions{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy Run: %v", err)
		}
	})
	return p
}

// roundTrip sends line and reads it back within d.
func roundTrip(c net.Conn, r *bufio.Reader, line string, d time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	return got, err
}

func dialProxy(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	if got, err := roundTrip(c, r, "hello", 2*time.Second); err != nil || got != "hello\n" {
		t.Fatalf("through the healthy proxy: %q, %v", got, err)
	}
	return c, r
}

func TestProxyFaults(t *testing.T) {
	target := echoServer(t)
	tests := []struct {
		name  string
		fault func(p *Proxy)
		want  func(t *testing.T, c net.Conn, r *bufio.Reader)
	}{
		{"cut with FIN", func(p *Proxy) { p.Cut(false) }, wantBroken},
		{"cut with RST", func(p *Proxy) { p.Cut(true) }, wantBroken},
		{"half-close toward client", func(p *Proxy) { p.HalfClose(ToClient) }, wantBroken},
		{"half-close toward server", func(p *Proxy) { p.HalfClose(ToServer) }, wantBroken},
		{"stall", func(p *Proxy) { p.Stall(400 * time.Millisecond) }, func(t *testing.T, c net.Conn, r *bufio.Reader) {
			if _, err := roundTrip(c, r, "early", 150*time.Millisecond); err == nil {
				t.Fatal("a line got through a stalled proxy")
			}
			// The line was held, not lost: it arrives once the stall ends.
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if got, err := r.ReadString('\n'); err != nil || got != "early\n" {
				t.Fatalf("after the stall: %q, %v; want the held line", got, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, target)
			c, r := dialProxy(t, p)
			tt.fault(p)
			tt.want(t, c, r)
			// A new connection works again after every fault.
			p.Stall(0)
			dialProxy(t, p)
		})
	}
}

// wantBroken checks that the client's connection no longer carries a round trip.
func wantBroken(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	if got, err := roundTrip(c, r, "after", 2*time.Second); err == nil {
		t.Fatalf("round trip after the fault returned %q", got)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("round trip after the fault hung: %v", err)
	}
}

func TestProxyRefuse(t *testing.T) {
	p := startProxy(t, echoServer(t))
	p.Refuse(true)
	c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("a refused connection carried data")
	}
	p.Refuse(false)
	dialProxy(t, p)
	if s := p.Stats(); s.Refused != 1 || s.Accepted != 1 {
		t.Fatalf("stats %+v, want 1 refused and 1 accepted", s)
	}
}

func TestProxyChaosStopsHealthy(t *testing.T) {
	p := startProxy(t, echoServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	n := p.Chaos(ctx, ChaosOptions{Seed: 1, MinGap: 20 * time.Millisecond, MaxGap: 50 * time.Millisecond, MaxStall: 100 * time.Millisecond})
	if n < 5 {
		t.Fatalf("%d faults in 600ms with gaps of at most 50ms", n)
	}
	dialProxy(t, p) // neither stalled nor refusing afterwards
}

func TestNewProxyBadTarget(t *testing.T) {
	for _, target := range []string{"", "no-port"} {
		if _, err := NewProxy(ProxyOptions{Target: target}); err == nil {
			t.Errorf("NewProxy(target %q) succeeded", target)
		}
	}
}
