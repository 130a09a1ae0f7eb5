// Package firmware builds flashable per-board bundles of the Outpost agent: a static,
// CGO-free outpost-agent for the board, its configuration (a --config file keyed by flag
// name), its identity, the fleet's trust material, the initial signed model package and a
// hardened systemd unit that restarts the agent and watches it through sd_notify. Each bundle
// is packed three ways: a .tar.gz with install and uninstall scripts, a .deb (built with nfpm)
// whose maintainer scripts create the service user and enable the unit, and a folder to copy
// onto a Raspberry Pi OS boot partition that installs the .deb on first boot.
// docs/firmware.md walks through it.
package firmware

import (
	"fmt"
	"slices"
	"strings"
)

// Target is a board family and the Go and Debian names of its architecture.
type Target struct {
	Name        string
	GOARCH      string
	GOARM       string // for GOARCH=arm: 6 or 7
	DebArch     string // dpkg --print-architecture on the board's usual OS
	Description string
}

// Targets lists every board `outpost firmware build --target` accepts. Raspberry Pi OS 32-bit
// calls its ARMv6 userland armhf, so rpi-zero's .deb is armhf with an ARMv6 binary, which also
// runs on ARMv7 boards.
var Targets = []Target{
	{"rpi-zero", "arm", "6", "armhf", "Raspberry Pi Zero, Zero W and 1 (ARMv6, 32-bit Raspberry Pi OS)"},
	{"rpi3", "arm64", "", "arm64", "Raspberry Pi 3 and Zero 2 W, 64-bit OS"},
	{"rpi3-32", "arm", "7", "armhf", "Raspberry Pi 3 and Zero 2 W, 32-bit OS"},
	{"rpi4", "arm64", "", "arm64", "Raspberry Pi 4 and 400, 64-bit OS"},
	{"rpi4-32", "arm", "7", "armhf", "Raspberry Pi 4 and 400, 32-bit OS"},
	{"rpi5", "arm64", "", "arm64", "Raspberry Pi 5, 64-bit OS"},
	{"rpi5-32", "arm", "7", "armhf", "Raspberry Pi 5, 32-bit OS"},
	{"generic-arm64", "arm64", "", "arm64", "any 64-bit ARM Linux board"},
	{"generic-armv7", "arm", "7", "armhf", "any ARMv7 Linux board with hardware float"},
	{"riscv64", "riscv64", "", "riscv64", "64-bit RISC-V Linux boards"},
	{"amd64", "amd64", "", "amd64", "x86-64 Linux (gateways, test machines)"},
}

// LookupTarget returns the target called name.
func LookupTarget(name string) (Target, error) {
	i := slices.IndexFunc(Targets, func(t Target) bool { return t.Name == name })
	if i < 0 {
		names := make([]string, len(Targets))
		for i, t := range Targets {
			names[i] = t.Name
		}
		return Target{}, fmt.Errorf("unknown target %q (want one of %s)", name, strings.Join(names, ", "))
	}
	return Targets[i], nil
}

// Arch is the target's architecture as make cross names its binaries: amd64, arm64, armv6,
// armv7, riscv64.
func (t Target) Arch() string {
	if t.GOARCH == "arm" {
		return "armv" + t.GOARM
	}
	return t.GOARCH
}
