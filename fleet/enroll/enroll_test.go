package enroll_test

import (
	"context"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/credentials"
	"github.com/outpost-ml/outpost/fleet/enroll"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestServer runs the server against the embedded broker (enrollment on, devices checked)
// and a real credential store, and asks it as enrollment sessions do: a valid token gets
// an id and a secret that log the device in; a malformed request and a spent token get a
// refusal code.
func TestServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := credentials.Open(t.TempDir(), credentials.Options{Iterations: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Strict: true, Devices: store, Enrollment: true})
	if err != nil {
		t.Fatal(err)
	}
	go b.Run(ctx)
	defer b.Close()
	user, pass := b.ControllerCredentials()
	srv, err := enroll.New(enroll.Options{Tokens: store, BrokerURL: b.URL(), Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !srv.Subscribed() {
		if time.Now().After(deadline) {
			t.Fatal("server did not subscribe")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tok, _, err := store.IssueToken(ctx, credentials.TokenSpec{Prefix: "t-"})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(session string, payload []byte) (wire.EnrollResponse, bool) {
		t.Helper()
		got := make(chan []byte, 1)
		c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID(session).SetUsername(wire.EnrollUser).SetAutoReconnect(false))
		if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatalf("connect: %v", tk.Error())
		}
		defer c.Disconnect(50)
		if tk := c.Subscribe(wire.EnrollResponseTopic(session), 1, func(_ paho.Client, m paho.Message) { got <- m.Payload() }); !tk.WaitTimeout(5 * time.Second) {
			t.Fatal("subscribe")
		}
		if tk := c.Publish(wire.EnrollRequestTopic(session), 1, false, payload); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatalf("publish: %v", tk.Error())
		}
		select {
		case data := <-got:
			r, err := wire.DecodeEnrollResponse(data)
			if err != nil {
				t.Fatalf("response: %v", err)
			}
			return r, true
		case <-time.After(2 * time.Second):
			return wire.EnrollResponse{}, false
		}
	}
	req, _ := wire.EncodeEnroll(&wire.EnrollRequest{Token: tok, Agent: "test"})

	r, ok := ask(strings.Repeat("1", 32), req)
	if !ok || r.Code != "" || !strings.HasPrefix(r.DeviceID, "t-") {
		t.Fatalf("valid token: %+v answered=%v", r, ok)
	}
	if err := store.Check(r.DeviceID, []byte(r.Secret)); err != nil {
		t.Errorf("issued secret: %v", err)
	}
	if r, ok := ask(strings.Repeat("2", 32), req); !ok || r.Code != wire.EnrollUsed {
		t.Errorf("spent token: %+v answered=%v", r, ok)
	}
	if r, ok := ask(strings.Repeat("3", 32), []byte(`{"v":1,"token":"x"}`)); !ok || r.Code != wire.EnrollMalformed {
		t.Errorf("malformed: %+v answered=%v", r, ok)
	}
	if enrolled, refused := srv.Stats(); enrolled != 1 || refused != 2 {
		t.Errorf("Stats = %d enrolled, %d refused; want 1, 2", enrolled, refused)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
