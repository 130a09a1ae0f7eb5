package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/credentials"
)

// credentialConfig is the part of serveConfig for device identity (docs/operations.md,
// "Credentials").
type credentialConfig struct {
	// DeviceAuth makes the embedded broker check device secrets and revocations. `outpost
	// serve` sets it unless --insecure-open-devices; in-process users (the demo, tests) leave
	// it off to run devices without provisioning.
	DeviceAuth bool
	// TLS listener of the embedded broker; off unless TLSCert is set.
	TLSCert, TLSKey, TLSClientCA, TLSListen string
}

// credentialFlags adds serve's identity flags; apply copies them into cfg after parsing.
func addCredentialFlags(cmd *cobra.Command, cfg *serveConfig) (apply func() error) {
	f := cmd.Flags()
	var allowObservers, open bool
	f.BoolVar(&allowObservers, "allow-observers", false, "embedded broker: let anonymous clients read outpost/# (e.g. mosquitto_sub -t 'outpost/#')")
	f.BoolVar(&open, "insecure-open-devices", false, "embedded broker: admit any device id without a password (no device identity at all)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "embedded broker: PEM server certificate `file` for a TLS listener on --tls-listen")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "embedded broker: PEM private key `file` of --tls-cert")
	f.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "embedded broker: PEM CA `file` whose client certificates (CN = device id) log devices in without a password")
	f.StringVar(&cfg.TLSListen, "tls-listen", broker.DefaultTLSAddr, "embedded broker: TLS listener address (with --tls-cert)")
	return func() error {
		cfg.Strict = !allowObservers
		cfg.DeviceAuth = !open
		external := cfg.BrokerURL != ""
		switch {
		case external && (allowObservers || open || cfg.TLSCert != ""):
			return errors.New("--allow-observers, --insecure-open-devices and --tls-* apply to the embedded broker; configure an external broker with `outpost broker config`")
		case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
			return errors.New("--tls-cert and --tls-key go together")
		case cfg.TLSClientCA != "" && cfg.TLSCert == "":
			return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
		}
		if external {
			cfg.Strict = false // meaningless without the embedded broker
		}
		return nil
	}
}

// tlsConfig loads the embedded broker's TLS listener configuration; nil without --tls-cert.
func (c credentialConfig) tlsConfig() (*tls.Config, error) {
	if c.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.TLSClientCA != "" {
		pem, err := readLimited(c.TLSClientCA, "client CA", 1<<20)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s: no PEM certificate in it", c.TLSClientCA)
		}
		// Given, not required: devices without a certificate log in by password.
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// openCredentials opens the credential store in the data directory, the controller's MQTT
// username reserved.
func openCredentials(dir string) (*credentials.Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	return credentials.Open(dir, credentials.Options{Reserved: []string{broker.DefaultControllerUser}})
}

// deviceCredentials is the API's view of device identity: the store, plus the embedded
// broker (nil with an external one) to cut a revoked device's live session.
type deviceCredentials struct {
	*credentials.Store
	broker *broker.Broker
}

// Revoke records the revocation first, so the device's reconnect is refused, then ends its
// sessions.
func (d deviceCredentials) Revoke(ctx context.Context, id string) error {
	if err := d.Store.Revoke(ctx, id); err != nil {
		return err
	}
	if d.broker != nil {
		d.broker.DisconnectDevice(id)
	}
	return nil
}
