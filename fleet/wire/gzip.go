package wire

import (
	"bytes"
	"compress/gzip"
)

// Gzipper gzips payloads (LeafResultsZ batches, capture batches) with one reused writer: a new
// gzip.Writer allocates its whole compressor state, about 1.2 MB at BestSpeed, which a device
// should not do for every batch it sends. The zero value is ready to use; a Gzipper is not
// safe for concurrent use.
type Gzipper struct {
	buf bytes.Buffer
	zw  *gzip.Writer
}

// Compress returns p gzipped at BestSpeed, in a new slice: a publisher may still hold a
// payload after its publish timed out, so what Compress returns is never reused.
func (z *Gzipper) Compress(p []byte) ([]byte, error) {
	z.buf.Reset()
	if z.zw == nil {
		zw, err := gzip.NewWriterLevel(&z.buf, gzip.BestSpeed)
		if err != nil {
			return nil, err
		}
		z.zw = zw
	} else {
		z.zw.Reset(&z.buf)
	}
	if _, err := z.zw.Write(p); err != nil {
		return nil, err
	}
	if err := z.zw.Close(); err != nil {
		return nil, err
	}
	return bytes.Clone(z.buf.Bytes()), nil
}
