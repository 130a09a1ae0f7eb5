package credentials

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The hash format is Mosquitto's own (mosquitto_passwd -H sha512-pbkdf2, its default since
// 2.0): "$7$" ITERATIONS "$" base64(12-byte salt) "$" base64(64-byte PBKDF2-HMAC-SHA512), with
// standard padded base64. Storing this one format lets `outpost broker config` write a
// Mosquitto password file from the store without ever holding a device secret.
const (
	hashPrefix = "$7$"
	saltLen    = 12
	keyLen     = 64
	// DefaultIterations costs about 20 ms per check on a 2-core amd64 laptop core and ~100 ms
	// on a Raspberry Pi class core. Device secrets are 256-bit random strings, so the count
	// only has to make a stolen store useless for guessing human passwords put there by
	// hand; the broker caches verified secrets, so a reconnect storm does not pay it again.
	DefaultIterations = 10000
	// maxIterations bounds the work a hash read from a file can ask for.
	maxIterations = 10_000_000
)

// ErrBadHash is returned for a stored hash that is not in the $7$ format.
var ErrBadHash = errors.New("bad password hash")

// Hash returns the $7$ encoding of password with a fresh random salt.
func Hash(password []byte, iterations int) (string, error) {
	if iterations < 1 || iterations > maxIterations {
		return "", fmt.Errorf("hash iterations %d: want 1 to %d", iterations, maxIterations)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash salt: %w", err)
	}
	key, err := pbkdf2.Key(sha512.New, string(password), salt, iterations, keyLen)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return hashPrefix + strconv.Itoa(iterations) + "$" + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(key), nil
}

// parsed is a decoded $7$ hash.
type parsed struct {
	iterations int
	salt, key  []byte
}

// parseHash decodes a $7$ hash; any other shape is ErrBadHash with the reason.
func parseHash(s string) (parsed, error) {
	rest, ok := strings.CutPrefix(s, hashPrefix)
	if !ok {
		return parsed{}, fmt.Errorf("%w: want the %s (PBKDF2-SHA512) format", ErrBadHash, hashPrefix)
	}
	parts := strings.Split(rest, "$")
	if len(parts) != 3 {
		return parsed{}, fmt.Errorf("%w: want $7$ITERATIONS$SALT$HASH", ErrBadHash)
	}
	n, err := strconv.Atoi(parts[0])
	if err != nil || n < 1 || n > maxIterations || parts[0] != strconv.Itoa(n) {
		return parsed{}, fmt.Errorf("%w: iterations %.20q: want 1 to %d", ErrBadHash, parts[0], maxIterations)
	}
	salt, err := base64.StdEncoding.DecodeString(parts[1])
	if err != nil || len(salt) == 0 || len(salt) > 64 {
		return parsed{}, fmt.Errorf("%w: salt is not 1 to 64 bytes of base64", ErrBadHash)
	}
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(key) != keyLen {
		return parsed{}, fmt.Errorf("%w: hash is not %d bytes of base64", ErrBadHash, keyLen)
	}
	return parsed{iterations: n, salt: salt, key: key}, nil
}

// Verify reports whether password matches the $7$ hash; a malformed hash is an error.
func Verify(hash string, password []byte) (bool, error) {
	p, err := parseHash(hash)
	if err != nil {
		return false, err
	}
	key, err := pbkdf2.Key(sha512.New, string(password), p.salt, p.iterations, keyLen)
	if err != nil {
		return false, fmt.Errorf("verify password: %w", err)
	}
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}
