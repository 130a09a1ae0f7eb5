package faulttest

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestProxyRate sends 64 KiB through an echo server behind a proxy limited to 256 KiB/s each
// way: it arrives intact and no sooner than the link allows (the bound checked is the
// limit's own, a quarter second; an upper bound would only measure the machine's load).
func TestProxyRate(t *testing.T) {
	const rate, n = 256 << 10, 64 << 10
	p, err := NewProxy(ProxyOptions{Target: echoServer(t), Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	sent := bytes.Repeat([]byte("0123456789abcdef"), n/16)
	start := time.Now()
	go func() { _, _ = c.Write(sent) }()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !bytes.Equal(got, sent) {
		t.Fatal("bytes changed on the way")
	}
	// Both directions are paced; they overlap, so the floor is one direction's time less
	// the pacer's slack.
	if floor := time.Duration(n)*time.Second/rate - slack; took < floor {
		t.Errorf("%d bytes took %v at %d bytes/s, want at least %v", n, took, rate, floor)
	}
}
