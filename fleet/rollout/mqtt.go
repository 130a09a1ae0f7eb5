package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/pahostore"
)

// MQTTOptions configure NewMQTTPublisher.
type MQTTOptions struct {
	BrokerURL          string
	Username, Password string // the controller's credentials (it may publish under c/)
	// ClientID must differ from the ingest's (fleet.DefaultClientID), or each connection
	// would end the other's session. Default "outpost-controller-desired".
	ClientID string
}

// MQTTPublisher publishes desired states, retained at QoS 1, with its own MQTT connection:
// it waits for each PUBACK, which the ingest connection must never do (its callbacks apply
// backpressure), so the two do not share a client.
type MQTTPublisher struct {
	client paho.Client
}

// NewMQTTPublisher builds the publisher; Connect starts its connection.
func NewMQTTPublisher(o MQTTOptions) (*MQTTPublisher, error) {
	u, err := fleet.ParseBrokerURL(o.BrokerURL)
	if err != nil {
		return nil, err
	}
	if o.Username == "" && u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	u.User = nil
	if o.ClientID == "" {
		o.ClientID = fleet.DefaultClientID + "-desired"
	}
	opts := paho.NewClientOptions().SetStore(pahostore.New()).
		AddBroker(u.String()).
		SetClientID(o.ClientID).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(2 * time.Second).
		SetAutoReconnect(true).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second)
	return &MQTTPublisher{client: paho.NewClient(opts)}, nil
}

// Connect starts connecting (retrying in the background until the broker answers).
func (p *MQTTPublisher) Connect() { p.client.Connect() }

// Close disconnects, waiting up to 250 ms for in-flight work.
func (p *MQTTPublisher) Close() { p.client.Disconnect(250) }

// errNotConnected is returned while the connection is down; the engine retries.
var errNotConnected = errors.New("not connected to the broker")

// PublishDesired implements Publisher: retained, QoS 1, and it returns after the PUBACK.
func (p *MQTTPublisher) PublishDesired(ctx context.Context, device string, d wire.Desired) error {
	if err := wire.ValidDeviceID(device); err != nil {
		return err
	}
	if !p.client.IsConnectionOpen() {
		return errNotConnected
	}
	payload, err := wire.Encode(&d)
	if err != nil {
		return fmt.Errorf("encode desired state of %s: %w", device, err)
	}
	tok := p.client.Publish(wire.ControllerTopic(device, wire.LeafDesired), 1, true, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publish desired state of %s: %w", device, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return fmt.Errorf("publish desired state of %s: no PUBACK after 10s", device)
	}
}
