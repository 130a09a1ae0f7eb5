package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
)

// Key files are PEM: "PRIVATE KEY" holds PKCS #8 and "PUBLIC KEY" holds PKIX
// SubjectPublicKeyInfo, the formats `openssl genpkey -algorithm ed25519` and
// `openssl pkey -pubout` use, so keys can be made and inspected with standard tools too.

// GenerateKey returns a new ed25519 key pair from rand (crypto/rand.Reader when nil).
func GenerateKey(rand io.Reader) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	return pub, priv, nil
}

// MarshalPrivateKey returns key as a PEM "PRIVATE KEY" (PKCS #8) block.
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKey returns pub as a PEM "PUBLIC KEY" (PKIX) block.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func pemBlock(data []byte, want string) (*pem.Block, error) {
	b, rest := pem.Decode(data)
	switch {
	case b == nil:
		return nil, fmt.Errorf("no PEM block")
	case b.Type != want:
		return nil, fmt.Errorf("PEM block is %q, want %q", b.Type, want)
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, fmt.Errorf("trailing data after the PEM block")
	}
	return b, nil
}

// ParsePrivateKey reads a PEM PKCS #8 ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	b, err := pemBlock(data, "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse private key: %T is not an ed25519 key", k)
	}
	return priv, nil
}

// ParsePublicKey reads a PEM PKIX ed25519 public key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	b, err := pemBlock(data, "PUBLIC KEY")
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("parse public key: %T is not an ed25519 key", k)
	}
	return pub, nil
}

// KeyID is a short name for a public key: "ed25519:" and the first 8 bytes of its sha256 in
// hex. It identifies, it does not authenticate.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// DemoSeedLabel is the published text the DEMO signing key is derived from. The demo key is
// NOT SECRET: anyone can recompute it, so it proves nothing about who made a package. It
// exists so `make models` signs the sample packages byte-identically. Real deployments make
// their own key with `outpost keys gen` and give devices only that public key.
const DemoSeedLabel = "outpost DEMO model-signing key v1 - public, not secret, never trust in production"

// DemoKey returns the demo private key: ed25519 with seed sha256(DemoSeedLabel).
func DemoKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(DemoSeedLabel))
	return ed25519.NewKeyFromSeed(seed[:])
}
