package boltstore

import (
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// FuzzDecodeResult: a stored result value from a damaged file decodes or fails, never panics;
// what encodeResult wrote reads back.
func FuzzDecodeResult(f *testing.F) {
	v, _ := encodeResult(&wire.Result{Seq: 7, Time: time.Unix(1700000000, 0).UTC(), Model: "m@1", Score: 0.5, Label: "x"}, time.Unix(1700000001, 0))
	f.Add(v)
	f.Add([]byte(`{"seq":1,"ts":"2026-01-01T00:00:00Z","model":"m@1","score":1,"latency_us":3}`))
	f.Add([]byte{resultTag, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, recv, err := decodeResult(data)
		if err != nil {
			return
		}
		if _, err := resultTime(data); err != nil {
			t.Fatalf("decodeResult accepted what resultTime refuses: %v", err)
		}
		if recv.IsZero() {
			return // an old plain-JSON value: nothing is ever re-encoded without a received time
		}
		again, err := encodeResult(&r, recv)
		if err != nil {
			return // e.g. a NaN score cannot be re-encoded as JSON
		}
		r2, recv2, err := decodeResult(again)
		if err != nil || r2.Seq != r.Seq || !recv2.Equal(recv) {
			t.Fatalf("round trip: %+v %v %v, want %+v %v", r2, recv2, err, r, recv)
		}
	})
}
