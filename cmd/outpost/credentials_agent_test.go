package main

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/broker/brokertest"
)

// TestAgentCredentialsTLS runs the real agent binary against `outpost serve` with device
// credentials and a TLS listener: one device logs in with the secret `outpost devices add
// --out` wrote (--password-file), one with a client certificate; both deliver results;
// revoking the first cuts it off while the second keeps delivering; the secret is never
// logged.
func TestAgentCredentialsTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent binary")
	}
	t.Parallel()
	_, agentBin := binaries(t)
	dir := t.TempDir()
	pki := brokertest.NewPKI(t)
	ca := pki.WriteCA(t, dir)
	srvCert, srvKey := brokertest.WritePair(t, dir, "server", pki.Server)
	devCert, devKey := brokertest.WritePair(t, dir, "dev-cert", pki.Issue(t, "dev-cert", x509.ExtKeyUsageClientAuth))

	srv, api := startCredentialServer(t, credentialConfig{TLSCert: srvCert, TLSKey: srvKey, TLSClientCA: ca, TLSListen: "127.0.0.1:0"})
	secretFile := filepath.Join(dir, "dev-pw.secret")
	mustCLI(t, append([]string{"devices", "add", "dev-pw", "--out", secretFile}, api...)...)
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}

	model, err := filepath.Abs(filepath.Join(sampleDir, "vibration-anomaly-f32.tflite"))
	if err != nil {
		t.Fatal(err)
	}
	startAgent := func(id string, extra ...string) *syncBuf {
		args := append([]string{"--broker", "ssl://" + srv.Broker.TLSAddr(), "--tls-ca", ca, "--id", id, "--model", model,
			"--allow-unsigned", "--sensor", "sim:vibration", "--data-dir", filepath.Join(dir, id), "--health-interval", "500ms",
			"--log-level", "debug"}, extra...)
		cmd := exec.Command(agentBin, args...)
		out := &syncBuf{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopProcess(t, cmd) })
		return out
	}
	pwLog := startAgent("dev-pw", "--password-file", secretFile)
	startAgent("dev-cert", "--tls-cert", devCert, "--tls-key", devKey)

	received := func(id string) uint64 {
		for _, d := range srv.Controller.Devices() {
			if d.ID == id {
				return d.ResultsReceived
			}
		}
		return 0
	}
	waitUntil(t, "results from both devices over TLS", 30*time.Second, func() bool { return received("dev-pw") >= 5 && received("dev-cert") >= 5 })

	mustCLI(t, append([]string{"devices", "revoke", "dev-pw"}, api...)...)
	waitUntil(t, "the revoked agent to see its login refused", 20*time.Second, func() bool {
		return strings.Contains(pwLog.String(), "mqtt authentication refused")
	})
	// From here on dev-pw delivers nothing; dev-cert keeps going.
	before, certBefore := received("dev-pw"), received("dev-cert")
	waitUntil(t, "dev-cert to keep delivering", 20*time.Second, func() bool { return received("dev-cert") >= certBefore+5 })
	if after := received("dev-pw"); after != before {
		t.Errorf("revoked dev-pw delivered %d more results", after-before)
	}
	if strings.Contains(pwLog.String(), strings.TrimSpace(string(secret))) {
		t.Error("the agent logged its secret")
	}
}

func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuf collects a process's output while the test reads it.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
