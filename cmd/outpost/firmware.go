package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/firmware"
)

func init() { register(newFirmwareCmd) }

func newFirmwareCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firmware",
		Short: "Build flashable agent bundles for boards (tar.gz, .deb, Raspberry Pi first-boot folder)",
	}
	cmd.AddCommand(newFirmwareBuildCmd(), &cobra.Command{
		Use:   "targets",
		Short: "List the boards firmware build knows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "TARGET\tARCH\tDEB ARCH\tBOARDS")
			for _, t := range firmware.Targets {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.Name, t.Arch(), t.DebArch, t.Description)
			}
			return w.Flush()
		},
	})
	return cmd
}

func newFirmwareBuildCmd() *cobra.Command {
	var (
		target, fleetPath, deviceID, devicesCSV, out, releaseDir, ver string
		id                                                            identityFlags // firmware_identity.go
	)
	cmd := &cobra.Command{
		Use:   "build --target TARGET --fleet FLEET.yaml (--device-id ID | --devices devices.csv | --enroll)",
		Short: "Build one device's bundle, or one per line of a devices.csv",
		Long: `Builds a bundle per device: a static outpost-agent for the board, its config (keys are
outpost-agent flag names), the fleet's package key, trust root and CA, the initial signed model
and a hardened systemd unit with a watchdog, packed as NAME.tar.gz (install.sh inside), NAME.deb
and, for Raspberry Pi targets, NAME-boot/outpost/ to copy onto the boot partition.

The agent is built from this checkout (run from it), or taken from --release-dir holding
make cross's outpost-agent-linux-ARCH binaries. devices.csv has a header line naming the
columns device_id and, optionally, target (default --target).

Each bundle carries the device's identity, issued by the running controller over its API
(--server, --token-file): with --device-id (or --devices) a new secret for the device, as
outpost devices add issues it (any earlier secret stops working); with --enroll a one-time
enrollment token instead (with --device-id for that id, else the controller names the device
--enroll-prefix plus a random suffix on first boot). --no-identity builds without one.
See docs/firmware.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := id.check(deviceID, devicesCSV); err != nil {
				return err
			}
			fleet, err := firmware.LoadFleet(fleetPath)
			if err != nil {
				return err
			}
			type job struct{ id, target string }
			var jobs []job
			if deviceID != "" || devicesCSV == "" {
				jobs = []job{{deviceID, target}} // no id: --enroll names the device
			} else if jobs2, err := readDevicesCSV(devicesCSV, target); err != nil {
				return err
			} else {
				for _, j := range jobs2 {
					jobs = append(jobs, job{j[0], j[1]})
				}
			}
			for _, j := range jobs {
				if j.target == "" {
					return fmt.Errorf("device %s: no target (give --target or a target column)", j.id)
				}
				if _, err := firmware.LookupTarget(j.target); err != nil {
					return fmt.Errorf("device %s: %w", j.id, err)
				}
			}
			src := &firmware.AgentSource{ReleaseDir: releaseDir}
			if releaseDir == "" {
				if src.ModuleDir, err = outpostCheckout(); err != nil {
					return err
				}
				work, err := os.MkdirTemp("", "outpost-firmware")
				if err != nil {
					return err
				}
				defer os.RemoveAll(work)
				src.WorkDir = work
			}
			if ver == "" {
				ver = checkoutVersion(src.ModuleDir)
			}
			src.Version = ver
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			if len(jobs) > 1 {
				bar = progressbar.NewOptions(len(jobs), progressbar.OptionSetWriter(cmd.ErrOrStderr()),
					progressbar.OptionSetDescription("building bundles"), progressbar.OptionShowCount(),
					progressbar.OptionClearOnFinish())
			}
			w := cmd.OutOrStdout()
			for _, j := range jobs {
				t, _ := firmware.LookupTarget(j.target)
				o := firmware.Options{Target: t, Fleet: fleet, DeviceID: j.id, OutDir: out, Version: ver, Agents: src}
				if err := id.issue(cmd, &o); err != nil {
					return fmt.Errorf("device %s: %w", j.id, err)
				}
				b, err := firmware.Build(cmd.Context(), o)
				if err != nil {
					return fmt.Errorf("device %s: %w", j.id, err)
				}
				if bar != nil {
					_ = bar.Add(1)
					continue
				}
				fmt.Fprintf(w, "%s\n  %s\n  %s\n", b.Name, b.TarGz, b.Deb)
				if b.BootDir != "" {
					fmt.Fprintf(w, "  %s/ (copy outpost/ onto the boot partition)\n", b.BootDir)
				}
			}
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintf(w, "%d bundles in %s\n", len(jobs), out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "board `TARGET` (outpost firmware targets lists them)")
	f.StringVar(&fleetPath, "fleet", "", "fleet `file` (FLEET.yaml: broker, model, keys, sensors)")
	f.StringVar(&deviceID, "device-id", "", "build one bundle for device `ID`")
	f.StringVar(&devicesCSV, "devices", "", "build one bundle per device listed in this CSV `file`")
	f.StringVar(&out, "out", "firmware-out", "output `directory`")
	f.StringVar(&releaseDir, "release-dir", "", "take prebuilt agents from this `directory` (make cross names) instead of building")
	f.StringVar(&ver, "version", "", "agent version to embed (default: git describe of the checkout)")
	id.add(cmd)
	_ = cmd.MarkFlagRequired("fleet")
	return cmd
}

// readDevicesCSV returns [device_id, target] pairs; the header names the columns.
func readDevicesCSV(path, defaultTarget string) ([][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(io.LimitReader(f, 16<<20))
	r.FieldsPerRecord = -1
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	idCol, targetCol := -1, -1
	for i, h := range head {
		switch strings.TrimSpace(strings.ToLower(h)) {
		case "device_id", "device", "id":
			idCol = i
		case "target":
			targetCol = i
		}
	}
	if idCol < 0 {
		return nil, fmt.Errorf("%s: header %q has no device_id column", path, strings.Join(head, ","))
	}
	var rows [][2]string
	seen := map[string]int{}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if idCol >= len(rec) {
			return nil, fmt.Errorf("%s: line %d: no device_id", path, line)
		}
		id := strings.TrimSpace(rec[idCol])
		if err := firmware.ValidDeviceID(id); err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", path, line, err)
		}
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("%s: line %d: device %s already on line %d", path, line, id, prev)
		}
		seen[id] = line
		t := defaultTarget
		if targetCol >= 0 && targetCol < len(rec) && strings.TrimSpace(rec[targetCol]) != "" {
			t = strings.TrimSpace(rec[targetCol])
		}
		rows = append(rows, [2]string{id, t})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no devices", path)
	}
	return rows, nil
}

// outpostCheckout finds the Outpost module this command runs in (to build the agent from).
func outpostCheckout() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("building the agent needs Go and an Outpost checkout (or --release-dir): %v", err)
	}
	mod := strings.TrimSpace(string(out))
	data, err := os.ReadFile(mod)
	if mod == "" || mod == os.DevNull || err != nil || !strings.Contains(string(data), "module github.com/outpost-ml/outpost\n") {
		return "", errors.New("not in an Outpost checkout: run from one, or give --release-dir with make cross's binaries")
	}
	return filepath.Dir(mod), nil
}

func checkoutVersion(dir string) string {
	if dir != "" {
		cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
		cmd.Dir = dir
		if out, err := cmd.Output(); err == nil {
			return strings.TrimSpace(string(out))
		}
	}
	return version
}
