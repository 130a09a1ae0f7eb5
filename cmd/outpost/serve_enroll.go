package main

import (
	"log/slog"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/credentials"
	"github.com/outpost-ml/outpost/fleet/enroll"
)

// newEnrollServer answers devices' enrollment requests (docs/firmware.md, "Enrollment") on
// the embedded broker, which admits enrollment logins when device identity is on. With an
// external broker there is none: its ACL has no enrollment rules.
func newEnrollServer(creds *credentials.Store, copts fleet.Options, log *slog.Logger) (*enroll.Server, error) {
	return enroll.New(enroll.Options{
		Tokens: creds, BrokerURL: copts.BrokerURL, Username: copts.Username, Password: copts.Password,
		Logger: log.With("component", "enroll"),
	})
}
