package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/firmware"
	"github.com/outpost-ml/outpost/fleet/httpapi"
)

// identityFlags are firmware build's device identity flags: where the bundle's secret or
// enrollment token comes from.
type identityFlags struct {
	api        apiFlags
	enroll     bool
	ttl        time.Duration
	prefix     string
	noIdentity bool
}

func (f *identityFlags) add(cmd *cobra.Command) {
	f.api.add(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&f.enroll, "enroll", false, "carry a one-time enrollment token instead of a secret (outpost devices enroll-token)")
	fl.DurationVar(&f.ttl, "enroll-ttl", 7*24*time.Hour, "with --enroll: how long the token stays valid (until the board's first boot)")
	fl.StringVar(&f.prefix, "enroll-prefix", "", "with --enroll and no --device-id: prefix of the device id the controller gives (default \"device-\")")
	fl.BoolVar(&f.noIdentity, "no-identity", false, "build without credentials or token (put the secret on the device by hand)")
}

func (f *identityFlags) check(deviceID, devicesCSV string) error {
	switch {
	case deviceID != "" && devicesCSV != "":
		return errors.New("give exactly one of --device-id and --devices")
	case deviceID == "" && devicesCSV == "" && !f.enroll:
		return errors.New("give exactly one of --device-id and --devices (or --enroll)")
	case f.noIdentity && f.enroll:
		return errors.New("--no-identity and --enroll exclude each other")
	case f.prefix != "" && (!f.enroll || deviceID != "" || devicesCSV != ""):
		return errors.New("--enroll-prefix goes with --enroll and no device id")
	}
	return nil
}

// issue asks the controller for the bundle's secret or token.
func (f *identityFlags) issue(cmd *cobra.Command, o *firmware.Options) error {
	switch {
	case f.noIdentity:
		return nil
	case f.enroll:
		got, err := issueEnrollToken(cmd, &f.api, httpapi.TokenRequest{DeviceID: o.DeviceID, Prefix: f.prefix, TTL: f.ttl.String()})
		if err != nil {
			return err
		}
		o.EnrollToken = got.Token
		return nil
	}
	var got httpapi.IssuedCredentials
	if err := postDevice(cmd, &f.api, o.DeviceID, "credentials", &got); err != nil {
		return err
	}
	o.Secret = got.Secret
	return nil
}
