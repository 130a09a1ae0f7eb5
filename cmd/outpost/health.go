package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/olekukonko/tablewriter"
	twc "github.com/olekukonko/tablewriter/tw"
	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/pahostore"
)

// `outpost health`: device health read straight from the broker's retained messages, so it
// works whether or not the controller is up.

func init() { register(newHealthCmd) }

type healthConfig struct {
	mqttFlags
	Device  string        // "" every device
	Watch   bool          // redraw until ctx ends
	Wait    time.Duration // without Watch: the most to wait for the retained messages
	Refresh time.Duration // with Watch
}

// mqttFlags are the broker connection flags of the CLI commands that speak MQTT themselves.
type mqttFlags struct {
	Broker       string // URL; user info is used as credentials unless User is set
	User         string
	PasswordFile string
	CAFile       string // for ssl:// and tls:// URLs
}

func (f *mqttFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.Broker, "broker", "tcp://"+defaultBrokerHost, "MQTT broker URL (tcp://, ssl://; tcp://user:pass@host:port also works)")
	fl.StringVar(&f.User, "username", "", "MQTT username (e.g. the controller's); empty logs in as an anonymous observer (serve --allow-observers)")
	fl.StringVar(&f.PasswordFile, "password-file", "", "`file` holding the MQTT password of --username")
	fl.StringVar(&f.CAFile, "ca-file", "", "PEM CA `file` the broker's TLS certificate is checked against (ssl:// URLs; default: the system's)")
}

const defaultBrokerHost = "127.0.0.1:1883"

