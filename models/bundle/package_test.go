package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// testPackage returns a model, its manifest bytes and a signed package of both.
func testPackage(t testing.TB) (model, manifest, pkg []byte) {
	t.Helper()
	model = []byte("TFL3 not really a model, but the package does not care")
	m := validManifest()
	sum := sha256.Sum256(model)
	m.SHA256, m.Size = hex.EncodeToString(sum[:]), int64(len(model))
	manifest, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	pkg, err = Build(manifest, model, DemoKey())
	if err != nil {
		t.Fatal(err)
	}
	return model, manifest, pkg
}

func demoPub() ed25519.PublicKey { return DemoKey().Public().(ed25519.PublicKey) }

func TestBuildOpenRoundTrip(t *testing.T) {
	model, manifest, pkg := testPackage(t)
	p, err := Open(pkg, demoPub(), Limits{})
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	if !bytes.Equal(p.Model, model) || !bytes.Equal(p.ManifestJSON, manifest) || p.Manifest.Name != "vibration-anomaly-f32" {
		t.Errorf("Open returned other content")
	}
	if FileName(p.Manifest) != "vibration-anomaly-f32-1.0.0.opkg" {
		t.Errorf("FileName = %q", FileName(p.Manifest))
	}
	// Deterministic: same inputs, same bytes; fixed metadata in every header.
	_, _, again := testPackage(t)
	if !bytes.Equal(pkg, again) {
		t.Error("Build is not deterministic")
	}
	tr := tar.NewReader(bytes.NewReader(pkg))
	for _, want := range []string{EntryManifest, EntryModel, EntrySignature} {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != want || h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" ||
			!h.ModTime.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("header %+v", h)
		}
	}
}

// rebuild writes a tar with the given entries (name, data) in order, no checks.
func rebuild(t *testing.T, entries ...[2][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: string(e[0]), Mode: 0o644, Size: int64(len(e[1])), Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func entry(name string, data []byte) [2][]byte { return [2][]byte{[]byte(name), data} }

func TestOpenRejects(t *testing.T) {
	model, manifest, pkg := testPackage(t)
	sig := ed25519.Sign(DemoKey(), SignedMessage(manifest, model))
	_, other, _ := GenerateKey(nil)
	otherPub := other.Public().(ed25519.PublicKey)

	// A manifest edited after signing but still valid and still matching the model.
	m, _ := DecodeManifest(manifest)
	m.Description = "edited after signing"
	edited, _ := m.Encode()
	// A model edited after signing, with a manifest re-pointed at it (only the signature
	// can catch this).
	model2 := append([]byte("X"), model[1:]...)
	sum := sha256.Sum256(model2)
	m.SHA256 = hex.EncodeToString(sum[:])
	repointed, _ := m.Encode()

	bigSize := rebuild(t, entry(EntryManifest, manifest))
	// Patch the size field of the first header to claim a huge manifest.
	copy(bigSize[124:136], []byte("77777777777\x00"))
	chk := headerChecksum(bigSize[:512])
	copy(bigSize[148:156], chk)

	tests := []struct {
		name string
		data []byte
		pub  ed25519.PublicKey
		want string
		is   error
	}{
		{"other key", pkg, otherPub, "signature does not verify", ErrBadSignature},
		{"tampered model", rebuild(t, entry(EntryManifest, manifest), entry(EntryModel, model2), entry(EntrySignature, sig)), demoPub(), "model sha256", ErrFormat},
		{"tampered model and manifest", rebuild(t, entry(EntryManifest, repointed), entry(EntryModel, model2), entry(EntrySignature, sig)), demoPub(), "signature does not verify", ErrBadSignature},
		{"tampered manifest", rebuild(t, entry(EntryManifest, edited), entry(EntryModel, model), entry(EntrySignature, sig)), demoPub(), "signature does not verify", ErrBadSignature},
		{"truncated", pkg[:len(pkg)/2], demoPub(), "truncated", ErrFormat},
		{"truncated header", pkg[:700], demoPub(), "", ErrFormat},
		{"empty", nil, demoPub(), "entry manifest.json is missing", ErrFormat},
		{"not a tar", []byte(strings.Repeat("hello", 200)), demoPub(), "", ErrFormat},
		{"missing signature", rebuild(t, entry(EntryManifest, manifest), entry(EntryModel, model)), demoPub(), "entry signature.ed25519 is missing", ErrFormat},
		{"extra entry", rebuild(t, entry(EntryManifest, manifest), entry(EntryModel, model), entry(EntrySignature, sig), entry("README", []byte("hi"))), demoPub(), `unexpected entry "README"`, ErrFormat},
		{"wrong order", rebuild(t, entry(EntryModel, model), entry(EntryManifest, manifest), entry(EntrySignature, sig)), demoPub(), `entry 1 is "model.tflite"`, ErrFormat},
		{"short signature", rebuild(t, entry(EntryManifest, manifest), entry(EntryModel, model), entry(EntrySignature, sig[:10])), demoPub(), "is 10 bytes, want 64", ErrFormat},
		{"bad manifest", rebuild(t, entry(EntryManifest, []byte(`{"format":1}`)), entry(EntryModel, model), entry(EntrySignature, sig)), demoPub(), "invalid manifest", ErrFormat},
		{"oversized entry", bigSize, demoPub(), "limit 1048576", ErrFormat},
		{"bad public key", pkg, ed25519.PublicKey{1, 2}, "public key is 2 bytes", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.data, tt.pub, Limits{})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Open() = %q, want one line containing %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Open() = %v, want errors.Is %v", err, tt.is)
			}
		})
	}
}

