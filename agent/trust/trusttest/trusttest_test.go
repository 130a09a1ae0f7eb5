package trusttest_test

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/outpost-ml/outpost/agent/trust"
	"github.com/outpost-ml/outpost/agent/trust/trusttest"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// blockFetcher reads a source directly in 64 KiB blocks, checking the size first: the
// smallest fetcher that keeps the contract, to test the contract suite itself.
type blockFetcher struct{ src trusttest.Source }

func (f blockFetcher) FetchMeta(ctx context.Context, name string, maxLen int64) ([]byte, error) {
	r, size, err := f.src.Open(wire.FetchMetaPrefix + name)
	if err != nil {
		return nil, err
	}
	if size > maxLen {
		return nil, fmt.Errorf("%s: %d bytes, limit %d", name, size, maxLen)
	}
	out := make([]byte, 0, size)
	buf := make([]byte, wire.DefaultBlockSize)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && err != io.EOF {
			return nil, err
		}
		out = append(out, buf[:n]...)
	}
	return out, nil
}

func TestContractSuite(t *testing.T) {
	trusttest.RunMetaFetcher(t, func(t *testing.T, src trusttest.Source) trust.MetaFetcher { return blockFetcher{src} })
}
