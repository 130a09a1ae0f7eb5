package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/outpost-ml/outpost/agent/enroll"
)

// Device identity flags (docs/agent.md, "Credentials"): the secret from `outpost devices add`
// and, for ssl:// brokers, the CA to trust and an optional client certificate.

type credentialFlags struct {
	passwordFile           string
	enrollToken            string // --enroll-token file (enroll.go)
	tlsCA, tlsCert, tlsKey string
}

func addCredentialFlags(fs *flag.FlagSet) *credentialFlags {
	var f credentialFlags
	fs.StringVar(&f.passwordFile, "password-file", "", "`file` holding the device's MQTT secret (from outpost devices add --out); never logged")
	fs.StringVar(&f.enrollToken, "enroll-token", "", "`file` holding a one-time enrollment token (outpost devices enroll-token): on first start the agent\nenrolls with it and keeps its id and secret in DATA-DIR/"+enroll.IdentityFile+"; --id may then be left out")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM CA `file` to trust for an ssl:// broker (default: the system's roots)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM client certificate `file` (CN = device id) for an ssl:// broker, instead of a password")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key `file` of --tls-cert")
	return &f
}

// maxSecretFile bounds what --password-file reads: a secret is 43 characters.
const maxSecretFile = 4096

// apply reads the files the flags name into the link options.
func (f *credentialFlags) apply(c *config) error {
	if err := checkEnrollFlags(c, f); err != nil {
		return err
	}
	if f.passwordFile != "" {
		pw, err := readSmall(f.passwordFile, maxSecretFile)
		if err != nil {
			return fmt.Errorf("--password-file: %w", err)
		}
		// One line: the secret; trailing whitespace and the newline are not part of it.
		s := strings.TrimRight(string(pw), " \t\r\n")
		if s == "" || strings.ContainsAny(s, "\r\n") {
			return fmt.Errorf("--password-file %s: want the secret on one line", f.passwordFile)
		}
		c.Link.Password = s
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if f.tlsCA == "" && f.tlsCert == "" {
		return nil
	}
	if scheme, _, _ := strings.Cut(c.Broker, "://"); !slices.Contains([]string{"ssl", "tls", "mqtts", "mqtt+ssl", "tcps", "wss"}, scheme) {
		return fmt.Errorf("--tls-ca/--tls-cert need an ssl:// (or wss://) --broker, not %q", c.Broker)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.tlsCA != "" {
		pem, err := readSmall(f.tlsCA, 1<<20)
		if err != nil {
			return fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-ca %s: no PEM certificate in it", f.tlsCA)
		}
	}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	c.Link.TLS = cfg
	return nil
}

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
