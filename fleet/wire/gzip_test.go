package wire_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestGzipperReuse: one Gzipper compresses payloads of every size in turn (small ones
// statelessly, large ones with its stateful writer), each gunzips to its input with the
// standard library's reader, earlier results are not overwritten by later ones, and full
// batches reuse one writer rather than allocating a compressor each time.
func TestGzipperReuse(t *testing.T) {
	var z wire.Gzipper
	var outs, ins [][]byte
	for i, n := range []int{0, 1, 300, 70_000, 5, 256 << 10, 64, wire.StatefulMin - 1, wire.StatefulMin, 1 << 20} {
		p := bytes.Repeat([]byte(fmt.Sprintf(`{"seq":%d,"score":0.%d}`, i, i*7)), n/20+1)[:n]
		out, err := z.Compress(p)
		if err != nil {
			t.Fatal(err)
		}
		ins, outs = append(ins, p), append(outs, out)
	}
	for i, out := range outs {
		zr, err := gzip.NewReader(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("payload %d: %v", i, err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, ins[i]) {
			t.Fatalf("payload %d (%d bytes) came back as %d bytes, %v", i, len(ins[i]), len(got), err)
		}
	}

	// Full batches reuse one stateful writer: after the first, a call allocates about its
	// payload, where a new writer would allocate its whole compressor.
	large := bytes.Repeat([]byte(`{"seq":1,"score":0.5,"label":"normal"},`), 6400) // 250 KB of JSON
	reused := allocsPerCall(func() { z.Compress(large) })
	fresh := allocsPerCall(func() { new(wire.Gzipper).Compress(large) })
	t.Logf("%d-byte payload: %d bytes allocated a call reusing the writer, %d with a new one", len(large), reused, fresh)
	if !z.Stateful() || reused > 320<<10 || fresh < reused+512<<10 {
		t.Errorf("full batches: stateful %v, %d bytes a call reusing the writer (a new one %d), want a kept writer and under 320 KiB",
			z.Stateful(), reused, fresh)
	}
}

// TestGzipperSmallPayloadsHoldNothing: a device sending one small batch a second must not
// keep a compressor: after a small payload the Gzipper has dropped its stateful writer, holds
// a few KiB once the runtime has emptied the encoder's pools, and no call allocates a
// compressor.
func TestGzipperSmallPayloadsHoldNothing(t *testing.T) {
	small := bytes.Repeat([]byte(`{"seq":1,"score":0.5,"label":"normal"},`), 100) // 3.9 KB
	z := new(wire.Gzipper)
	if _, err := z.Compress(bytes.Repeat(small, 100)); err != nil { // a full batch first
		t.Fatal(err)
	}
	if !z.Stateful() {
		t.Fatal("a 390 KB payload did not use the stateful writer")
	}
	held := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC() // the second empties sync.Pool's victim cache
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := held()
	out, err := z.Compress(small)
	if err != nil {
		t.Fatal(err)
	}
	after := held()
	runtime.KeepAlive(z)
	if z.Stateful() {
		t.Error("the stateful writer was kept after a small payload")
	}
	if after > base && after-base > 64<<10 {
		t.Errorf("after a small payload the Gzipper holds %d bytes more, want under 64 KiB", after-base)
	}
	perCall := allocsPerCall(func() { z.Compress(small) })
	t.Logf("%d-byte payload: %d bytes gzipped, %d bytes allocated a call, held after a GC %+d bytes", len(small), len(out), perCall, int64(after)-int64(base))
	// Between collections the encoder's scratch comes from its pools (about 15 KB a call
	// here); a collection empties them, and other tests running beside this one make those
	// frequent (105 KB a call in CI), so the bound is the one that matters: never a stateful
	// compressor (0.8 MB) per small payload.
	if perCall > 400<<10 {
		t.Errorf("a small payload allocates %d bytes a call, want under 400 KiB (a stateful writer is 0.8 MB)", perCall)
	}
	if len(out) > len(small)/4 {
		t.Errorf("%d bytes of repetitive JSON gzipped to %d", len(small), len(out))
	}
}

// allocsPerCall is the bytes f allocates a call, over 20 calls.
func allocsPerCall(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	const n = 20
	for range n {
		f()
	}
	runtime.ReadMemStats(&b)
	return (b.TotalAlloc - a.TotalAlloc) / n
}
