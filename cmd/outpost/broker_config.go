package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet/broker"
	"github.com/outpost-ml/outpost/fleet/credentials"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/internal/atomicfile"
)

// `outpost broker config`: Mosquitto files matching the controller's device credentials.

func init() { register(newBrokerCmd) }

// Files `broker config` writes into --out.
const (
	mosquittoPasswdFile = "passwd"
	mosquittoACLFile    = "acl"
	mosquittoConfFile   = "outpost.conf"
)

func newBrokerCmd() *cobra.Command {
	c := &cobra.Command{Use: "broker", Short: "External MQTT broker (Mosquitto) configuration"}
	var af apiFlags
	var out, ctlUser, ctlPasswordFile string
	var allowObservers bool
	var fleetSize int
	cfg := &cobra.Command{
		Use:   "config --out DIR",
		Short: "Write Mosquitto's password file, ACL and a config snippet for the fleet's devices",
		Long: `Write into DIR, from the running controller's device credentials:
  passwd        the devices that may connect (and the controller with --controller-password-file),
                in Mosquitto's own PBKDF2-SHA512 ($7$) format: no secret leaves the controller
  acl           each device may publish only under outpost/v1/d/ID/ and read only
                outpost/v1/c/ID/; the controller user may do anything
  outpost.conf  allow_anonymous, password_file and acl_file lines, and max_queued_messages
                sized for the controller's session (--fleet-size); include it in mosquitto.conf
Run it again after outpost devices add or revoke and reload Mosquitto (SIGHUP): Mosquitto
then disconnects sessions whose credentials are gone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("missing --out DIR")
			}
			if fleetSize < 0 {
				return fmt.Errorf("--fleet-size %d: must not be negative", fleetSize)
			}
			if err := wire.ValidDeviceID(ctlUser); err != nil {
				return fmt.Errorf("--controller-user: %w", err)
			}
			var ctlLine string
			if ctlPasswordFile != "" {
				pw, err := readLimited(ctlPasswordFile, "controller password", 4096)
				if err != nil {
					return err
				}
				p := strings.TrimSpace(string(pw))
				if p == "" {
					return fmt.Errorf("controller password file %s is empty", ctlPasswordFile)
				}
				h, err := credentials.Hash([]byte(p), credentials.DefaultIterations)
				if err != nil {
					return err
				}
				ctlLine = ctlUser + ":" + h + "\n"
			}
			cl, err := af.client()
			if err != nil {
				return err
			}
			var files httpapi.MosquittoFiles
			if err := cl.do(cmd.Context(), "GET", "/v1/credentials/mosquitto", "", nil, &files); err != nil {
				return err
			}
			dir, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return fmt.Errorf("create %s: %w", out, err)
			}
			write := []struct {
				name string
				data string
				perm os.FileMode
			}{
				// Mosquitto reads these as its own user, often not the one running this command:
				// the hashes are not secrets in themselves, but keep them from other users.
				{mosquittoPasswdFile, ctlLine + files.Passwd, 0o640},
				{mosquittoACLFile, mosquittoACL(ctlUser, allowObservers), 0o644},
				{mosquittoConfFile, mosquittoConf(dir, allowObservers, queuedMessages(fleetSize, strings.Count(files.Passwd, "\n"))), 0o644},
			}
			for _, w := range write {
				if err := atomicfile.Write(filepath.Join(dir, w.name), []byte(w.data), w.perm); err != nil {
					return err
				}
			}
			n := strings.Count(files.Passwd, "\n")
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s, %s and %s to %s (%d devices)\n", mosquittoPasswdFile, mosquittoACLFile, mosquittoConfFile, dir, n)
			if ctlLine == "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: no --controller-password-file: add the controller with mosquitto_passwd %s %s\n", filepath.Join(dir, mosquittoPasswdFile), ctlUser)
			}
			return nil
		},
	}
	af.add(cfg)
	f := cfg.Flags()
	f.StringVar(&out, "out", "", "`directory` to write the files into (created if missing)")
	f.StringVar(&ctlUser, "controller-user", broker.DefaultControllerUser, "the controller's MQTT username (full access in the ACL)")
	f.StringVar(&ctlPasswordFile, "controller-password-file", "", "`file` with the controller's MQTT password, to put its hash into passwd")
	f.BoolVar(&allowObservers, "allow-observers", false, "let anonymous clients read outpost/# and homeassistant/# (off: anonymous clients are refused)")
	f.IntVar(&fleetSize, "fleet-size", 0, "devices to size Mosquitto's session queue for (0: the devices issued now, at least 1,000)")
	c.AddCommand(cfg)
	return c
}

// mosquittoACL is the ACL file. %u is the username, which Mosquitto has already checked
// against the password file; device ids cannot hold the characters Mosquitto refuses in
// pattern substitution (+ # /).
func mosquittoACL(ctlUser string, observers bool) string {
	var b strings.Builder
	b.WriteString("# Outpost device isolation, written by `outpost broker config`.\n")
	if observers {
		b.WriteString("# Anonymous observers may read the fleet's topics, and Home Assistant's discovery\n# configs the controller publishes with --homeassistant.\ntopic read outpost/#\ntopic read homeassistant/#\n\n")
	}
	fmt.Fprintf(&b, "# The controller.\nuser %s\ntopic readwrite #\n\n", ctlUser)
	b.WriteString("# Every device: publish only as itself, read only its own commands.\n")
	b.WriteString("pattern write " + wire.DeviceTopic("%u", "#") + "\n")
	b.WriteString("pattern read " + wire.ControllerTopic("%u", "#") + "\n")
	return b.String()
}

// Sizing of the controller's Mosquitto session. The controller's one session receives every
// device's result batches, up to agentWindow unacked per device (agent.DefaultWindow; the
// controller does not link the agent), and Mosquitto drops QoS 1 messages beyond
// max_queued_messages (default 1,000) for a session: a dropped batch is resent by its device
// only after its 10 s ack timeout, so a controller that falls behind would multiply its work.
// Twice the windows leaves room for state, health, drift and the resends of a reconnection.
const (
	agentWindow      = 8
	minFleetSize     = 1000
	queuePerDevice   = 2 * agentWindow
	mosquittoDefault = 1000
)

// queuedMessages is the max_queued_messages for a fleet of size devices (0: issued devices,
// the credentials known now, at least minFleetSize: a fleet grows between runs of the command).
func queuedMessages(size, issued int) int {
	if size == 0 {
		size = max(issued, minFleetSize)
	}
	return max(size*queuePerDevice, mosquittoDefault)
}

func mosquittoConf(dir string, observers bool, queued int) string {
	return fmt.Sprintf("# Outpost device credentials, written by `outpost broker config`.\n"+
		"allow_anonymous %t\npassword_file %s\nacl_file %s\n"+
		"# The controller's session receives every device's results, up to %d batches unacked per\n"+
		"# device: queue them rather than drop them (a dropped batch is resent only after 10 s).\n"+
		"# Unlimited bytes (Mosquitto's default); the devices' windows bound what is queued.\n"+
		"max_queued_messages %d\nmax_queued_bytes 0\n",
		observers, filepath.Join(dir, mosquittoPasswdFile), filepath.Join(dir, mosquittoACLFile), agentWindow, queued)
}
