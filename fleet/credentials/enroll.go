package credentials

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// One-time enrollment tokens (outpost devices enroll-token): a device holding one and no
// secret yet redeems it over MQTT for its device id and secret (wire/enroll.go). The store
// keeps only the SHA-256 of each token's secret part: tokens are 256-bit random, so a slow
// hash buys nothing. Redeeming marks the token used and issues the secret in one bbolt
// transaction, so a token can never be redeemed twice.

// Errors Redeem returns; wire's refusal codes follow them.
var (
	ErrTokenUnknown = errors.New("enrollment token unknown or forged")
	ErrTokenUsed    = errors.New("enrollment token already used")
	ErrTokenExpired = errors.New("enrollment token expired")
	// ErrTokenSpec wraps IssueToken's refusals of its TokenSpec.
	ErrTokenSpec = errors.New("enrollment token")
)

// DefaultTokenTTL is how long a token is valid unless told otherwise.
const DefaultTokenTTL = 24 * time.Hour

// MaxTokenTTL bounds a token's life: a forgotten token should not stay usable for years.
const MaxTokenTTL = 366 * 24 * time.Hour

// DefaultEnrollPrefix starts the ids of devices enrolled by a token that fixes neither id nor
// prefix.
const DefaultEnrollPrefix = "device-"

var bucketTokens = []byte("enroll-tokens")

// TokenSpec says what a token enrolls: a fixed device id, or a new one made of Prefix and a
// random suffix.
type TokenSpec struct {
	DeviceID string
	Prefix   string
	TTL      time.Duration // 0: DefaultTokenTTL
}

// TokenRecord is what the store keeps per token.
type TokenRecord struct {
	ID       string    `json:"id"`              // the token's public id part
	Hash     string    `json:"hash"`            // hex SHA-256 of the secret part
	DeviceID string    `json:"device,omitzero"` // fixed id, else
	Prefix   string    `json:"prefix,omitzero"` // prefix of a generated one
	Issued   time.Time `json:"issued"`
	Expires  time.Time `json:"expires"`
	Used     time.Time `json:"used,omitzero"`
	UsedBy   string    `json:"used_by,omitzero"` // the device id it enrolled
}

// IssueToken creates a one-time token; the returned string is the only copy of its secret.
func (s *Store) IssueToken(ctx context.Context, spec TokenSpec) (string, TokenRecord, error) {
	spec, err := s.checkSpec(spec)
	if err != nil {
		return "", TokenRecord{}, fmt.Errorf("%w: %w", ErrTokenSpec, err)
	}
	var idRaw [wire.TokenIDBytes]byte
	secret := make([]byte, wire.TokenSecretBytes)
	if _, err := rand.Read(idRaw[:]); err != nil {
		return "", TokenRecord{}, err
	}
	if _, err := rand.Read(secret); err != nil {
		return "", TokenRecord{}, err
	}
	sum := sha256.Sum256(secret)
	now := time.Now().UTC()
	r := TokenRecord{
		ID: base64.RawURLEncoding.EncodeToString(idRaw[:]), Hash: hex.EncodeToString(sum[:]),
		DeviceID: spec.DeviceID, Prefix: spec.Prefix, Issued: now, Expires: now.Add(spec.TTL),
	}
	if err := ctx.Err(); err != nil {
		return "", TokenRecord{}, err
	}
	v, err := json.Marshal(r)
	if err != nil {
		return "", TokenRecord{}, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketTokens)
		if err != nil {
			return err
		}
		return b.Put([]byte(r.ID), v)
	})
	if err != nil {
		return "", TokenRecord{}, fmt.Errorf("store enrollment token: %w", err)
	}
	return wire.FormatEnrollToken(r.ID, secret), r, nil
}

// enrollSuffixLen is the length of a generated id's random part (6 bytes in hex).
const enrollSuffixLen = 12

