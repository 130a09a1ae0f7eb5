package mqttlink_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/agent/mqttlink"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// mosquittoACL is the ACL docs/agent.md suggests for Mosquitto: each device may write its own
// d/ topics and read its own c/ topics, keyed on the username (%u); the controller, user ctl,
// may do everything under outpost/.
const mosquittoACL = `user ctl
topic readwrite outpost/#

pattern readwrite outpost/v1/d/%u/#
pattern read outpost/v1/c/%u/#
`

// startMosquittoACL runs Debian's mosquitto with mosquittoACL on a free loopback port. In CI
// its absence is a failure (`make test` installs it with scripts/ensure-deps).
func startMosquittoACL(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/mosquitto")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto not found; `make test` installs it with scripts/ensure-deps")
		}
		t.Skip("mosquitto not installed (run `make deps`)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	conf := filepath.Join(dir, "mosquitto.conf")
	cfg := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nacl_file %s\npersistence false\nlog_dest stderr\n", port, acl)
	if os.Geteuid() == 0 {
		// Run as root, mosquitto switches to its own user, which cannot read a private
		// temporary directory; keep it as root for the test.
		cfg += "user root\n"
	}
	if err := os.WriteFile(acl, []byte(mosquittoACL), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto not accepting connections on %s", addr)
		}
	}
	return "tcp://" + addr
}

// TestMosquittoUsernameACL: behind Mosquitto with an ACL keyed on %u, the link's results reach
// the controller and the controller's acks reach the link, because the link logs in with its
// device id as username. Without a username neither would pass the ACL.
func TestMosquittoUsernameACL(t *testing.T) {
	broker := startMosquittoACL(t)
	got := make(chan []byte, 16)
	ctl := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("ctl").SetUsername("ctl").SetOrderMatters(false))
	if tok := ctl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("controller connect: %v", tok.Error())
	}
	defer ctl.Disconnect(0)
	if tok := ctl.Subscribe(wire.DeviceWildcard(wire.LeafResults), 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("controller subscribe: %v", tok.Error())
	}

	l, err := mqttlink.New(mqttlink.Options{Broker: broker, DeviceID: "dev-acl", Epoch: 9, ConnectRetryInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l.Connect()
	defer l.Close(context.Background())
	waitConnected(t, l, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Publish(ctx, wire.LeafResults, []byte(`{"v":1,"device":"dev-acl","results":[]}`), false); err != nil {
		t.Fatalf("Publish = %v", err)
	}
	select {
	case p := <-got:
		if string(p) != `{"v":1,"device":"dev-acl","results":[]}` {
			t.Fatalf("controller got %s", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the device's results did not pass Mosquitto's %u ACL")
	}
	ack, _ := wire.Encode(&wire.Ack{Seq: 5, Epoch: 9})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if tok := ctl.Publish(wire.ControllerTopic("dev-acl", wire.LeafAck), 1, false, ack); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("controller publish ack: %v", tok.Error())
		}
		select {
		case a := <-l.Acks():
			if a.Seq != 5 {
				t.Fatalf("ack %+v, want seq 5", a)
			}
			if err := l.Err(); err != nil {
				t.Fatalf("Err() = %v with the ACL satisfied", err)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ack through Mosquitto's %%u ACL within 10s (link error: %v)", l.Err())
		}
	}
}
