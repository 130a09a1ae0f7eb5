package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/broker/brokertest"
	"github.com/outpost-ml/outpost/fleet/httpapi"
)

// startCredentialServer runs `outpost serve --http` in-process the way the CLI runs it:
// device credentials checked, observers refused, plus what tls asks for. It returns the server
// and the API flags.
func startCredentialServer(t *testing.T, tls credentialConfig) (*fleetServer, []string) {
	t.Helper()
	dir := t.TempDir()
	tls.DeviceAuth = true
	srv, err := newFleetServer(serveConfig{Listen: "127.0.0.1:0", DataDir: dir, Strict: true,
		updateConfig: updateConfig{HTTPAddr: "127.0.0.1:0"}, credentialConfig: tls})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
	})
	return srv, []string{"--server", "http://" + srv.APIAddr, "--token-file", filepath.Join(dir, "api-token")}
}

// TestDeviceCredentialsEmbedded drives `outpost devices add|revoke` against the embedded
// broker through the isolation contract.
func TestDeviceCredentialsEmbedded(t *testing.T) {
	srv, api := startCredentialServer(t, credentialConfig{})

	// --out writes the secret for the device, readable by its owner only.
	file := filepath.Join(t.TempDir(), "dev-file.secret")
	out := mustCLI(t, append([]string{"devices", "add", "dev-file", "--out", file}, api...)...)
	if !strings.Contains(out, file) {
		t.Errorf("devices add --out printed %q, want the file named", out)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, mode %v; want 0600", err, st.Mode())
	}
	b, _ := os.ReadFile(file)
	if err := srv.Creds.Check("dev-file", []byte(strings.TrimSpace(string(b)))); err != nil {
		t.Fatalf("secret in --out file does not check: %v", err)
	}
	if _, err := cli(t, append([]string{"devices", "add", "outpost-controller"}, api...)...); err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("devices add outpost-controller: %v, want a one-line refusal", err)
	}
	// The added device is in the registry before its first contact, never seen; the refused
	// id is not.
	var devs []httpapi.DeviceView
	if err := json.Unmarshal([]byte(mustCLI(t, append([]string{"devices", "--json"}, api...)...)), &devs); err != nil ||
		len(devs) != 1 || devs[0].ID != "dev-file" || !devs[0].LastSeen.IsZero() || !devs[0].FirstSeen.IsZero() || devs[0].Online {
		t.Errorf("devices after add = %+v, %v; want dev-file alone, never seen", devs, err)
	}
	if out := mustCLI(t, append([]string{"devices"}, api...)...); !regexp.MustCompile(`dev-file\s+no\s+never`).MatchString(out) {
		t.Errorf("devices table after add:\n%s\nwant dev-file offline, never seen", out)
	}
	if stored, err := srv.Store.Devices(context.Background()); err != nil || len(stored) != 1 || stored[0].ID != "dev-file" {
		t.Errorf("store after add: %+v, %v", stored, err)
	}
	if _, err := cli(t, append([]string{"devices", "revoke", "bad id"}, api...)...); err == nil {
		t.Fatal("devices revoke 'bad id': no error")
	}

	user, pass := srv.Broker.ControllerCredentials()
	brokertest.RunIsolation(t, brokertest.Env{
		URL: srv.BrokerURL, ControllerUser: user, ControllerPassword: pass,
		Issue: func(t *testing.T, id string) string {
			return strings.TrimSpace(mustCLI(t, append([]string{"devices", "add", id}, api...)...))
		},
		Revoke: func(t *testing.T, id string) {
			if out := mustCLI(t, append([]string{"devices", "revoke", id}, api...)...); out != id+": revoked\n" {
				t.Errorf("devices revoke printed %q", out)
			}
		},
	})
}

// TestDeviceCredentialsMosquitto runs the isolation contract on Debian's Mosquitto configured
// only by the files `outpost broker config` writes; the controller here is the credential
// authority the CLI talks to.
func TestDeviceCredentialsMosquitto(t *testing.T) {
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
	acl, err := os.ReadFile(filepath.Join(filesDir, mosquittoACLFile))
	if err != nil || !strings.Contains(string(acl), "pattern write outpost/v1/d/%u/#\n") || !strings.Contains(string(acl), "pattern read outpost/v1/c/%u/#\n") {
		t.Fatalf("acl file %q, %v", acl, err)
	}
	snippet, err := os.ReadFile(filepath.Join(filesDir, mosquittoConfFile))
	if err != nil {
		t.Fatal(err)
	}
	// Sized for the controller's session (the minimum fleet here: no device issued yet);
	// Mosquitto below refuses to start on an option it does not know.
	if want := fmt.Sprintf("max_queued_messages %d\n", queuedMessages(0, 0)); !strings.Contains(string(snippet), want) {
		t.Fatalf("outpost.conf %q: want %q", snippet, want)
	}
	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	if os.Geteuid() == 0 {
		// Run as root, mosquitto switches to its own user, which cannot read a private
		// temporary directory; keep it as root for the test.
		snippet = append(snippet, "user root\n"...)
	}
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listener %d 127.0.0.1\npersistence false\nlog_dest stderr\n%s", port, snippet), 0o644); err != nil {
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

	// reload rewrites the files and has Mosquitto reread them, as an operator would.
	reload := func(t *testing.T) {
		t.Helper()
		config(t)
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.RunIsolation(t, brokertest.Env{
		URL: "tcp://" + addr, ControllerUser: "outpost-controller", ControllerPassword: ctlPass,
		Issue: func(t *testing.T, id string) string {
			secret := strings.TrimSpace(mustCLI(t, append([]string{"devices", "add", id}, api...)...))
			reload(t)
			// SIGHUP is asynchronous: wait until Mosquitto knows the new device.
			deadline := time.Now().Add(5 * time.Second)
			for !canLogin("tcp://"+addr, id, secret) {
				if time.Now().After(deadline) {
					t.Fatalf("mosquitto does not accept %s's new secret 5s after the reload", id)
				}
				time.Sleep(50 * time.Millisecond)
			}
			return secret
		},
		Revoke: func(t *testing.T, id string) {
			mustCLI(t, append([]string{"devices", "revoke", id}, api...)...)
			reload(t)
		},
	})
}

// canLogin reports whether a one-off MQTT login with these credentials succeeds.
func canLogin(url, user, password string) bool {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(user + "-probe").
		SetUsername(user).SetPassword(password).SetAutoReconnect(false).SetConnectTimeout(2 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
		return false
	}
	c.Disconnect(50)
	return true
}

func TestServeCredentialFlagErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"observers with external broker", []string{"serve", "--broker", "tcp://x:1", "--allow-observers"}, "embedded broker"},
		{"tls with external broker", []string{"serve", "--broker", "tcp://x:1", "--tls-cert", missing, "--tls-key", missing}, "embedded broker"},
		{"cert without key", []string{"serve", "--tls-cert", missing}, "go together"},
		{"client ca without cert", []string{"serve", "--tls-client-ca", missing}, "needs --tls-cert"},
		{"unreadable cert", []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--tls-cert", missing, "--tls-key", missing}, "--tls-cert/--tls-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cli(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("outpost %v = %v, want one line containing %q", tt.args, err, tt.want)
			}
		})
	}
}
