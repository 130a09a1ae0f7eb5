package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/broker/brokertest"
)

// TestDeviceCredentialsMosquittoTLS runs the isolation contract on Debian's Mosquitto with
// only a TLS listener (a test-made CA and server certificate) and the files `outpost broker
// config` writes: devices log in over TLS with their secrets and stay isolated, and a
// plain-TCP client gets nowhere on the TLS port.
func TestDeviceCredentialsMosquittoTLS(t *testing.T) {
	bin := mosquittoPath(t)
	_, api := startCredentialServer(t, credentialConfig{})
	dir := t.TempDir()
	ctlPass := "controller-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ctlFile := filepath.Join(dir, "controller.pw")
	if err := os.WriteFile(ctlFile, []byte(ctlPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	filesDir := filepath.Join(dir, "mosquitto")
	config := func(t *testing.T) {
		t.Helper()
		mustCLI(t, append([]string{"broker", "config", "--out", filesDir, "--controller-password-file", ctlFile}, api...)...)
	}
	config(t)
	snippet, err := os.ReadFile(filepath.Join(filesDir, mosquittoConfFile))
	if err != nil {
		t.Fatal(err)
	}
	pki := brokertest.NewPKI(t)
	caFile := pki.WriteCA(t, dir)
	certFile, keyFile := brokertest.WritePair(t, dir, "server", pki.Server)
	port := freePort(t)
	if os.Geteuid() == 0 {
		snippet = append(snippet, "user root\n"...) // see TestDeviceCredentialsMosquitto
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	listener := fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate false\ntls_version tlsv1.2\n", port, caFile, certFile, keyFile)
	if err := os.WriteFile(conf, fmt.Appendf(nil, "%spersistence false\nlog_dest stderr\n%s", listener, snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = testWriter(t, "mosquitto"), testWriter(t, "mosquitto")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(func() { stopProcess(t, cmd) })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitDial(t, addr, 10*time.Second)
	url := "ssl://" + addr
	tlsCfg := &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12}

	// A client that does not speak TLS, with the controller's own valid credentials.
	if canLoginTLS("tcp://"+addr, nil, "outpost-controller", ctlPass) {
		t.Fatal("a plain-TCP login succeeded on the TLS listener")
	}
	// A client that does not trust the CA refuses the broker.
	if canLoginTLS(url, &tls.Config{MinVersion: tls.VersionTLS12}, "outpost-controller", ctlPass) {
		t.Fatal("TLS login succeeded without trusting the test CA")
	}

	brokertest.RunIsolation(t, brokertest.Env{
		URL: url, TLS: tlsCfg, ControllerUser: "outpost-controller", ControllerPassword: ctlPass,
		Issue: func(t *testing.T, id string) string {
			secret := strings.TrimSpace(mustCLI(t, append([]string{"devices", "add", id}, api...)...))
			config(t)
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !canLoginTLS(url, tlsCfg, id, secret) {
				if time.Now().After(deadline) {
					t.Fatalf("mosquitto does not accept %s's new secret over TLS 5s after the reload", id)
				}
				time.Sleep(50 * time.Millisecond)
			}
			return secret
		},
		Revoke: func(t *testing.T, id string) {
			mustCLI(t, append([]string{"devices", "revoke", id}, api...)...)
			config(t)
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// canLoginTLS reports whether a one-off MQTT login succeeds (tc nil: no TLS settings).
func canLoginTLS(url string, tc *tls.Config, user, password string) bool {
	o := paho.NewClientOptions().AddBroker(url).SetClientID(user + "-probe").
		SetUsername(user).SetPassword(password).SetAutoReconnect(false).SetConnectTimeout(2 * time.Second)
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
		return false
	}
	c.Disconnect(50)
	return true
}
