package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/internal/atomicfile"
)

// `outpost devices enroll-token`: one-time enrollment tokens, issued by the running
// controller over its API (docs/firmware.md, "Enrollment").

func newDevicesEnrollTokenCmd() *cobra.Command {
	var af apiFlags
	var req httpapi.TokenRequest
	var ttl time.Duration
	var out string
	c := &cobra.Command{
		Use:   "enroll-token [--ttl 24h] [--id ID | --prefix P]",
		Short: "Issue a one-time token with which a device enrolls itself (prints it, or writes it to --out)",
		Long: `Issue a one-time enrollment token. A device whose agent runs with --enroll-token FILE
connects once with it, receives its device id and secret over MQTT and from then on logs in
as that device. The token works once, until --ttl has passed; the controller keeps only a
hash of it. With --id the device gets that id (and any earlier secret of it is replaced);
with --prefix, or neither, a new id made of the prefix (default "device-") and a random
suffix. Enrollment needs the embedded broker with device identity on (outpost serve).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.DeviceID != "" && req.Prefix != "" {
				return errors.New("give --id or --prefix, not both")
			}
			if ttl != 0 {
				req.TTL = ttl.String()
			}
			got, err := issueEnrollToken(cmd, &af, req)
			if err != nil {
				return err
			}
			if out == "" {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), got.Token)
				return err
			}
			if err := atomicfile.Write(out, []byte(got.Token+"\n"), 0o600); err != nil {
				return fmt.Errorf("the token was issued but not saved, issue another: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s written to %s, valid until %s (outpost-agent --enroll-token)\n", got.ID, out, got.Expires.Format(time.RFC3339))
			return nil
		},
	}
	af.add(c)
	f := c.Flags()
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token stays valid")
	f.StringVar(&req.DeviceID, "id", "", "the device `ID` the token enrolls")
	f.StringVar(&req.Prefix, "prefix", "", "prefix of the generated device id (default \"device-\")")
	f.StringVar(&out, "out", "", "write the token to this `file` (mode 0600) instead of printing it")
	return c
}

// issueEnrollToken asks the controller for a token.
func issueEnrollToken(cmd *cobra.Command, af *apiFlags, req httpapi.TokenRequest) (httpapi.IssuedToken, error) {
	var got httpapi.IssuedToken
	cl, err := af.client()
	if err != nil {
		return got, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return got, err
	}
	err = cl.do(cmd.Context(), "POST", "/v1/enroll-tokens", "application/json", body, &got)
	return got, err
}
