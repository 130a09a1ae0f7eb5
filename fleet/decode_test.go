package fleet

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/fleet/wire"
)

func gzipped(t testing.TB, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(p)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// okResult is one valid result's JSON.
func okResult(seq uint64) string {
	return fmt.Sprintf(`{"seq":%d,"ts":"2026-01-02T03:04:05Z","model":"vib@1","score":0.5,"outputs":[0.5],"latency_us":9}`, seq)
}

func batchJSON(results ...string) []byte {
	return []byte(`{"v":1,"device":"d","epoch":5,"results":[` + strings.Join(results, ",") + `]}`)
}

// manyResults is a batch of n minimal valid results, optionally padded to about size bytes by
// an unknown field (receivers skip fields they do not know).
func manyResults(n, size int) []byte {
	rs := make([]string, n)
	for i := range rs {
		rs[i] = okResult(uint64(i + 1))
	}
	p := batchJSON(rs...)
	if pad := size - len(p); pad > 0 {
		p = append([]byte(`{"pad":"`+strings.Repeat("a", pad)+`",`), p[1:]...)
	}
	return p
}

func TestDecodeResults(t *testing.T) {
	tests := []struct {
		name       string
		payload    []byte
		compressed bool
		wantSeqs   []uint64 // accepted
		wantRej    []uint64 // rejected one by one
		rejReason  string   // in the first rejection's reason
		wantErr    string   // the whole batch is rejected
		tooLarge   bool
	}{
		{name: "good", payload: batchJSON(okResult(1), okResult(2)), wantSeqs: []uint64{1, 2}},
		{name: "results null", payload: []byte(`{"v":1,"device":"d","results":null}`)},
		{name: "unknown fields skipped", payload: []byte(`{"x":{"y":[1,2]},"v":1,"device":"d","results":[` + okResult(3) + `],"z":true}`), wantSeqs: []uint64{3}},
		{name: "wrong type in one result", payload: batchJSON(okResult(1), `{"seq":2,"ts":"2026-01-02T03:04:05Z","model":"m@1","score":"high"}`, okResult(3)),
			wantSeqs: []uint64{1, 3}, wantRej: []uint64{2}, rejReason: "score"},
		{name: "implausible result", payload: batchJSON(`{"seq":1,"ts":"2026-01-02T03:04:05Z","model":"m@1","latency_us":-5}`, okResult(2)),
			wantSeqs: []uint64{2}, wantRej: []uint64{1}, rejReason: "negative latency"},
		{name: "result without model", payload: batchJSON(`{"seq":4,"ts":"2026-01-02T03:04:05Z"}`), wantRej: []uint64{4}, rejReason: "model"},
		{name: "oversized result", payload: batchJSON(okResult(1), `{"seq":2,"ts":"2026-01-02T03:04:05Z","model":"m@1","label":"`+strings.Repeat("x", wire.MaxResultBytes)+`"}`),
			wantSeqs: []uint64{1}, wantRej: []uint64{2}, rejReason: "bytes of JSON"},
		{name: "compressed", payload: gzipped(t, batchJSON(okResult(7))), compressed: true, wantSeqs: []uint64{7}},
		{name: "bomb under the cap", payload: gzipped(t, manyResults(wire.MaxBatchResults, wire.MaxBatchBytes-100)), compressed: true,
			wantSeqs: func() []uint64 {
				var s []uint64
				for i := range uint64(wire.MaxBatchResults) {
					s = append(s, i+1)
				}
				return s
			}()},

		{name: "broken JSON inside a result", payload: batchJSON(okResult(1), `{"seq":2,"score":1.2.3}`), wantErr: "result 1"},
		{name: "no seq", payload: batchJSON(`{"ts":"2026-01-02T03:04:05Z","model":"m@1"}`), wantErr: "seq 0"},
		{name: "seq as string", payload: batchJSON(`{"seq":"2"}`), wantErr: "no readable seq"},
		{name: "result not an object", payload: batchJSON(`[1]`), wantErr: "no readable seq"},
		{name: "seqs not increasing", payload: batchJSON(okResult(2), okResult(2)), wantErr: "must increase"},
		{name: "envelope not JSON", payload: []byte(`{not json`), wantErr: "invalid character"},
		{name: "envelope an array", payload: []byte(`[]`), wantErr: "want"},
		{name: "trailing garbage", payload: append(batchJSON(okResult(1)), " x"...), wantErr: "invalid character"},
		{name: "second object", payload: append(batchJSON(okResult(1)), batchJSON(okResult(2))...), wantErr: "after the batch"},
		{name: "results twice", payload: []byte(`{"v":1,"device":"d","results":[],"results":[]}`), wantErr: "twice"},
		{name: "no version", payload: []byte(`{"device":"d","results":[]}`), wantErr: "missing schema version"},
		{name: "unknown version", payload: []byte(`{"v":2,"device":"d","results":[]}`), wantErr: "unsupported schema version"},
		{name: "other device", payload: []byte(`{"v":1,"device":"e","results":[]}`), wantErr: `device "e" on topic of "d"`},
		{name: "no device", payload: []byte(`{"v":1,"results":[]}`), wantErr: "<none>"},
		{name: "not gzip", payload: []byte("plain text"), compressed: true, wantErr: "gzip: invalid header"},
		{name: "corrupt gzip checksum", payload: func() []byte {
			p := gzipped(t, batchJSON(okResult(1)))
			p[len(p)-6] ^= 0xff
			return p
		}(), compressed: true, wantErr: "checksum"},
		{name: "too many results", payload: manyResults(wire.MaxBatchResults+1, 0), wantErr: "more than 5000 results", tooLarge: true},
		{name: "plain batch over the cap", payload: manyResults(10, wire.MaxBatchBytes+1), wantErr: "more than 1048576 bytes", tooLarge: true},
		{name: "bomb over the cap", payload: gzipped(t, manyResults(10, 16<<20)), compressed: true, wantErr: "more than 1048576 bytes", tooLarge: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, n, err := decodeResults("d", tt.payload, tt.compressed)
			if n > wire.MaxBatchBytes {
				t.Errorf("read %d bytes of JSON, more than the cap %d", n, wire.MaxBatchBytes)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("err = %v, want one line containing %q", err, tt.wantErr)
				}
				if errors.Is(err, errTooLarge) != tt.tooLarge {
					t.Errorf("errors.Is(err, errTooLarge) = %v, want %v", !tt.tooLarge, tt.tooLarge)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeResults: %v", err)
			}
			var seqs, rej []uint64
			for _, r := range b.Results {
				seqs = append(seqs, r.Seq)
			}
			for _, r := range b.Rejected {
				rej = append(rej, r.Seq)
				if len(r.Reason) > maxReason || r.Reason == "" {
					t.Errorf("reason %q: want 1 to %d bytes", r.Reason, maxReason)
				}
			}
			if !slices.Equal(seqs, tt.wantSeqs) || !slices.Equal(rej, tt.wantRej) {
				t.Fatalf("accepted %v rejected %v, want %v and %v", seqs, rej, tt.wantSeqs, tt.wantRej)
			}
			if tt.rejReason != "" && !strings.Contains(b.Rejected[0].Reason, tt.rejReason) {
				t.Errorf("reason %q, want it to mention %q", b.Rejected[0].Reason, tt.rejReason)
			}
			if b.Device != "d" {
				t.Errorf("device %q", b.Device)
			}
		})
	}
}

