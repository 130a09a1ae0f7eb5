package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/broker/brokertest"
	"github.com/outpost-ml/outpost/fleet/credentials"
)

func openCreds(t *testing.T) *credentials.Store {
	t.Helper()
	s, err := credentials.Open(t.TempDir(), credentials.Options{Iterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestDeviceIsolation(t *testing.T) {
	creds := openCreds(t)
	b := startBroker(t, broker.Options{Strict: true, Devices: creds})
	user, pass := b.ControllerCredentials()
	brokertest.RunIsolation(t, brokertest.Env{
		URL: b.URL(), ControllerUser: user, ControllerPassword: pass,
		Issue: func(t *testing.T, id string) string {
			s, err := creds.Issue(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Revoke: func(t *testing.T, id string) {
			if err := creds.Revoke(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			if n := b.DisconnectDevice(id); n != 1 {
				t.Errorf("DisconnectDevice(%s) = %d sessions, want 1", id, n)
			}
		},
	})
}

func TestTLSListener(t *testing.T) {
	pki := brokertest.NewPKI(t)
	creds := openCreds(t)
	b := startBroker(t, broker.Options{Strict: true, Devices: creds, TLSAddr: "127.0.0.1:0", TLS: &tls.Config{
		Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.Pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12,
	}})
	if b.TLSAddr() == "" || b.TLSAddr() == b.Addr() {
		t.Fatalf("TLSAddr = %q beside plain %q", b.TLSAddr(), b.Addr())
	}
	secret, err := creds.Issue(context.Background(), "dev-pw")
	if err != nil {
		t.Fatal(err)
	}
	certC := pki.Issue(t, "dev-c", x509.ExtKeyUsageClientAuth)
	dial := func(user, password string, cert *tls.Certificate, roots *x509.CertPool) error {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + b.TLSAddr()).SetClientID(user).
			SetUsername(user).SetPassword(password).SetTLSConfig(cfg).SetProtocolVersion(4).
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		tok.WaitTimeout(5 * time.Second)
		if tok.Error() == nil {
			c.Disconnect(50)
		}
		return tok.Error()
	}
	tests := []struct {
		name   string
		user   string
		pw     string
		cert   *tls.Certificate
		roots  *x509.CertPool
		wantOK bool
	}{
		{"password over TLS", "dev-pw", secret, nil, pki.Pool, true},
		{"wrong password over TLS", "dev-pw", "nope", nil, pki.Pool, false},
		{"client certificate, no password", "dev-c", "", &certC, pki.Pool, true},
		{"certificate of another device", "dev-pw", "", &certC, pki.Pool, false},
		{"server not trusted by client", "dev-pw", secret, nil, x509.NewCertPool(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := dial(tc.user, tc.pw, tc.cert, tc.roots); (err == nil) != tc.wantOK {
				t.Fatalf("connect error = %v, want ok=%v", err, tc.wantOK)
			}
		})
	}
	t.Run("revoked certificate holder", func(t *testing.T) {
		if err := creds.Revoke(context.Background(), "dev-c"); err != nil {
			t.Fatal(err)
		}
		if err := dial("dev-c", "", &certC, pki.Pool); err == nil {
			t.Fatal("revoked dev-c connected with its certificate")
		}
	})
	// A certificate from another CA is refused in the handshake.
	other := brokertest.NewPKI(t).Issue(t, "dev-c2", x509.ExtKeyUsageClientAuth)
	if err := dial("dev-c2", "", &other, pki.Pool); err == nil {
		t.Fatal("certificate from an unknown CA accepted")
	}
}
