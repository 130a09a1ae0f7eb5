package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestAgentEnrollment runs the real agent binary against `outpost serve` (in process, device
// identity on) with one-time tokens from `outpost devices enroll-token`: a valid token
// enrolls once and the device then delivers health and results as itself, keeps its
// identity across a restart without the token; a reused, expired or forged token is refused
// with exit status 2 and one line saying why; the enrolled device is held to the isolation
// contract like any other.
func TestAgentEnrollment(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent binary")
	}
	t.Parallel()
	_, agentBin := binaries(t)
	dir := t.TempDir()
	srv, api := startCredentialServer(t, credentialConfig{})
	waitUntil(t, "the enrollment server to subscribe", 10*time.Second, srv.Enroll.Subscribed)
	model, err := filepath.Abs(filepath.Join(sampleDir, "vibration-anomaly-f32.tflite"))
	if err != nil {
		t.Fatal(err)
	}
	token := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		mustCLI(t, append(append([]string{"devices", "enroll-token", "--out", p}, args...), api...)...)
		return p
	}
	agentArgs := func(tokenFile, dataDir string) []string {
		return []string{"--broker", srv.BrokerURL, "--enroll-token", tokenFile, "--model", model, "--allow-unsigned",
			"--sensor", "sim:vibration", "--data-dir", filepath.Join(dir, dataDir), "--health-interval", "300ms"}
	}
	start := func(args []string) (*exec.Cmd, *syncBuf) {
		cmd := exec.Command(agentBin, args...)
		out := &syncBuf{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopProcess(t, cmd) })
		return cmd, out
	}
	device := func(pred func(fleet.DeviceStatus) bool) (fleet.DeviceStatus, bool) {
		for _, d := range srv.Controller.Devices() {
			if pred(d) {
				return d, true
			}
		}
		return fleet.DeviceStatus{}, false
	}

	for _, bad := range [][]string{{"--ttl", "100000h"}, {"--prefix", "a/b"}, {"--id", "outpost-controller"}} {
		if _, err := cli(t, append(append([]string{"devices", "enroll-token"}, bad...), api...)...); err == nil {
			t.Errorf("enroll-token %v accepted", bad)
		} else if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "enrollment token") {
			t.Errorf("enroll-token %v: %v, want one line about the token", bad, err)
		}
	}
	good := token("good.token", "--prefix", "lab-", "--ttl", "1h")
	cmd, log := start(agentArgs(good, "a"))
	var enrolled fleet.DeviceStatus
	waitUntil(t, "the enrolled device's health and results", 30*time.Second, func() bool {
		d, ok := device(func(d fleet.DeviceStatus) bool { return strings.HasPrefix(d.ID, "lab-") })
		enrolled = d
		return ok && d.Health != nil && d.ResultsReceived >= 3
	})
	idPath := filepath.Join(dir, "a", "identity.json")
	st, err := os.Stat(idPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v, mode %v; want 0600", err, st.Mode())
	}
	data, _ := os.ReadFile(idPath)
	ident, err := wire.DecodeIdentity(data)
	if err != nil || ident.DeviceID != enrolled.ID {
		t.Fatalf("identity file holds %+v, %v; the controller knows %s", ident.DeviceID, err, enrolled.ID)
	}
	if strings.Contains(log.String(), ident.Secret) {
		t.Error("the agent logged its secret")
	}

	// A restart uses the identity; the spent token is not sent again.
	if err := stopProcess(t, cmd); err != nil {
		t.Fatalf("agent stop: %v\n%s", err, log)
	}
	before := enrolled.ResultsReceived
	_, log2 := start(agentArgs(good, "a"))
	waitUntil(t, "results after the restart", 30*time.Second, func() bool {
		d, _ := device(func(d fleet.DeviceStatus) bool { return d.ID == enrolled.ID })
		return d.ResultsReceived >= before+3
	})
	if strings.Contains(log2.String(), "enrolling") {
		t.Errorf("the restarted agent enrolled again:\n%s", log2)
	}

	// Refusals: exit status 2 and one line naming the reason.
	expired := token("expired.token", "--ttl", "1s")
	forged := filepath.Join(dir, "forged.token")
	raw, _ := os.ReadFile(token("forge-base.token", "--id", "never-1"))
	tok := strings.TrimSpace(string(raw))
	last := tok[len(tok)-2]
	flip := byte('A')
	if last == 'A' {
		flip = 'B'
	}
	if err := os.WriteFile(forged, []byte(tok[:len(tok)-2]+string(flip)+tok[len(tok)-1:]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the expired token's 1s
	for _, tc := range []struct{ name, file, want string }{
		{"reused", good, "enrollment token already used (by device " + enrolled.ID},
		{"expired", expired, "enrollment token expired"},
		{"forged", forged, "enrollment token unknown or forged"},
	} {
		cmd := exec.Command(agentBin, agentArgs(tc.file, "refused-"+tc.name)...)
		timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
		out, err := cmd.CombinedOutput()
		timer.Stop()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%s token: %v, want exit status 2\n%s", tc.name, err, out)
			continue
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.HasPrefix(l, "outpost-agent: ") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%s token: error lines %q, want one with %q", tc.name, lines, tc.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "refused-"+tc.name, "identity.json")); err == nil {
			t.Errorf("%s token left an identity", tc.name)
		}
	}
	if _, ok := device(func(d fleet.DeviceStatus) bool { return d.ID == "never-1" }); ok {
		t.Error("the forged token's device appeared")
	}

	// The enrolled identity is an ordinary device: it may not publish as another.
	lost := make(chan error, 1)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(srv.BrokerURL).SetClientID(ident.DeviceID + "-probe").
		SetUsername(ident.DeviceID).SetPassword(ident.Secret).SetAutoReconnect(false).SetProtocolVersion(4).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect with the enrolled secret: %v", tok.Error())
	}
	defer c.Disconnect(100)
	c.Publish(wire.DeviceTopic("other-device", wire.LeafHealth), 1, false, "forged")
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Error("an enrolled device publishing as another was not disconnected")
	}
	if _, ok := device(func(d fleet.DeviceStatus) bool { return d.ID == "other-device" }); ok {
		t.Error("the forged publish reached the controller")
	}
}
