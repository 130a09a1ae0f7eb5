package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// A package (.opkg) is an uncompressed POSIX ustar archive with exactly these three regular
// files, in this order and nothing else:
//
//	manifest.json      the manifest, as signed (bytes are kept verbatim)
//	model.tflite       the model; its sha256 and size are in the manifest
//	signature.ed25519  64 bytes: ed25519 signature of SignedMessage(manifest, model)
//
// Archives are written deterministically: mode 0644, uid/gid 0, no user or group names, and
// every entry's mtime is the manifest's created time, so the same inputs and key always give
// the same bytes (ed25519 signatures are deterministic too).
const (
	EntryManifest  = "manifest.json"
	EntryModel     = "model.tflite"
	EntrySignature = "signature.ed25519"
	// Extension is the package file name extension.
	Extension = ".opkg"
	// SignatureContext starts every signed message; it binds signatures to this format so a
	// signature made for anything else never verifies as a package signature.
	SignatureContext = "outpost-opkg-v1\n"
)

// DefaultMaxModelSize caps model.tflite when Limits.MaxModel is 0: 64 MiB is far above any
// model a Raspberry-Pi-class device runs and far below what would exhaust its memory.
const DefaultMaxModelSize = 64 << 20

// Limits bounds what Read accepts. Sizes are checked from the tar headers before any entry
// is read, so an oversized entry costs nothing.
type Limits struct {
	MaxModel int64 // bytes of model.tflite; 0 means DefaultMaxModelSize
}

// Errors callers branch on.
var (
	ErrBadSignature = errors.New("signature does not verify with this public key")
	ErrFormat       = errors.New("not a valid package")
)

// Package is a package's content as read by Read. The manifest has been decoded and checked
// against the model (sha256 and size); the signature has not been checked until Verify.
type Package struct {
	Manifest     *Manifest
	ManifestJSON []byte // verbatim, as signed
	Model        []byte
	Signature    []byte
}

// SignedMessage is what a package signature signs:
//
//	"outpost-opkg-v1\n" || sha256(manifest.json) || sha256(model.tflite)
//
// (16 + 32 + 32 = 80 bytes). Signing digests rather than the files keeps the message small;
// the manifest also carries the model digest, so either one binds the model.
func SignedMessage(manifestJSON, model []byte) []byte {
	mh, th := sha256.Sum256(manifestJSON), sha256.Sum256(model)
	msg := make([]byte, 0, len(SignatureContext)+2*sha256.Size)
	msg = append(msg, SignatureContext...)
	msg = append(msg, mh[:]...)
	return append(msg, th[:]...)
}

// FileName is the conventional package file name: NAME-VERSION.opkg.
func FileName(m *Manifest) string { return m.Name + "-" + m.Version + Extension }

