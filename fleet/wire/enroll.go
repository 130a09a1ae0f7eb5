package wire

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Enrollment: a device holding a one-time token (outpost devices enroll-token) and no
// credentials yet registers itself over MQTT (docs/firmware.md, "Enrollment"):
//
//   - It connects with username EnrollUser and no password: the broker admits any enrollment
//     login (the token is checked by the controller, which can say why it refuses one) but
//     lets it publish only EnrollRequestTopic(session) and
//     subscribe only EnrollResponseTopic(session), where session is its MQTT client id (32
//     lowercase hex characters it draws at random). It can reach no device topic and no
//     other session's response.
//   - It publishes an EnrollRequest (QoS 1) with the token; the controller redeems the token
//     (single use, unexpired), issues the device its secret and answers with an
//     EnrollResponse on the session's response topic: the device id and secret, or why the
//     token was refused.
//   - The device writes an Identity file (0600, atomically) and reconnects as the device.
//
// The topics live outside Root, so no observer subscription to outpost/# can ever see a
// response carrying a secret.

// EnrollUser is the MQTT username of enrollment logins. '$' is not allowed in device ids, so
// it can never be mistaken for one.
const EnrollUser = "$enroll"

// EnrollRoot prefixes the enrollment topics.
const EnrollRoot = "outpost-enroll/v1"

// EnrollRequestWildcard is what the controller subscribes to.
const EnrollRequestWildcard = EnrollRoot + "/+/req"

// EnrollSessionLen is the length of a session id: 16 random bytes in lowercase hex.
const EnrollSessionLen = 32

// Limits of enrollment messages.
const (
	MaxEnrollMessage = 4096 // bytes of any enrollment message or identity file
	MaxSecretLen     = 256  // bytes of a device secret
	MaxReasonLen     = 200  // bytes of a refusal reason
)

// EnrollRequestTopic is where session publishes its request.
func EnrollRequestTopic(session string) string { return EnrollRoot + "/" + session + "/req" }

// EnrollResponseTopic is where the controller answers session.
func EnrollResponseTopic(session string) string { return EnrollRoot + "/" + session + "/resp" }

// ValidEnrollSession reports whether s is a session id: EnrollSessionLen lowercase hex.
func ValidEnrollSession(s string) error {
	if len(s) != EnrollSessionLen {
		return fmt.Errorf("enrollment session %.40q: want %d lowercase hex characters", s, EnrollSessionLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("enrollment session %.40q: want %d lowercase hex characters", s, EnrollSessionLen)
		}
	}
	return nil
}

// ParseEnrollRequestTopic returns the session of an enrollment request topic.
func ParseEnrollRequestTopic(topic string) (session string, ok bool) {
	rest, found := strings.CutPrefix(topic, EnrollRoot+"/")
	if !found {
		return "", false
	}
	session, found = strings.CutSuffix(rest, "/req")
	return session, found && ValidEnrollSession(session) == nil
}

// Enrollment tokens are "oet1." + token id + "." + secret: the id (TokenIDBytes random bytes)
// names the stored record, the secret (TokenSecretBytes) proves possession; both unpadded
// base64url. The controller stores only the secret's SHA-256.
const (
	TokenPrefix      = "oet1."
	TokenIDBytes     = 12
	TokenSecretBytes = 32
)

var (
	tokenIDLen     = base64.RawURLEncoding.EncodedLen(TokenIDBytes)
	tokenSecretLen = base64.RawURLEncoding.EncodedLen(TokenSecretBytes)
)

// ErrTokenFormat is ParseEnrollToken's error for anything not shaped like a token.
var ErrTokenFormat = errors.New("not an enrollment token (want oet1.ID.SECRET from outpost devices enroll-token)")

// ParseEnrollToken splits a token into its id and decoded secret.
func ParseEnrollToken(tok string) (id string, secret []byte, err error) {
	rest, ok := strings.CutPrefix(tok, TokenPrefix)
	if !ok || len(rest) != tokenIDLen+1+tokenSecretLen || rest[tokenIDLen] != '.' {
		return "", nil, ErrTokenFormat
	}
	id, sec := rest[:tokenIDLen], rest[tokenIDLen+1:]
	if _, err := base64.RawURLEncoding.Strict().DecodeString(id); err != nil {
		return "", nil, ErrTokenFormat
	}
	secret, err = base64.RawURLEncoding.Strict().DecodeString(sec)
	if err != nil || len(secret) != TokenSecretBytes {
		return "", nil, ErrTokenFormat
	}
	return id, secret, nil
}

