// Package enroll answers devices' enrollment requests on the controller side: it redeems the
// one-time token a request carries (fleet/credentials) and publishes the device's id and
// secret, or the reason for the refusal, to the requesting session only (wire/enroll.go has
// the protocol, fleet/broker the enrollment logins' ACL).
package enroll

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-ml/outpost/fleet/credentials"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Redeemer spends enrollment tokens (fleet/credentials.Store).
type Redeemer interface {
	Redeem(ctx context.Context, token string, now time.Time) (deviceID, secret string, err error)
}

// DefaultClientID is the server's MQTT client id.
const DefaultClientID = "outpost-enroll"

// Options configure New.
type Options struct {
	Tokens             Redeemer
	BrokerURL          string // tcp://host:port
	Username, Password string // the controller's broker credentials
	ClientID           string // default DefaultClientID
	Logger             *slog.Logger
	Now                func() time.Time // default time.Now
}

// Server answers enrollment requests.
type Server struct {
	o                 Options
	log               *slog.Logger
	enrolled, refused atomic.Uint64
	subscribed        atomic.Bool
	lastRefusalLogged atomic.Int64
}

// New checks the options; Run connects.
func New(o Options) (*Server, error) {
	if o.Tokens == nil || o.BrokerURL == "" {
		return nil, errors.New("enroll: token store and broker url are required")
	}
	if o.ClientID == "" {
		o.ClientID = DefaultClientID
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Stats: devices enrolled and requests refused since New.
func (s *Server) Stats() (enrolled, refused uint64) { return s.enrolled.Load(), s.refused.Load() }

// Subscribed reports whether Run is connected and listening for requests.
func (s *Server) Subscribed() bool { return s.subscribed.Load() }

// Run connects (retrying until the broker answers) and answers requests until ctx ends.
// Requests are handled one at a time on the client's delivery goroutine: each costs one
// password hash, so a flood of them queues instead of taking every core.
func (s *Server) Run(ctx context.Context) error {
	o := paho.NewClientOptions().
		AddBroker(s.o.BrokerURL).
		SetClientID(s.o.ClientID).
		SetUsername(s.o.Username).
		SetPassword(s.o.Password).
		SetCleanSession(true). // a device whose request was lost asks again
		SetOrderMatters(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * time.Second).
		SetConnectionLostHandler(func(paho.Client, error) { s.subscribed.Store(false) }).
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.Subscribe(wire.EnrollRequestWildcard, 1, func(c paho.Client, m paho.Message) {
				s.handle(ctx, c, m)
			})
			if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
				s.subscribed.Store(true)
				s.log.Info("enrollment subscribed", "topic", wire.EnrollRequestWildcard)
				return
			}
			s.log.Error("enrollment subscribe", "err", tok.Error())
		})
	c := paho.NewClient(o)
	c.Connect()
	<-ctx.Done()
	c.Disconnect(250)
	return nil
}

func (s *Server) handle(ctx context.Context, c paho.Client, m paho.Message) {
	session, ok := wire.ParseEnrollRequestTopic(m.Topic())
	if !ok || m.Retained() {
		return // a retained request is an old one replayed by the broker, answered already
	}
	resp := s.answer(ctx, session, m.Payload())
	out, err := wire.EncodeEnroll(&resp)
	if err != nil {
		s.log.Error("encode enrollment response", "err", err)
		return
	}
	tok := c.Publish(wire.EnrollResponseTopic(session), 1, false, out)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		// The token is spent: the device sees no answer and says so; a new token enrolls it.
		s.log.Warn("enrollment response not delivered to the broker", "session", session, "device", resp.DeviceID, "err", tok.Error())
	}
}

// answer redeems the request's token; refusals carry a code and a one-line reason.
func (s *Server) answer(ctx context.Context, session string, payload []byte) wire.EnrollResponse {
	req, err := wire.DecodeEnrollRequest(payload)
	if err != nil {
		s.refused.Add(1)
		s.logRefusal(session, wire.EnrollMalformed, err)
		return wire.EnrollResponse{Code: wire.EnrollMalformed, Reason: clip(err.Error())}
	}
	id, secret, err := s.o.Tokens.Redeem(ctx, req.Token, s.o.Now())
	if err != nil {
		s.refused.Add(1)
		code, reason := wire.EnrollRefused, "the controller could not enroll this device; see its log"
		switch {
		case errors.Is(err, credentials.ErrTokenUnknown):
			code, reason = wire.EnrollUnknown, err.Error()
		case errors.Is(err, credentials.ErrTokenUsed):
			code, reason = wire.EnrollUsed, err.Error()
		case errors.Is(err, credentials.ErrTokenExpired):
			code, reason = wire.EnrollExpired, err.Error()
		}
		if code == wire.EnrollUnknown {
			s.logRefusal(session, code, err) // anyone can send these
		} else {
			s.log.Warn("enrollment request refused", "session", session, "code", code, "err", err)
		}
		return wire.EnrollResponse{Code: code, Reason: clip(reason)}
	}
	s.enrolled.Add(1)
	s.log.Info("device enrolled", "device", id, "session", session, "agent", req.Agent) // never the secret
	return wire.EnrollResponse{DeviceID: id, Secret: secret}
}

// logRefusal logs at most one refusal per second: malformed requests and unknown tokens come
// from anyone, and must not fill the log.
func (s *Server) logRefusal(session, code string, err error) {
	if now := time.Now().UnixNano(); now-s.lastRefusalLogged.Load() >= int64(time.Second) {
		s.lastRefusalLogged.Store(now)
		s.log.Warn("enrollment request refused", "session", session, "code", code, "err", err)
	}
}

func clip(s string) string {
	if len(s) > wire.MaxReasonLen {
		s = strings.ToValidUTF8(s[:wire.MaxReasonLen], "")
	}
	return s
}