// Build checks that manifestJSON is a valid manifest describing model (sha256 and size) and
// returns the signed package bytes.
func Build(manifestJSON, model []byte, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("build package: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	m, err := DecodeManifest(manifestJSON)
	if err != nil {
		return nil, fmt.Errorf("build package: %w", err)
	}
	if err := m.matchModel(model); err != nil {
		return nil, fmt.Errorf("build package: %w", err)
	}
	if int64(len(model)) > DefaultMaxModelSize {
		return nil, fmt.Errorf("build package: model is %d bytes, limit %d", len(model), DefaultMaxModelSize)
	}
	created, err := time.Parse(time.RFC3339, m.Created)
	if err != nil {
		return nil, fmt.Errorf("build package: created: %w", err)
	}
	if created.Before(time.Unix(0, 0)) {
		created = time.Unix(0, 0) // ustar cannot store times before 1970
	}
	sig := ed25519.Sign(key, SignedMessage(manifestJSON, model))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name string
		data []byte
	}{{EntryManifest, manifestJSON}, {EntryModel, model}, {EntrySignature, sig}} {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     e.name,
			Mode:     0o644,
			Size:     int64(len(e.data)),
			ModTime:  created.UTC().Truncate(time.Second),
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("build package: %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("build package: %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("build package: %w", err)
	}
	return buf.Bytes(), nil
}

func (m *Manifest) matchModel(model []byte) error {
	sum := sha256.Sum256(model)
	if got := hex.EncodeToString(sum[:]); got != m.SHA256 {
		return fmt.Errorf("model sha256 %s does not match the manifest's %s", got, m.SHA256)
	}
	if int64(len(model)) != m.Size {
		return fmt.Errorf("model is %d bytes, the manifest says %d", len(model), m.Size)
	}
	return nil
}

// Read parses a package from r: exactly the three entries in order, each within its size
// limit, a valid manifest, and a model matching the manifest's digest. It reads at most the
// limits plus a few kilobytes of tar headers. Errors wrap ErrFormat, except read errors of r.
// Read does not check the signature: call Verify.
func Read(r io.Reader, lim Limits) (*Package, error) {
	maxModel := lim.MaxModel
	if maxModel <= 0 {
		maxModel = DefaultMaxModelSize
	}
	limits := []struct {
		name string
		max  int64
	}{{EntryManifest, MaxManifestSize}, {EntryModel, maxModel}, {EntrySignature, ed25519.SignatureSize}}
	// Headers are 512 bytes each plus padding and the end-of-archive blocks; PAX records, if
	// someone adds them, are capped by archive/tar itself. Bound the whole read anyway.
	var total int64 = 64 << 10
	for _, l := range limits {
		total += l.max
	}
	tr := tar.NewReader(io.LimitReader(r, total))
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
	}
	data := make([][]byte, len(limits))
	for i, l := range limits {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, bad("entry %s is missing (archive has %d entries)", l.name, i)
		}
		if err != nil {
			return nil, bad("entry %d: %v", i+1, err)
		}
		switch {
		case hdr.Name != l.name:
			return nil, bad("entry %d is %q, want %q", i+1, hdr.Name, l.name)
		case hdr.Typeflag != tar.TypeReg:
			return nil, bad("entry %s is not a regular file (type %q)", l.name, hdr.Typeflag)
		case hdr.Size < 0 || hdr.Size > l.max:
			return nil, bad("entry %s is %d bytes, limit %d", l.name, hdr.Size, l.max)
		case l.name == EntrySignature && hdr.Size != ed25519.SignatureSize:
			return nil, bad("entry %s is %d bytes, want %d", l.name, hdr.Size, ed25519.SignatureSize)
		}
		b := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, b); err != nil {
			return nil, bad("entry %s is truncated: %v", l.name, err)
		}
		data[i] = b
	}
	switch hdr, err := tr.Next(); {
	case err == nil:
		return nil, bad("unexpected entry %q after %s", hdr.Name, EntrySignature)
	case err != io.EOF:
		return nil, bad("after %s: %v", EntrySignature, err)
	}
	m, err := DecodeManifest(data[0])
	if err != nil {
		return nil, bad("%v", err)
	}
	if err := m.matchModel(data[1]); err != nil {
		return nil, bad("%v", err)
	}
	return &Package{Manifest: m, ManifestJSON: data[0], Model: data[1], Signature: data[2]}, nil
}

// Verify checks the signature with pub; it returns ErrBadSignature (wrapped) when the
// package was not signed by pub's private key or its content changed after signing.
func (p *Package) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("verify package: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(pub, SignedMessage(p.ManifestJSON, p.Model), p.Signature) {
		return fmt.Errorf("verify package %s: %w (key %s)", FileName(p.Manifest), ErrBadSignature, KeyID(pub))
	}
	return nil
}

// Open reads and verifies a package held in memory.
func Open(data []byte, pub ed25519.PublicKey, lim Limits) (*Package, error) {
	p, err := Read(bytes.NewReader(data), lim)
	if err != nil {
		return nil, err
	}
	if err := p.Verify(pub); err != nil {
		return nil, err
	}
	return p, nil
}