// headerChecksum computes a ustar header checksum field after a test patched the header.
func headerChecksum(h []byte) []byte {
	var sum int64
	for i, c := range h {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	out := []byte("0000000\x00")
	for i := 6; i >= 0; i-- {
		out[i] = byte('0' + sum%8)
		sum /= 8
	}
	return out
}

func TestModelLimit(t *testing.T) {
	_, _, pkg := testPackage(t)
	if _, err := Read(bytes.NewReader(pkg), Limits{MaxModel: 10}); err == nil || !strings.Contains(err.Error(), "entry model.tflite is 54 bytes, limit 10") {
		t.Errorf("Read(limit 10) = %v", err)
	}
}

func TestBuildRejects(t *testing.T) {
	model, manifest, _ := testPackage(t)
	tests := []struct {
		name            string
		manifest, model []byte
		key             ed25519.PrivateKey
		want            string
	}{
		{"model mismatch", manifest, []byte("other"), DemoKey(), "does not match"},
		{"bad manifest", []byte("{}"), model, DemoKey(), "invalid manifest"},
		{"bad key", manifest, model, ed25519.PrivateKey{1}, "private key is 1 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Build(tt.manifest, tt.model, tt.key); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSignedMessage(t *testing.T) {
	msg := SignedMessage([]byte("m"), []byte("t"))
	mh, th := sha256.Sum256([]byte("m")), sha256.Sum256([]byte("t"))
	want := append(append([]byte("outpost-opkg-v1\n"), mh[:]...), th[:]...)
	if !bytes.Equal(msg, want) || len(msg) != 80 {
		t.Errorf("SignedMessage = %x", msg)
	}
}

func TestKeys(t *testing.T) {
	pub, priv, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	priv2, err := ParsePrivateKey(privPEM)
	if err != nil || !priv2.Equal(priv) {
		t.Fatalf("ParsePrivateKey = %v", err)
	}
	pub2, err := ParsePublicKey(pubPEM)
	if err != nil || !pub2.Equal(pub) {
		t.Fatalf("ParsePublicKey = %v", err)
	}
	if !strings.HasPrefix(KeyID(pub), "ed25519:") || len(KeyID(pub)) != len("ed25519:")+16 {
		t.Errorf("KeyID = %q", KeyID(pub))
	}
	tests := []struct {
		name string
		data []byte
		pub  bool
		want string
	}{
		{"public as private", pubPEM, false, `PEM block is "PUBLIC KEY"`},
		{"private as public", privPEM, true, `PEM block is "PRIVATE KEY"`},
		{"garbage", []byte("hello"), true, "no PEM block"},
		{"trailing", append(append([]byte{}, pubPEM...), "junk"...), true, "trailing data"},
		{"bad der", []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), true, "parse public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.pub {
				_, err = ParsePublicKey(tt.data)
			} else {
				_, err = ParsePrivateKey(tt.data)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
	// The demo key is fixed forever: the committed sample packages are signed with it.
	if got := KeyID(demoPub()); got != KeyID(DemoKey().Public().(ed25519.PublicKey)) || !bytes.Equal(DemoKey(), DemoKey()) {
		t.Errorf("DemoKey is not deterministic")
	}
}

func FuzzReadPackage(f *testing.F) {
	_, _, pkg := testPackage(f)
	f.Add(pkg)
	f.Add(pkg[:1024])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Read(bytes.NewReader(data), Limits{MaxModel: 1 << 16})
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("Read error %v does not wrap ErrFormat", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if err := p.Manifest.matchModel(p.Model); err != nil {
			t.Fatalf("accepted package whose model does not match: %v", err)
		}
		if len(p.Signature) != ed25519.SignatureSize {
			t.Fatalf("accepted signature of %d bytes", len(p.Signature))
		}
		_ = p.Verify(demoPub())
	})
}
