package main

import (
	"context"
	"crypto/subtle"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/homeassistant"
	"github.com/outpost-ml/outpost/fleet/metrics"
	"github.com/outpost-ml/outpost/fleet/web"
)

// webConfig is the part of serveConfig for what people look at: the dashboard and /metrics on
// the --http listener, and Home Assistant discovery (docs/dashboard.md).
type webConfig struct {
	MetricsMaxDevices   int  // per-device series cap (metrics.Options.MaxDevices)
	MetricsOpen         bool // serve /metrics without the API token
	HomeAssistant       bool
	HomeAssistantPrefix string
}

func addWebFlags(cmd *cobra.Command, cfg *serveConfig) {
	f := cmd.Flags()
	f.IntVar(&cfg.MetricsMaxDevices, "metrics-max-devices", metrics.DefaultMaxDevices, "most devices with per-device /metrics series (the first by id; -1: none)")
	f.BoolVar(&cfg.MetricsOpen, "metrics-open", false, "serve /metrics without the API token (it names devices and their figures)")
	f.BoolVar(&cfg.HomeAssistant, "homeassistant", false, "announce every device to Home Assistant by MQTT discovery (Home Assistant connects as an observer: see --allow-observers)")
	f.StringVar(&cfg.HomeAssistantPrefix, "homeassistant-prefix", homeassistant.DefaultPrefix, "Home Assistant's MQTT discovery prefix")
}

// httpHandler puts the dashboard (/) and /metrics beside the API (/v1/). The dashboard's files
// hold no data and are served to anyone; everything they show comes from the API, with the
// token the user signs in with.
func (s *fleetServer) httpHandler(cfg serveConfig, api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	mo := metrics.Options{Fleet: s.Controller, Rollouts: s.rollouts, MaxDevices: cfg.MetricsMaxDevices}
	if s.Monitor != nil {
		mo.Drift = s.Monitor
	}
	var m http.Handler = metrics.Handler(mo)
	if !cfg.MetricsOpen {
		m = bearer(s.APIToken, m)
	}
	mux.Handle("/metrics", m)
	mux.Handle("/", web.Handler())
	return mux
}

// bearer admits requests carrying the token (Prometheus: authorization.credentials_file).
func bearer(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outpost"`)
			http.Error(w, "missing or wrong API token (or run outpost serve --metrics-open)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// homeAssistantOptions is what runHomeAssistant publishes with; nil without --homeassistant.
func homeAssistantOptions(cfg serveConfig, copts fleet.Options, ctl *fleet.Controller) *homeassistant.Options {
	if !cfg.HomeAssistant {
		return nil
	}
	id := copts.ClientID
	if id == "" {
		id = fleet.DefaultClientID
	}
	log := cfg.Logger
	if log != nil {
		log = log.With("component", "homeassistant")
	}
	return &homeassistant.Options{
		BrokerURL: copts.BrokerURL, Username: copts.Username, Password: copts.Password,
		ClientID: id + "-ha", Prefix: cfg.HomeAssistantPrefix, Fleet: ctl, Logger: log,
	}
}

func runHomeAssistant(ctx context.Context, o *homeassistant.Options) error {
	return homeassistant.Run(ctx, *o)
}
