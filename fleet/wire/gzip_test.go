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

// TestGzipperReuse: one Gzipper compresses payloads of every size in turn, each gunzips to
// its input, earlier results are not overwritten by later ones, and after the first call it
// allocates about the payloads rather than a compressor each time.
func TestGzipperReuse(t *testing.T) {
	var z wire.Gzipper
	var outs, ins [][]byte
	for i, n := range []int{0, 1, 300, 70_000, 5, 256 << 10, 64} {
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

	p := bytes.Repeat([]byte(`{"seq":1,"score":0.5,"label":"normal"},`), 1600) // 62 KB of JSON
	perCall := func(f func()) uint64 {
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
	reused := perCall(func() { z.Compress(p) })
	fresh := perCall(func() { new(wire.Gzipper).Compress(p) })
	t.Logf("%d-byte payload: %d bytes allocated a call reusing the writer, %d with a new one", len(p), reused, fresh)
	if reused > 64<<10 || fresh < 8*reused {
		t.Errorf("reusing the writer allocates %d bytes a call (a new one %d), want under 64 KiB", reused, fresh)
	}
}
