package broker

import (
	"crypto/tls"
	"errors"
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DeviceAuth checks device credentials (fleet/credentials.Store implements it).
type DeviceAuth interface {
	// Check returns nil when password is the device's current secret.
	Check(id string, password []byte) error
	// Revoked reports whether the device was cut off; it is asked for logins by client
	// certificate and again once a session is up (see OnSessionEstablished).
	Revoked(id string) bool
}

// checkDevice admits device id by a verified client certificate naming it (TLS listener with
// ClientCAs) or else by its password, when the broker was given a DeviceAuth.
func (h *aclHook) checkDevice(cl *mqtt.Client, id string, password []byte) error {
	if cn, ok := certName(cl); ok {
		if cn != id {
			return fmt.Errorf("client certificate names %q, client claims %q", cn, id)
		}
		if h.devices != nil && h.devices.Revoked(id) {
			return errors.New("device revoked")
		}
		return nil
	}
	if h.devices == nil {
		return nil
	}
	return h.devices.Check(id, password)
}

// certName is the common name of the client's verified certificate, if it presented one. By
// the time mochi reads CONNECT the TLS handshake is over, so the state is final.
func certName(cl *mqtt.Client) (string, bool) {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return "", false
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", false
	}
	return st.VerifiedChains[0][0].Subject.CommonName, true
}

// OnSessionEstablished first lets a predecessor's ending finish (settle, takeover.go), then
// closes the gap between a device's successful login and a revocation that scanned the client
// list before the new session was in it: the session is checked again now that it is listed.
func (h *aclHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.settle(cl)
	if h.devices == nil || h.srv == nil {
		return
	}
	if id, isDevice := identity(cl); isDevice && string(cl.Properties.Username) != h.user && h.devices.Revoked(id) {
		h.log.Warn("broker cut off revoked device", "client_id", cl.ID, "device", id)
		_ = h.srv.DisconnectClient(cl, packets.ErrNotAuthorized) // the client is gone either way
	}
}

// DisconnectDevice ends every session of the device (call it after revoking the device in
// its DeviceAuth, which refuses the reconnects) and returns how many there were.
func (b *Broker) DisconnectDevice(id string) int {
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if cid, _ := identity(cl); cid == id && string(cl.Properties.Username) != b.user && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized) // closing regardless
			n++
		}
	}
	if n > 0 {
		b.log.Info("broker disconnected device", "device", id, "sessions", n)
	}
	return n
}

// TLSAddr is the address of the TLS listener, empty without one.
func (b *Broker) TLSAddr() string { return b.tlsAddr }

// addTLSListener adds the TLS listener Options.TLSAddr asks for.
func (b *Broker) addTLSListener(opts Options) error {
	if opts.TLS == nil {
		return nil
	}
	if opts.TLSAddr == "" {
		opts.TLSAddr = DefaultTLSAddr
	}
	l := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tls", Address: opts.TLSAddr, TLSConfig: opts.TLS})
	if err := b.srv.AddListener(settledListener{l, b.teardowns}); err != nil {
		return fmt.Errorf("broker TLS listen on %s: %w", opts.TLSAddr, err)
	}
	b.tlsAddr = l.Address()
	return nil
}
