package main

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/atomicfile"
)

// `outpost devices add|revoke`: device credentials, issued and revoked by the running
// controller over its API (docs/operations.md, "Credentials").

func newDevicesAddCmd() *cobra.Command {
	var af apiFlags
	var out string
	c := &cobra.Command{
		Use:   "add ID",
		Short: "Issue a device its secret (prints it, or writes it to --out); again to rotate it",
		Long: `Issue the device ID a new MQTT secret. The controller keeps only a salted hash, so this is
the only time the secret is shown: give it to the device as outpost-agent --password-file.
Running it again for the same ID replaces the secret (rotation); the old one stops working at
the device's next login. It also lifts a revocation.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var got httpapi.IssuedCredentials
			if err := postDevice(cmd, &af, args[0], "credentials", &got); err != nil {
				return err
			}
			if out == "" {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), got.Secret)
				return err
			}
			// 0600: the file is the device's password.
			if err := atomicfile.Write(out, []byte(got.Secret+"\n"), 0o600); err != nil {
				return fmt.Errorf("the secret was issued but not saved, run add again: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: secret written to %s (outpost-agent --password-file)\n", got.ID, out)
			return nil
		},
	}
	af.add(c)
	c.Flags().StringVar(&out, "out", "", "write the secret to this `file` (mode 0600) instead of printing it")
	return c
}

func newDevicesRevokeCmd() *cobra.Command {
	var af apiFlags
	c := &cobra.Command{
		Use:   "revoke ID",
		Short: "Cut a device off: end its session on the embedded broker and refuse it from now on",
		Long: `Revoke the device ID: its secret and any client certificate naming it stop working, and
the embedded broker ends its live session at once. With Mosquitto, rewrite its files with
outpost broker config and reload it (SIGHUP). outpost devices add ID issues a new secret.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var got httpapi.Revocation
			if err := postDevice(cmd, &af, args[0], "revoke", &got); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: revoked\n", got.ID)
			return nil
		},
	}
	af.add(c)
	return c
}

// postDevice checks the device id and POSTs to /v1/devices/{id}/{action}, decoding into out.
func postDevice(cmd *cobra.Command, af *apiFlags, id, action string, out any) error {
	if err := wire.ValidDeviceID(id); err != nil {
		return err
	}
	cl, err := af.client()
	if err != nil {
		return err
	}
	return cl.do(cmd.Context(), "POST", "/v1/devices/"+url.PathEscape(id)+"/"+action, "", nil, out)
}