// FuzzDecodeResults: decodeResults never panics, never reads past the cap, and what it accepts
// is consistent: seqs increase across accepted and rejected results, every accepted result
// passes Validate, and re-encoding the accepted ones decodes to the same results.
func FuzzDecodeResults(f *testing.F) {
	for _, seed := range [][]byte{
		batchJSON(okResult(1), okResult(2)),
		batchJSON(okResult(1), `{"seq":2,"score":"x"}`),
		batchJSON(`{"seq":3}`),
		[]byte(`{"v":1,"device":"d","results":null,"dropped_through":9}`),
		[]byte(`{"v":1,"device":"d","results":[{"seq":1,"score":1.2.3}]}`),
		[]byte(`{"v":1,"device":"d","results":[1]}`),
		[]byte(`{"v":1}`),
	} {
		f.Add(seed, false)
	}
	f.Add(gzipped(f, batchJSON(okResult(5))), true)
	f.Fuzz(func(t *testing.T, payload []byte, compressed bool) {
		b, n, err := decodeResults("d", payload, compressed)
		if n > wire.MaxBatchBytes {
			t.Fatalf("read %d bytes, cap %d", n, wire.MaxBatchBytes)
		}
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error not one line: %q", err)
			}
			return
		}
		all := map[uint64]bool{}
		for _, r := range b.Results {
			if err := r.Validate(); err != nil {
				t.Fatalf("accepted seq %d fails Validate: %v", r.Seq, err)
			}
			all[r.Seq] = true
		}
		for _, r := range b.Rejected {
			if r.Seq == 0 || all[r.Seq] {
				t.Fatalf("rejected seq %d is 0 or also accepted", r.Seq)
			}
			all[r.Seq] = true
		}
		if len(all) != len(b.Results)+len(b.Rejected) || len(all) > wire.MaxBatchResults {
			t.Fatalf("%d accepted + %d rejected, %d distinct seqs", len(b.Results), len(b.Rejected), len(all))
		}
		again, err := wire.Encode(&wire.ResultBatch{Device: "d", Results: b.Results})
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		b2, _, err := decodeResults("d", again, false)
		if err != nil || len(b2.Rejected) != 0 || len(b2.Results) != len(b.Results) {
			t.Fatalf("re-decoded: %v, %d results %d rejected, want %d results", err, len(b2.Results), len(b2.Rejected), len(b.Results))
		}
		for i := range b.Results {
			if !b.Results[i].Time.Equal(b2.Results[i].Time) || b.Results[i].Seq != b2.Results[i].Seq {
				t.Fatalf("result %d changed on a round trip", i)
			}
		}
	})
}
