package wire

import (
	"bytes"

	"github.com/klauspost/compress/gzip"
)

// StatefulMin is the payload size from which a Gzipper compresses with a writer that keeps
// its state. Below it, payloads are compressed statelessly.
const StatefulMin = 64 << 10

// Gzipper gzips payloads (LeafResultsZ batches, capture batches) in two ways, chosen by the
// payload's size, so that neither a device sending one small batch a second nor one draining
// a backlog of full batches pays for the other's case:
//
//   - Small payloads (below StatefulMin: live results, a batch a second) are compressed
//     statelessly (klauspost/compress's StatelessCompression): the gzip writer keeps no
//     compressor between calls, and the encoder's scratch comes from pools the runtime
//     empties when it is not used. A writer that keeps its state holds about 0.8 MB (the
//     standard library's, 1.2 MB), which on a device that sends 3 KB a second was the
//     largest thing in its heap after the model (docs/performance.md).
//   - Large payloads (a backlog drained in full batches) reuse one stateful BestSpeed
//     writer, which is faster and allocates nothing per call. It is dropped with the next
//     small payload, once the backlog is gone.
//
// Both write standard gzip (RFC 1952) that any reader accepts. The zero value is ready to
// use; a Gzipper is not safe for concurrent use.
type Gzipper struct {
	buf       bytes.Buffer
	stateful  *gzip.Writer // nil while payloads are small
	stateless *gzip.Writer // holds no compressor: a header, a CRC and a reference to buf
}

// Compress returns p gzipped, in a new slice: a publisher may still hold a payload after its
// publish timed out, so what Compress returns is never reused.
func (z *Gzipper) Compress(p []byte) ([]byte, error) {
	z.buf.Reset()
	zw, err := z.writer(len(p))
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(p); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	out := bytes.Clone(z.buf.Bytes())
	if z.buf.Cap() > 2*StatefulMin {
		// A full batch grew the buffer; small payloads should not keep it.
		z.buf = bytes.Buffer{}
	}
	return out, nil
}

// Stateful reports whether z holds a stateful writer now (for tests).
func (z *Gzipper) Stateful() bool { return z.stateful != nil }

func (z *Gzipper) writer(n int) (*gzip.Writer, error) {
	if n < StatefulMin {
		z.stateful = nil
		return z.reuse(&z.stateless, gzip.StatelessCompression)
	}
	return z.reuse(&z.stateful, gzip.BestSpeed)
}

// reuse resets *w onto z's buffer, making it at level the first time.
func (z *Gzipper) reuse(w **gzip.Writer, level int) (*gzip.Writer, error) {
	if *w == nil {
		zw, err := gzip.NewWriterLevel(&z.buf, level)
		if err != nil {
			return nil, err
		}
		*w = zw
		return zw, nil
	}
	(*w).Reset(&z.buf)
	return *w, nil
}