// FormatEnrollToken is ParseEnrollToken's inverse; id is already encoded, secret raw.
func FormatEnrollToken(id string, secret []byte) string {
	return TokenPrefix + id + "." + base64.RawURLEncoding.EncodeToString(secret)
}

// EnrollRequest is what a device publishes on its request topic.
type EnrollRequest struct {
	V     int    `json:"v"`
	Token string `json:"token"`
	Agent string `json:"agent,omitempty"` // agent version, for the controller's log
}

// Refusal codes of an EnrollResponse; the agent logs Reason, tests branch on the code.
const (
	EnrollUnknown   = "unknown"   // no such token, or its secret does not match (forged)
	EnrollUsed      = "used"      // already redeemed
	EnrollExpired   = "expired"   // past its expiry
	EnrollRefused   = "refused"   // anything else (the device id is reserved, a store error)
	EnrollMalformed = "malformed" // the request did not decode
)

// EnrollResponse answers an EnrollRequest: the device's id and secret, or a refusal.
type EnrollResponse struct {
	V        int    `json:"v"`
	DeviceID string `json:"id,omitempty"`
	Secret   string `json:"secret,omitempty"`
	Code     string `json:"code,omitempty"`   // empty on success
	Reason   string `json:"reason,omitempty"` // one line, on refusal
}

// Identity is the device's enrolled identity, written by the agent into its data directory.
type Identity struct {
	V        int    `json:"v"`
	DeviceID string `json:"id"`
	Secret   string `json:"secret"`
}

// DecodeEnrollRequest decodes and checks a request.
func DecodeEnrollRequest(data []byte) (EnrollRequest, error) {
	var r EnrollRequest
	if err := decodeSmall(data, &r); err != nil {
		return r, err
	}
	if _, _, err := ParseEnrollToken(r.Token); err != nil {
		return r, fmt.Errorf("enroll request: %w", err)
	}
	if len(r.Agent) > 64 || !printable(r.Agent) {
		return r, errors.New("enroll request: agent version is not up to 64 printable characters")
	}
	return r, nil
}

// DecodeEnrollResponse decodes and checks a response: either a refusal with a one-line reason,
// or a valid device id and a secret.
func DecodeEnrollResponse(data []byte) (EnrollResponse, error) {
	var r EnrollResponse
	if err := decodeSmall(data, &r); err != nil {
		return r, err
	}
	if r.Code != "" {
		if len(r.Code) > 32 || !printable(r.Code) || len(r.Reason) > MaxReasonLen || !printable(r.Reason) {
			return r, errors.New("enroll response: refusal code or reason is not one short printable line")
		}
		if r.DeviceID != "" || r.Secret != "" {
			return r, errors.New("enroll response: a refusal carries no credentials")
		}
		return r, nil
	}
	if err := ValidDeviceID(r.DeviceID); err != nil {
		return r, fmt.Errorf("enroll response: %w", err)
	}
	if err := validSecret(r.Secret); err != nil {
		return r, fmt.Errorf("enroll response: %w", err)
	}
	return r, nil
}

// DecodeIdentity decodes and checks an identity file.
func DecodeIdentity(data []byte) (Identity, error) {
	var id Identity
	if err := decodeSmall(data, &id); err != nil {
		return id, err
	}
	if err := ValidDeviceID(id.DeviceID); err != nil {
		return id, fmt.Errorf("identity: %w", err)
	}
	if err := validSecret(id.Secret); err != nil {
		return id, fmt.Errorf("identity: %w", err)
	}
	return id, nil
}

// EncodeEnroll marshals an EnrollRequest, EnrollResponse or Identity with V set.
func EncodeEnroll(msg any) ([]byte, error) {
	switch m := msg.(type) {
	case *EnrollRequest:
		setV(&m.V)
	case *EnrollResponse:
		setV(&m.V)
	case *Identity:
		setV(&m.V)
	default:
		return nil, fmt.Errorf("EncodeEnroll: %T is not an enrollment message", msg)
	}
	return Encode(msg)
}

func decodeSmall(data []byte, msg any) error {
	if len(data) > MaxEnrollMessage {
		return fmt.Errorf("decode %T: %d bytes (at most %d)", msg, len(data), MaxEnrollMessage)
	}
	return Decode(data, msg)
}

func validSecret(s string) error {
	if s == "" || len(s) > MaxSecretLen {
		return fmt.Errorf("secret: want 1 to %d characters", MaxSecretLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return errors.New("secret: want printable ASCII without spaces")
		}
	}
	return nil
}

// printable: valid UTF-8 with no control characters, so it logs as one line.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}
