package fleet

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// maxReason bounds the length of one rejection reason in an Ack, so an Ack stays small even
// when every result of a full batch is rejected.
const maxReason = 100

// errTooLarge is the cause of every size rejection, so tests and counters can tell them apart.
var errTooLarge = errors.New("too large")

// capReader passes through at most max bytes of r; reading more fails with errTooLarge, so a
// decompression bomb costs at most max bytes of output whatever it claims.
type capReader struct {
	r   io.Reader
	n   int64 // bytes read so far
	max int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n >= c.max {
		// Probe one byte: at exactly max the stream may well be over.
		var one [1]byte
		k, err := c.r.Read(one[:])
		if k > 0 {
			return 0, fmt.Errorf("more than %d bytes: %w", c.max, errTooLarge)
		}
		return 0, err
	}
	if rest := c.max - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}

// decodeResults reads one ResultBatch from payload (gzip-compressed when compressed is set) as
// a stream: at most wire.MaxBatchBytes of JSON are read, never held whole, and each result is
// decoded on its own. It returns the batch (accepted results in Results, the others in
// Rejected with a reason) and the number of JSON bytes read.
//
// What is rejected how:
//   - The whole message (err != nil, nothing stored, no ack): a payload that does not
//     decompress, is not JSON, is larger than wire.MaxBatchBytes or carries more than
//     wire.MaxBatchResults results; a missing or unknown "v"; a device other than the
//     topic's; a result that is not valid JSON (after a syntax error the framing of the rest
//     is unknowable, so no seq after it can be trusted); a result whose seq cannot be read or
//     is 0; seqs that do not increase.
//   - One result (listed in Rejected, covered by the ack like a stored one): valid JSON with a
//     readable seq that does not decode as a wire.Result (a wrong type), fails
//     wire.Result.Validate, or is larger than wire.MaxResultBytes.
func decodeResults(device string, payload []byte, compressed bool) (*Batch, int64, error) {
	var src io.Reader = bytes.NewReader(payload)
	if compressed {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, 0, fmt.Errorf("%s payload: %w", wire.LeafResultsZ, err)
		}
		src = zr
	}
	cr := &capReader{r: src, max: wire.MaxBatchBytes}
	b, err := streamBatch(device, json.NewDecoder(cr))
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, cr.n, fmt.Errorf("result batch: %w (limit %d bytes of JSON)", err, wire.MaxBatchBytes)
		}
		return nil, cr.n, fmt.Errorf("result batch: %w", err)
	}
	return b, cr.n, nil
}

// streamBatch walks the batch object token by token; see decodeResults.
func streamBatch(device string, dec *json.Decoder) (*Batch, error) {
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	b := &Batch{Device: device}
	var v *int
	var claimed *string
	var lastSeq uint64
	seenResults := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		switch key {
		case "v":
			err = dec.Decode(&v)
		case "device":
			err = dec.Decode(&claimed)
		case "dropped_through":
			err = dec.Decode(&b.DroppedThrough)
		case "epoch":
			err = dec.Decode(&b.Epoch)
		case "results":
			if seenResults {
				return nil, errors.New(`"results" appears twice`)
			}
			seenResults = true
			err = streamResults(dec, b, &lastSeq)
		default:
			// An unknown field (added in a later minor version) is skipped; its size is
			// bounded by the capReader like everything else.
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			if key != "results" {
				err = fmt.Errorf("field %q: %w", key, err)
			}
			return nil, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	// Anything after the object but white space is an error; reading to the end also makes
	// gzip verify its checksum.
	if tok, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("unexpected %v after the batch object", tok)
		}
		return nil, err
	}
	switch {
	case v == nil:
		return nil, errors.New(`missing schema version "v"`)
	case *v != wire.SchemaVersion:
		return nil, fmt.Errorf("%w %d (want %d)", wire.ErrVersion, *v, wire.SchemaVersion)
	case claimed == nil || *claimed != device:
		got := "<none>"
		if claimed != nil {
			got = *claimed
		}
		return nil, fmt.Errorf("results for device %q on topic of %q", got, device)
	}
	return b, nil
}

// streamResults reads the results array one element at a time.
func streamResults(dec *json.Decoder, b *Batch, lastSeq *uint64) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if tok == nil {
		return nil // "results":null is an empty batch
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("results: want an array, got %v", tok)
	}
	for i := 0; dec.More(); i++ {
		if i == wire.MaxBatchResults {
			return fmt.Errorf("more than %d results: %w", wire.MaxBatchResults, errTooLarge)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("result %d: %w", i, err)
		}
		// One pass for a good result; only a bad one is read again for its seq alone.
		var r wire.Result
		rerr := json.Unmarshal(raw, &r)
		seq := r.Seq
		if rerr != nil {
			var head struct {
				Seq uint64 `json:"seq"`
			}
			if err := json.Unmarshal(raw, &head); err != nil {
				return fmt.Errorf("result %d: no readable seq: %w", i, err)
			}
			seq = head.Seq
		}
		switch {
		case seq == 0:
			return fmt.Errorf("result %d has no seq or seq 0 (seqs start at 1)", i)
		case seq <= *lastSeq:
			return fmt.Errorf("result %d: seq %d after %d (seqs must increase)", i, seq, *lastSeq)
		}
		*lastSeq = seq
		why := ""
		switch {
		case len(raw) > wire.MaxResultBytes:
			why = fmt.Sprintf("result is %d bytes of JSON, more than %d", len(raw), wire.MaxResultBytes)
		case rerr != nil:
			why = rerr.Error()
		default:
			if err := r.Validate(); err != nil {
				why = err.Error()
			}
		}
		if why == "" {
			b.Results = append(b.Results, r)
			continue
		}
		if len(why) > maxReason {
			why = why[:maxReason]
		}
		b.Rejected = append(b.Rejected, wire.Rejected{Seq: seq, Reason: why})
	}
	return expectDelim(dec, ']')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}
