// Package credentials keeps the per-device MQTT secrets the controller issues at provisioning
// (`outpost devices add`) and the revocations (`outpost devices revoke`), in a bbolt file of
// its own in the controller's data directory. It stores only a salted PBKDF2-SHA512 hash of
// each secret, in Mosquitto's $7$ format, so the same records check devices on the embedded
// broker (fleet/broker) and become a Mosquitto password file (MosquittoPasswd).
//
// A revoked device keeps a record (a tombstone) so that a client certificate naming it is
// refused too; issuing it a new secret lifts the revocation.
package credentials

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// FileName is the store's file inside the data directory.
const FileName = "credentials.db"

// SecretBytes is the entropy of an issued secret; it is printed as unpadded base64url.
const SecretBytes = 32

// Errors Check returns; callers branch on them to word the refusal.
var (
	ErrUnknown  = errors.New("no credentials issued for this device (outpost devices add)")
	ErrRevoked  = errors.New("device revoked")
	ErrPassword = errors.New("wrong password")
	// ErrReserved is Issue's answer for an id in Options.Reserved.
	ErrReserved = errors.New("id reserved")
)

var bucketDevices = []byte("devices")

// Record is what the store keeps per device.
type Record struct {
	ID      string    `json:"id"`
	Hash    string    `json:"hash,omitempty"` // $7$…; empty for a device revoked before it had one
	Issued  time.Time `json:"issued,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"` // zero while the device may connect
}

// Options configure Open.
type Options struct {
	// Iterations of PBKDF2 for new secrets; default DefaultIterations.
	Iterations int
	// LockTimeout bounds the wait for bbolt's file lock; default 1s.
	LockTimeout time.Duration
	// Reserved ids get no secret: the controller's MQTT username is one, since a device
	// record under it would clash with the controller's own line in a Mosquitto password file.
	Reserved []string
}

// Store is the credential store. Its methods are safe for concurrent use.
type Store struct {
	db         *bolt.DB
	iterations int
	reserved   []string

	// mu guards verified: device id → SHA-256 of the secret last verified against the
	// stored hash, so a reconnecting device costs one SHA-256, not a PBKDF2 run. Issue and
	// Revoke drop the entry.
	mu       sync.Mutex
	verified map[string][32]byte
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Iterations == 0 {
		opts.Iterations = DefaultIterations
	}
	if opts.Iterations < 1 || opts.Iterations > maxIterations {
		return nil, fmt.Errorf("credential hash iterations %d: want 1 to %d", opts.Iterations, maxIterations)
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open credentials %s: locked by another process (is the controller running? use the API)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open credentials %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketDevices)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("init credentials %s: %w", path, err)
	}
	return &Store{db: db, iterations: opts.Iterations, reserved: opts.Reserved, verified: map[string][32]byte{}}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Issue creates a new secret for the device, replacing any earlier one and lifting a
// revocation, and returns it: the only time it exists outside the device.
func (s *Store) Issue(ctx context.Context, id string) (string, error) {
	if err := wire.ValidDeviceID(id); err != nil {
		return "", err
	}
	if slices.Contains(s.reserved, id) {
		return "", fmt.Errorf("device id %q: %w (the controller's MQTT username)", id, ErrReserved)
	}
	var raw [SecretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(raw[:])
	hash, err := Hash([]byte(secret), s.iterations)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.forget(id)
	err = s.put(Record{ID: id, Hash: hash, Issued: time.Now().UTC()})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// Revoke refuses the device from now on (its secret and any client certificate naming it).
// Revoking a device the store has never seen records the revocation all the same, since a
// device with a client certificate needs no secret to connect.
func (s *Store) Revoke(ctx context.Context, id string) error {
	if err := wire.ValidDeviceID(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.forget(id)
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		r := Record{ID: id}
		if v := b.Get([]byte(id)); v != nil {
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("credentials of %s: %w", id, err)
			}
		}
		if !r.Revoked.IsZero() {
			return nil
		}
		r.Revoked = time.Now().UTC()
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), v)
	})
}

// Check returns nil when password is the device's current secret, else ErrUnknown,
// ErrRevoked or ErrPassword.
func (s *Store) Check(id string, password []byte) error {
	r, err := s.get(id)
	if err != nil {
		return err
	}
	switch {
	case r == nil || r.Hash == "" && r.Revoked.IsZero():
		return ErrUnknown
	case !r.Revoked.IsZero():
		return ErrRevoked
	}
	sum := sha256.Sum256(password)
	s.mu.Lock()
	cached, ok := s.verified[id]
	s.mu.Unlock()
	if ok && subtle.ConstantTimeCompare(cached[:], sum[:]) == 1 {
		return nil
	}
	ok, err = Verify(r.Hash, password)
	if err != nil {
		return fmt.Errorf("credentials of %s: %w", id, err)
	}
	if !ok {
		return ErrPassword
	}
	s.mu.Lock()
	s.verified[id] = sum
	s.mu.Unlock()
	return nil
}

// Revoked reports whether the device was revoked (for logins by client certificate).
func (s *Store) Revoked(id string) bool {
	r, err := s.get(id)
	// A store that cannot be read refuses: an unreadable record is no proof of good standing.
	return err != nil || r != nil && !r.Revoked.IsZero()
}

// List returns every record, sorted by id.
func (s *Store) List(ctx context.Context) ([]Record, error) {
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("credentials of %s: %w", k, err)
			}
			out = append(out, r)
			return ctx.Err()
		})
	})
	slices.SortFunc(out, func(a, b Record) int { return bytes.Compare([]byte(a.ID), []byte(b.ID)) })
	return out, err
}

// MosquittoPasswd is a Mosquitto password file ("id:$7$…" lines) of every device that may
// connect, sorted by id. The controller's own user is not in it; add it with
// mosquitto_passwd (see docs/operations.md).
func (s *Store) MosquittoPasswd(ctx context.Context) ([]byte, error) {
	rs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, r := range rs {
		if r.Revoked.IsZero() && r.Hash != "" {
			fmt.Fprintf(&buf, "%s:%s\n", r.ID, r.Hash)
		}
	}
	return buf.Bytes(), nil
}

func (s *Store) forget(id string) {
	s.mu.Lock()
	delete(s.verified, id)
	s.mu.Unlock()
}

func (s *Store) put(r Record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketDevices).Put([]byte(r.ID), v) })
}

// get returns the device's record, nil if there is none.
func (s *Store) get(id string) (*Record, error) {
	var r *Record
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDevices).Get([]byte(id))
		if v == nil {
			return nil
		}
		r = new(Record)
		if err := json.Unmarshal(v, r); err != nil {
			return fmt.Errorf("credentials of %s: %w", id, err)
		}
		return nil
	})
	return r, err
}