// Redeem spends a token at time now: it issues the device its secret and returns the device
// id and secret. A forged, used or expired token is an error wrapping ErrTokenUnknown,
// ErrTokenUsed or ErrTokenExpired, with the details a log line needs.
func (s *Store) Redeem(ctx context.Context, token string, now time.Time) (deviceID, secret string, err error) {
	tid, tsecret, err := wire.ParseEnrollToken(token)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrTokenUnknown, err)
	}
	sum := sha256.Sum256(tsecret)
	// Anyone may send a token, so a bad one is refused before any slow work: a read-only
	// check first, then the device's secret is made (and hashed, the slow part) outside the
	// write transaction, which checks again and holds bbolt's single writer only briefly.
	if err := s.db.View(func(tx *bolt.Tx) error {
		_, err := checkToken(tx, tid, sum, now)
		return err
	}); err != nil {
		return "", "", err
	}
	secret, hash, err := s.newSecret()
	if err != nil {
		return "", "", err
	}
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		r, err := checkToken(tx, tid, sum, now)
		if err != nil {
			return err
		}
		tb := tx.Bucket(bucketTokens)
		db := tx.Bucket(bucketDevices)
		deviceID = r.DeviceID
		if deviceID == "" {
			if deviceID, err = freeID(db, r.Prefix); err != nil {
				return err
			}
		}
		if slices.Contains(s.reserved, deviceID) {
			return fmt.Errorf("device id %q: %w", deviceID, ErrReserved)
		}
		r.Used, r.UsedBy = now.UTC(), deviceID
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := tb.Put([]byte(tid), v); err != nil {
			return err
		}
		// A fixed id replaces any earlier secret and lifts a revocation, as Issue does: the
		// operator who made the token for this id asked for exactly that.
		d, err := json.Marshal(Record{ID: deviceID, Hash: hash, Issued: now.UTC()})
		if err != nil {
			return err
		}
		return db.Put([]byte(deviceID), d)
	})
	if err != nil {
		return "", "", err
	}
	s.forget(deviceID)
	return deviceID, secret, nil
}

// freeID draws prefix + a random suffix not yet in the devices bucket.
func freeID(db *bolt.Bucket, prefix string) (string, error) {
	for range 8 {
		var b [enrollSuffixLen / 2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		id := prefix + hex.EncodeToString(b[:])
		if db.Get([]byte(id)) == nil {
			return id, nil
		}
	}
	return "", errors.New("no free device id for the prefix")
}

// newSecret is a fresh device secret and its stored hash.
func (s *Store) newSecret() (secret, hash string, err error) {
	var raw [SecretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", fmt.Errorf("generate secret: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(raw[:])
	hash, err = Hash([]byte(secret), s.iterations)
	return secret, hash, err
}

// Tokens lists every token, used or not, in id order.
func (s *Store) Tokens(ctx context.Context) ([]TokenRecord, error) {
	var out []TokenRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r TokenRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("enrollment token %s: %w", k, err)
			}
			out = append(out, r)
			return ctx.Err()
		})
	})
	return out, err
}

// checkSpec validates spec and fills in its defaults.
func (s *Store) checkSpec(spec TokenSpec) (TokenSpec, error) {
	if spec.DeviceID != "" && spec.Prefix != "" {
		return spec, errors.New("a fixed device id or a prefix, not both")
	}
	if spec.DeviceID != "" {
		if err := wire.ValidDeviceID(spec.DeviceID); err != nil {
			return spec, err
		}
		if slices.Contains(s.reserved, spec.DeviceID) {
			return spec, fmt.Errorf("device id %q: %w (the controller's MQTT username)", spec.DeviceID, ErrReserved)
		}
	} else {
		if spec.Prefix == "" {
			spec.Prefix = DefaultEnrollPrefix
		}
		// The prefix plus the random suffix must still be a device id.
		if len(spec.Prefix) > 64-enrollSuffixLen {
			return spec, fmt.Errorf("prefix %q: at most %d characters", spec.Prefix, 64-enrollSuffixLen)
		}
		if err := wire.ValidDeviceID(spec.Prefix); err != nil {
			return spec, fmt.Errorf("prefix: %w", err)
		}
	}
	if spec.TTL == 0 {
		spec.TTL = DefaultTokenTTL
	}
	if spec.TTL < time.Second || spec.TTL > MaxTokenTTL {
		return spec, fmt.Errorf("lifetime %v: want 1s to %v", spec.TTL, MaxTokenTTL)
	}
	return spec, nil
}

// checkToken returns the token's record if sum matches it and it is unused and unexpired.
func checkToken(tx *bolt.Tx, tid string, sum [32]byte, now time.Time) (TokenRecord, error) {
	var r TokenRecord
	tb := tx.Bucket(bucketTokens)
	if tb == nil {
		return r, ErrTokenUnknown
	}
	v := tb.Get([]byte(tid))
	if v == nil {
		return r, ErrTokenUnknown
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("enrollment token %s: %w", tid, err)
	}
	want, err := hex.DecodeString(r.Hash)
	if err != nil || subtle.ConstantTimeCompare(want, sum[:]) != 1 {
		return r, ErrTokenUnknown
	}
	switch {
	case !r.Used.IsZero():
		return r, fmt.Errorf("%w (by device %s at %s)", ErrTokenUsed, r.UsedBy, r.Used.Format(time.RFC3339))
	case !now.Before(r.Expires):
		return r, fmt.Errorf("%w (at %s)", ErrTokenExpired, r.Expires.Format(time.RFC3339))
	}
	return r, nil
}