// options are paho client options for these flags with a client id that is never a device id
// (':' is not allowed in one), so an anonymous login is an observer, never a device.
func (f *mqttFlags) options(role string) (*paho.ClientOptions, error) {
	u, err := fleet.ParseBrokerURL(f.Broker)
	if err != nil {
		return nil, err
	}
	user, pass := f.User, ""
	if u.User != nil && user == "" {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	if f.PasswordFile != "" {
		if f.User == "" {
			return nil, errors.New("--password-file needs --username")
		}
		b, err := readLimited(f.PasswordFile, "MQTT password", 4096)
		if err != nil {
			return nil, err
		}
		pass = strings.TrimSpace(string(b))
	}
	var nonce [6]byte
	rand.Read(nonce[:])
	o := paho.NewClientOptions().SetStore(pahostore.New()).
		AddBroker((&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()).
		SetClientID("outpost:" + role + ":" + hex.EncodeToString(nonce[:])).
		SetUsername(user).SetPassword(pass).
		SetCleanSession(true).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second)
	if f.CAFile != "" {
		pem, err := readLimited(f.CAFile, "CA", 1<<20)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", f.CAFile)
		}
		o.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	return o, nil
}

func newHealthCmd() *cobra.Command {
	cfg := healthConfig{}
	cmd := &cobra.Command{
		Use:   "health [ID]",
		Short: "Show device health from the broker's retained messages (works while the controller is down)",
		Long: `health subscribes to the devices' retained state and health topics on the MQTT broker and
prints a table: online or offline, model, inference rate and latency, buffered results, CPU,
memory, temperature and the last error. It needs no controller, only a login that may read
outpost/v1/d/+/health: an anonymous observer (outpost serve --allow-observers, or
outpost broker config --allow-observers for Mosquitto) or the controller's credentials.

Without --watch it prints once, after the retained messages arrived (at most --wait), and
exits. With --watch the table is redrawn in place every --refresh on a terminal, and printed
again as plain lines when the output is not a terminal, until Ctrl-C.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if err := wire.ValidDeviceID(args[0]); err != nil {
					return err
				}
				cfg.Device = args[0]
			}
			return runHealth(cmd.Context(), cmd.OutOrStdout(), cfg)
		},
	}
	cfg.mqttFlags.add(cmd)
	f := cmd.Flags()
	f.BoolVarP(&cfg.Watch, "watch", "w", false, "keep the table up to date until Ctrl-C")
	f.DurationVar(&cfg.Wait, "wait", 3*time.Second, "without --watch: the most to wait for the retained messages")
	f.DurationVar(&cfg.Refresh, "refresh", time.Second, "with --watch: how often the table is redrawn")
	return cmd
}

// maxHealthDevices bounds the devices the view keeps, so a broker full of junk topics cannot
// grow the CLI without bound.
const maxHealthDevices = 100_000

// healthQuiet is how long without a new message, after the subscription was granted, means
// the broker has delivered every retained message (it sends them right after the SUBACK).
const healthQuiet = 300 * time.Millisecond

// healthView is what the broker said about each device.
type healthView struct {
	device string // "" every device

	mu      sync.Mutex
	devs    map[string]*healthRow
	last    time.Time // when the latest message arrived
	ignored int       // messages ignored: malformed, oversize, over maxHealthDevices
	up      bool      // connected and subscribed
}

type healthRow struct {
	state  string // online, offline, "" unknown
	health *wire.Health
}

func newHealthView(device string) *healthView {
	return &healthView{device: device, devs: map[string]*healthRow{}}
}

// topics are the subscriptions for the view.
func (v *healthView) topics() map[string]byte {
	dev := "+"
	if v.device != "" {
		dev = v.device
	}
	return map[string]byte{
		wire.Root + "/d/" + dev + "/" + wire.LeafState:  1,
		wire.Root + "/d/" + dev + "/" + wire.LeafHealth: 1,
	}
}

// handle takes one message. An empty retained payload clears a topic (the device was removed
// from the broker's retained store).
func (v *healthView) handle(topic string, payload []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.last = time.Now()
	device, leaf, ok := wire.ParseDeviceTopic(topic)
	if !ok || (v.device != "" && device != v.device) || len(payload) > wire.MaxStatusBytes {
		v.ignored++
		return
	}
	row := v.devs[device]
	if row == nil {
		if len(payload) == 0 {
			return
		}
		if len(v.devs) >= maxHealthDevices {
			v.ignored++
			return
		}
		row = &healthRow{}
		v.devs[device] = row
	}
	switch leaf {
	case wire.LeafState:
		var s wire.State
		if len(payload) == 0 {
			row.state = ""
		} else if err := wire.Decode(payload, &s); err != nil || s.Device != device {
			v.ignored++
		} else {
			row.state = s.State
		}
	case wire.LeafHealth:
		var h wire.Health
		if len(payload) == 0 {
			row.health = nil
		} else if err := wire.Decode(payload, &h); err != nil || h.Device != device {
			v.ignored++
		} else if row.health == nil || !h.Time.Before(row.health.Time) {
			row.health = &h
		}
	}
	if row.state == "" && row.health == nil {
		delete(v.devs, device)
	}
}

func (v *healthView) setUp(up bool) {
	v.mu.Lock()
	v.up = up
	v.last = time.Now()
	v.mu.Unlock()
}

// quietSince reports whether no message arrived for d while subscribed.
func (v *healthView) quietFor(d time.Duration) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.up && time.Since(v.last) >= d
}

// render writes the table as of now.
func (v *healthView) render(w io.Writer, now time.Time) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	ids := make([]string, 0, len(v.devs))
	for id := range v.devs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	t := tablewriter.NewTable(w,
		tablewriter.WithHeaderAutoFormat(twc.Off),
		tablewriter.WithRowAlignment(twc.AlignRight),
		tablewriter.WithHeaderAlignment(twc.AlignRight),
		tablewriter.WithRendition(twc.Rendition{Borders: twc.BorderNone, Settings: twc.Settings{Separators: twc.SeparatorsNone, Lines: twc.LinesNone}}),
	)
	t.Header("DEVICE", "STATE", "MODEL", "AGENT", "INFER/S", "P99 MS", "BUFFERED", "OLDEST S", "CPU %", "RSS MiB", "TEMP °C", "REPORTED", "LAST ERROR")
	for _, id := range ids {
		r := v.devs[id]
		row := []string{id, cmpOr(r.state, "?"), "-", "-", "-", "-", "-", "-", "-", "-", "-", "never", "-"}
		if h := r.health; h != nil {
			row[2], row[3] = h.Model.String(), cmpOr(h.AgentVersion, "-")
			row[4], row[5] = fmt.Sprintf("%.1f", h.InferencesPerS), fmt.Sprintf("%.3f", h.LatencyP99Ms)
			row[6], row[7] = fmt.Sprint(h.Buffered), fmt.Sprintf("%.1f", h.OldestBufferedS)
			row[8] = fmt.Sprintf("%.1f", h.CPUPercent)
			if h.RSSBytes > 0 {
				row[9] = fmt.Sprintf("%.1f", float64(h.RSSBytes)/(1<<20))
			}
			if h.SoCTempC != nil {
				row[10] = fmt.Sprintf("%.1f", *h.SoCTempC)
			}
			row[11] = reportedAgo(now.Sub(h.Time))
			if h.LastError != "" {
				row[12] = truncate(h.LastError, 60)
			}
		}
		t.Append(row)
	}
	t.Render()
	return len(ids)
}

// reportedAgo formats how long ago a device (by its own clock) reported; a clock ahead of
// ours shows as "now".
func reportedAgo(d time.Duration) string {
	if d < time.Second {
		return "now"
	}
	return d.Truncate(time.Second).String() + " ago"
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func runHealth(ctx context.Context, out io.Writer, cfg healthConfig) error {
	if cfg.Wait <= 0 || cfg.Refresh <= 0 {
		return errors.New("--wait and --refresh must be > 0")
	}
	opts, err := cfg.options("health")
	if err != nil {
		return err
	}
	v := newHealthView(cfg.Device)
	subErr := make(chan error, 1)
	opts.SetAutoReconnect(cfg.Watch).SetConnectRetry(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { v.handle(m.Topic(), m.Payload()) }).
		SetConnectionLostHandler(func(paho.Client, error) { v.setUp(false) }).
		// Subscribing on every connect keeps --watch going across broker restarts.
		SetOnConnectHandler(func(c paho.Client) {
			go func() {
				tok := c.SubscribeMultiple(v.topics(), nil)
				err := waitToken(tok, 10*time.Second)
				if err == nil {
					err = subackErr(tok)
				}
				if err != nil {
					select {
					case subErr <- err:
					default:
					}
					return
				}
				v.setUp(true)
			}()
		})
	client := paho.NewClient(opts)
	if err := waitToken(client.Connect(), 10*time.Second); err != nil {
		return fmt.Errorf("connect to %s: %w%s", redact(cfg.Broker), err, loginHint(cfg.mqttFlags, err))
	}
	defer client.Disconnect(250)

	if !cfg.Watch {
		deadline := time.NewTimer(cfg.Wait)
		defer deadline.Stop()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
	wait:
		for !v.quietFor(healthQuiet) {
			select {
			case err := <-subErr:
				return fmt.Errorf("subscribe on %s: %w%s", redact(cfg.Broker), err, loginHint(cfg.mqttFlags, err))
			case <-ctx.Done():
				return ctx.Err()
			case <-deadline.C:
				break wait
			case <-tick.C:
			}
		}
		if n := v.render(out, time.Now()); n == 0 {
			if cfg.Device != "" {
				return fmt.Errorf("device %s: no retained state or health on %s", cfg.Device, redact(cfg.Broker))
			}
			return fmt.Errorf("no device has retained state or health on %s", redact(cfg.Broker))
		}
		return nil
	}

	screen := newLiveScreen(out)
	tick := time.NewTicker(cfg.Refresh)
	defer tick.Stop()
	for {
		var frame strings.Builder
		now := time.Now()
		status := "connected"
		v.mu.Lock()
		if !v.up {
			status = "not connected, retrying"
		}
		v.mu.Unlock()
		fmt.Fprintf(&frame, "%s  %s (%s); Ctrl-C stops\n", now.Format("15:04:05"), redact(cfg.Broker), status)
		v.render(&frame, now)
		screen.draw("", frame.String())
		select {
		case err := <-subErr:
			return fmt.Errorf("subscribe on %s: %w%s", redact(cfg.Broker), err, loginHint(cfg.mqttFlags, err))
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// waitToken waits for a paho token for at most d.
func waitToken(tok paho.Token, d time.Duration) error {
	if !tok.WaitTimeout(d) {
		return errors.New("timed out")
	}
	return tok.Error()
}

// subackErr reports a refused subscription (return code 0x80); mochi and Mosquitto refuse a
// filter the ACL denies that way rather than failing the connection.
func subackErr(tok paho.Token) error {
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	for topic, code := range st.Result() {
		if code >= 0x80 {
			return fmt.Errorf("subscription to %s refused by the broker", topic)
		}
	}
	return nil
}

// loginHint says how to get read access when the broker refused the login or subscription.
func loginHint(f mqttFlags, err error) string {
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "not authori") && !strings.Contains(err.Error(), "refused") {
		return ""
	}
	if f.User == "" && !strings.Contains(f.Broker, "@") {
		return " (anonymous observers need `outpost serve --allow-observers`; or log in with --username and --password-file)"
	}
	return " (check --username and --password-file)"
}
