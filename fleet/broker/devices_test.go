package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
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

// testPKI is a CA with a server certificate for 127.0.0.1 and client certificates by CN.
type testPKI struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	server tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "outpost test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{ca: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.server = p.issue(t, "broker", x509.ExtKeyUsageServerAuth)
	return p
}

func (p *testPKI) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLSListener(t *testing.T) {
	pki := newPKI(t)
	creds := openCreds(t)
	b := startBroker(t, broker.Options{Strict: true, Devices: creds, TLSAddr: "127.0.0.1:0", TLS: &tls.Config{
		Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12,
	}})
	if b.TLSAddr() == "" || b.TLSAddr() == b.Addr() {
		t.Fatalf("TLSAddr = %q beside plain %q", b.TLSAddr(), b.Addr())
	}
	secret, err := creds.Issue(context.Background(), "dev-pw")
	if err != nil {
		t.Fatal(err)
	}
	certC := pki.issue(t, "dev-c", x509.ExtKeyUsageClientAuth)
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
		{"password over TLS", "dev-pw", secret, nil, pki.pool, true},
		{"wrong password over TLS", "dev-pw", "nope", nil, pki.pool, false},
		{"client certificate, no password", "dev-c", "", &certC, pki.pool, true},
		{"certificate of another device", "dev-pw", "", &certC, pki.pool, false},
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
		if err := dial("dev-c", "", &certC, pki.pool); err == nil {
			t.Fatal("revoked dev-c connected with its certificate")
		}
	})
	// A certificate from another CA is refused in the handshake.
	other := newPKI(t).issue(t, "dev-c2", x509.ExtKeyUsageClientAuth)
	if err := dial("dev-c2", "", &other, pki.pool); err == nil {
		t.Fatal("certificate from an unknown CA accepted")
	}
}
