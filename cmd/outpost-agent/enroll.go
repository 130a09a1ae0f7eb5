package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-ml/outpost/agent/enroll"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Enrollment (docs/firmware.md): with --enroll-token and no identity yet, the agent redeems
// the token over MQTT for its device id and secret, keeps them in DATA-DIR/identity.json
// (0600) and runs as that device; later starts read the identity and never use the token
// again.

// enrollRetry spaces enrollment attempts that failed for a reason other than a refusal.
var enrollRetry = 5 * time.Second

// checkEnrollFlags runs in parse: the token file must hold a token, and the device's
// password comes from enrollment, not from a file.
func checkEnrollFlags(c *config, f *credentialFlags) error {
	if f.enrollToken == "" {
		return nil
	}
	if f.passwordFile != "" {
		return errors.New("--enroll-token and --password-file exclude each other: enrollment issues the secret")
	}
	if f.tlsCert != "" {
		return errors.New("--enroll-token and --tls-cert exclude each other: a certificate is an identity already")
	}
	data, err := readSmall(f.enrollToken, maxSecretFile)
	if err != nil {
		return fmt.Errorf("--enroll-token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if _, _, err := wire.ParseEnrollToken(tok); err != nil {
		return fmt.Errorf("--enroll-token %s: %w", f.enrollToken, err)
	}
	c.enrollToken = tok
	return nil
}

// errRefused marks an enrollment the controller refused: exit status 2, which the unit does
// not restart, since the same token will be refused again.
var errRefused = errors.New("enrollment refused")

// enrollIdentity sets c's device id and password from the identity file, enrolling first if
// there is none.
func enrollIdentity(ctx context.Context, c *config, log *slog.Logger) error {
	path := filepath.Join(c.DataDir, enroll.IdentityFile)
	id, ok, err := enroll.LoadIdentity(path)
	if err != nil {
		return err
	}
	if !ok {
		if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		if id, err = enrollLoop(ctx, c, log); err != nil {
			return err
		}
		if c.DeviceID != "" && id.DeviceID != c.DeviceID {
			return fmt.Errorf("%w: the controller enrolled this device as %q, its config says %q", errRefused, id.DeviceID, c.DeviceID)
		}
		if err := enroll.SaveIdentity(path, id); err != nil {
			return fmt.Errorf("enrolled as %s but could not save the identity (the token is spent: issue a new one): %w", id.DeviceID, err)
		}
		log.Info("enrolled", "device", id.DeviceID, "identity", path)
	} else if c.DeviceID != "" && id.DeviceID != c.DeviceID {
		return fmt.Errorf("%s names device %q, the config says %q", path, id.DeviceID, c.DeviceID)
	}
	c.DeviceID, c.Link.Password = id.DeviceID, id.Secret
	return nil
}

func enrollLoop(ctx context.Context, c *config, log *slog.Logger) (wire.Identity, error) {
	for {
		log.Info("enrolling with a one-time token", "broker", c.Broker)
		id, err := enroll.Enroll(ctx, enroll.Options{Broker: c.Broker, TLS: c.Link.TLS, Token: c.enrollToken, Agent: version})
		var refused *enroll.RefusedError
		switch {
		case err == nil:
			return id, nil
		case errors.As(err, &refused):
			return id, fmt.Errorf("%w: %v", errRefused, err)
		case ctx.Err() != nil:
			return id, ctx.Err()
		}
		log.Warn("enrollment attempt failed, retrying", "err", err, "in", enrollRetry)
		select {
		case <-time.After(enrollRetry):
		case <-ctx.Done():
			return id, ctx.Err()
		}
	}
}
