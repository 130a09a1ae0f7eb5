// Package trusttest is the contract every trust.MetaFetcher passes: exact content, "not
// found" as fs.ErrNotExist (how go-tuf learns it has the newest root), and the length limit
// enforced while downloading, so an endless answer costs the device a bounded number of
// bytes. The agent's MQTT downloader runs it against the real broker and block server.
package trusttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/trust"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Source serves files by fetch path (wire.FetchMetaPrefix + name), the shape of the
// controller's block server source.
type Source interface {
	Open(path string) (io.ReaderAt, int64, error)
}

// MaxOverread is how many bytes beyond maxLen a fetcher may pull from the source before it
// notices: one window of blocks. A fetcher that knows the size up front reads none.
const MaxOverread = wire.MaxBlocksPerRequest * wire.DefaultBlockSize

// RunMetaFetcher runs the contract against the fetcher setup returns; setup connects it to
// src (through a broker and block server, or directly) and arranges its cleanup on t.
func RunMetaFetcher(t *testing.T, setup func(t *testing.T, src Source) trust.MetaFetcher) {
	files := map[string][]byte{}
	for _, n := range []int{1, 4095, 64 << 10, 64<<10 + 1, 300 << 10} {
		files[fmt.Sprintf("%d.snapshot.json", n)] = random(n)
	}
	files["big.targets.json"] = random(4 << 20)
	src := &memSource{files: files}
	f := setup(t, src)
	ctx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("exact content", func(t *testing.T) {
		for name, want := range files {
			if name == "big.targets.json" {
				continue
			}
			for _, limit := range []int64{int64(len(want)), int64(len(want)) + 1000} {
				got, err := f.FetchMeta(ctx(t), name, limit)
				if err != nil {
					t.Fatalf("FetchMeta(%s, %d) = %v", name, limit, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("FetchMeta(%s, %d): %d bytes differ from the %d served", name, limit, len(got), len(want))
				}
			}
		}
	})
	t.Run("not found", func(t *testing.T) {
		if _, err := f.FetchMeta(ctx(t), "9.root.json", trust.MaxRootBytes); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("FetchMeta(missing) = %v, want an error wrapping fs.ErrNotExist", err)
		}
	})
	t.Run("over the limit", func(t *testing.T) {
		src.read.Store(0)
		_, err := f.FetchMeta(ctx(t), "big.targets.json", 16<<10)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("FetchMeta(4 MiB, limit 16 KiB) = %v, want a length error", err)
		}
		if n := src.read.Load(); n > 16<<10+MaxOverread {
			t.Errorf("fetcher pulled %d bytes from the source for a 16 KiB limit (at most %d)", n, 16<<10+MaxOverread)
		}
		name := fmt.Sprintf("%d.snapshot.json", 300<<10)
		if _, err := f.FetchMeta(ctx(t), name, 300<<10-1); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("FetchMeta one byte over the limit = %v, want a length error", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		c, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		if _, err := f.FetchMeta(c, fmt.Sprintf("%d.snapshot.json", 64<<10), 1<<20); err == nil {
			t.Error("FetchMeta with a cancelled context succeeded")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("FetchMeta took %v to notice a cancelled context", d)
		}
	})
}

func random(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// memSource serves files from memory and counts the bytes read through it.
type memSource struct {
	files map[string][]byte
	read  atomic.Int64
}

func (s *memSource) Open(path string) (io.ReaderAt, int64, error) {
	name, ok := strings.CutPrefix(path, wire.FetchMetaPrefix)
	data, found := s.files[name]
	if !ok || !found {
		return nil, 0, fmt.Errorf("%s: %w", path, fs.ErrNotExist)
	}
	return countingReader{bytes.NewReader(data), &s.read}, int64(len(data)), nil
}

type countingReader struct {
	r *bytes.Reader
	n *atomic.Int64
}

func (c countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}
