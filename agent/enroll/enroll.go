// Package enroll is the device side of enrollment (fleet/wire/enroll.go): with a one-time
// token and no credentials yet, the agent asks the controller for its device id and secret
// over MQTT and keeps them in an identity file in its data directory.
package enroll

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/atomicfile"
	"github.com/outpost-ml/outpost/internal/pahostore"
)

// IdentityFile is the identity's file name in the data directory.
const IdentityFile = "identity.json"

// DefaultTimeout bounds one enrollment attempt: connect, ask, get the answer.
const DefaultTimeout = 30 * time.Second

// Options configure Enroll.
type Options struct {
	Broker  string      // tcp://…, ssl://…
	TLS     *tls.Config // for ssl:// brokers; nil: system roots
	Token   string      // oet1.…
	Agent   string      // agent version, logged by the controller
	Timeout time.Duration
}

// RefusedError is the controller's refusal: the token will not enroll this device however
// often it is tried.
type RefusedError struct{ Code, Reason string }

func (e *RefusedError) Error() string {
	return "enrollment token refused by the controller (" + e.Code + "): " + e.Reason
}

// Enroll runs one enrollment: it connects as a fresh session, sends the token and waits for
// the answer. A refusal is a *RefusedError; anything else (no broker, no answer) may be
// retried.
func Enroll(ctx context.Context, o Options) (wire.Identity, error) {
	if _, _, err := wire.ParseEnrollToken(o.Token); err != nil {
		return wire.Identity{}, err
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var raw [wire.EnrollSessionLen / 2]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return wire.Identity{}, err
	}
	session := hex.EncodeToString(raw[:])
	answers := make(chan []byte, 1)
	po := paho.NewClientOptions().SetStore(pahostore.New()).AddBroker(o.Broker).SetClientID(session).
		SetUsername(wire.EnrollUser).SetCleanSession(true).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(o.Timeout)
	if o.TLS != nil {
		po.SetTLSConfig(o.TLS)
	}
	c := paho.NewClient(po)
	if err := wait(ctx, c.Connect()); err != nil {
		return wire.Identity{}, fmt.Errorf("enroll: connect to %s: %w", o.Broker, err)
	}
	defer c.Disconnect(100)
	sub := c.Subscribe(wire.EnrollResponseTopic(session), 1, func(_ paho.Client, m paho.Message) {
		select {
		case answers <- m.Payload():
		default:
		}
	})
	if err := wait(ctx, sub); err != nil {
		return wire.Identity{}, fmt.Errorf("enroll: subscribe: %w", err)
	}
	if q := sub.(*paho.SubscribeToken).Result()[wire.EnrollResponseTopic(session)]; q == 0x80 {
		return wire.Identity{}, errors.New("enroll: the broker refused the enrollment topics (is enrollment on for this broker?)")
	}
	req, err := wire.EncodeEnroll(&wire.EnrollRequest{Token: o.Token, Agent: o.Agent})
	if err != nil {
		return wire.Identity{}, err
	}
	if err := wait(ctx, c.Publish(wire.EnrollRequestTopic(session), 1, false, req)); err != nil {
		return wire.Identity{}, fmt.Errorf("enroll: send request: %w", err)
	}
	select {
	case data := <-answers:
		resp, err := wire.DecodeEnrollResponse(data)
		if err != nil {
			return wire.Identity{}, fmt.Errorf("enroll: %w", err)
		}
		if resp.Code != "" {
			return wire.Identity{}, &RefusedError{Code: resp.Code, Reason: resp.Reason}
		}
		return wire.Identity{V: wire.SchemaVersion, DeviceID: resp.DeviceID, Secret: resp.Secret}, nil
	case <-ctx.Done():
		return wire.Identity{}, fmt.Errorf("enroll: no answer from the controller within %v", o.Timeout)
	}
}

func wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LoadIdentity reads an identity file; ok is false when there is none yet.
func LoadIdentity(path string) (id wire.Identity, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return id, false, nil
	}
	if err != nil {
		return id, false, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, wire.MaxEnrollMessage+1))
	if err != nil {
		return id, false, fmt.Errorf("read %s: %w", path, err)
	}
	if id, err = wire.DecodeIdentity(data); err != nil {
		return id, false, fmt.Errorf("%s: %w (delete it and give the device a new enrollment token)", path, err)
	}
	return id, true, nil
}

// SaveIdentity writes the identity atomically, readable by the agent's user only.
func SaveIdentity(path string, id wire.Identity) error {
	data, err := wire.EncodeEnroll(&id)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}
