package firmware

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Where a bundle puts things on the device. The unit, the scripts and the config agree on
// these; tests check the packed files against them.
const (
	BinPath     = "/usr/bin/outpost-agent"
	ConfigDir   = "/etc/outpost"
	ConfigPath  = ConfigDir + "/agent.yaml"
	ModelPath   = ConfigDir + "/model.opkg"
	KeyPath     = ConfigDir + "/package.pub"
	RootPath    = ConfigDir + "/root.json"
	CAPath      = ConfigDir + "/ca.pem"
	SecretPath  = ConfigDir + "/secret"       // --password-file (identity.go)
	TokenPath   = ConfigDir + "/enroll-token" // --enroll-token (identity.go)
	UnitPath    = "/lib/systemd/system/outpost-agent.service"
	StateDir    = "/var/lib/outpost-agent" // systemd's StateDirectory=outpost-agent
	ServiceUser = "outpost"
	UnitName    = "outpost-agent.service"
)

// agentConfig is the --config file for one device: keys are outpost-agent flag names.
func agentConfig(f *Fleet, deviceID string, identity [][2]string) ([]byte, error) {
	m := &yaml.Node{Kind: yaml.MappingNode}
	add := func(k string, v *yaml.Node) {
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, v)
	}
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s, Tag: "!!str"} }
	if deviceID != "" {
		add("id", str(deviceID))
	}
	for _, kv := range identity {
		add(kv[0], str(kv[1]))
	}
	add("broker", str(f.Broker))
	add("model", str(ModelPath))
	if f.PackageKey != "" {
		add("package-key", str(KeyPath))
	}
	if f.TrustRoot != "" {
		add("trust-root", str(RootPath))
	}
	if f.TLSCA != "" {
		add("tls-ca", str(CAPath))
	}
	sensors := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, s := range f.Sensors {
		sensors.Content = append(sensors.Content, str(s))
	}
	add("sensor", sensors)
	add("data-dir", str(StateDir))
	keys := make([]string, 0, len(f.Agent))
	for k := range f.Agent {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		add(k, str(f.Agent[k]))
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if deviceID == "" {
		deviceID = "(enrolled on first start)"
	}
	head := fmt.Sprintf("# outpost-agent --config for device %s of fleet %s, written by outpost firmware build.\n"+
		"# Keys are outpost-agent flag names; a flag on the command line overrides the file.\n", deviceID, f.Name)
	return append([]byte(head), out...), nil
}

// unit is the systemd service. Type=notify with WatchdogSec: the agent says READY=1 and
// pings while its pipeline moves, so a hung agent is killed and restarted. Exit status 2 is
// a bad command line or config, which a restart cannot fix. Device access is limited to
// I²C and GPIO character devices through the i2c and gpio groups.
const unit = `[Unit]
Description=Outpost edge ML agent
After=network-online.target time-sync.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart=` + BinPath + ` --config ` + ConfigPath + `
Restart=always
RestartSec=5
RestartPreventExitStatus=2
WatchdogSec=60
TimeoutStopSec=20
User=` + ServiceUser + `
Group=` + ServiceUser + `
SupplementaryGroups=i2c gpio
StateDirectory=outpost-agent
StateDirectoryMode=0750
# Hardening: read-only system, no privilege gain, private /tmp, no kernel tuning.
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
DevicePolicy=closed
DeviceAllow=char-i2c rw
DeviceAllow=char-gpiochip rw
UMask=0027

[Install]
WantedBy=multi-user.target
`

// setupUser is shared by install.sh and the .deb's postinst: the service user and the device
// groups it needs (Raspberry Pi OS has i2c and gpio; other systems get empty groups so the
// unit's SupplementaryGroups= resolves). It is idempotent, and honors DPKG_ROOT (dpkg --root
// with --force-script-chrootless, or an image builder): the accounts are then made in that
// root's files (--prefix) and the config's group is looked up there.
const setupUser = `root="${DPKG_ROOT:-}"
prefix=""
if [ -n "$root" ]; then prefix="--prefix $root"; fi
has() { # has group|passwd NAME
  if [ -n "$root" ]; then grep -q "^$2:" "$root/etc/$1" 2>/dev/null; else getent "$1" "$2" >/dev/null; fi
}
for g in i2c gpio; do
  has group "$g" || groupadd $prefix --system "$g"
done
has group ` + ServiceUser + ` || groupadd $prefix --system ` + ServiceUser + `
has passwd ` + ServiceUser + ` ||
  useradd $prefix --system --gid ` + ServiceUser + ` --groups i2c,gpio --home-dir ` + StateDir + ` --no-create-home --shell /usr/sbin/nologin ` + ServiceUser + `
grp=` + ServiceUser + `
if [ -n "$root" ]; then grp=$(sed -n 's/^` + ServiceUser + `:[^:]*:\([0-9]*\):.*/\1/p' "$root/etc/group"); fi
chgrp "$grp" "$root` + ConfigDir + `" "$root` + ConfigDir + `"/* && chmod 0750 "$root` + ConfigDir + `" && chmod 0640 "$root` + ConfigDir + `"/*
`

// enableUnit (re)starts the agent where systemd runs; in another root (DPKG_ROOT) or where
// systemd is not running (a chroot, an image build) it only enables the unit.
const enableUnit = `if [ -n "${DPKG_ROOT:-}" ]; then
  systemctl --root="$DPKG_ROOT" enable ` + UnitName + `
elif [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable ` + UnitName + `
  # restart, not start: an upgrade or a new secret (rotation) takes effect now
  systemctl restart ` + UnitName + `
else
  systemctl enable ` + UnitName + ` 2>/dev/null || true
fi
`

var postinst = "#!/bin/sh\n# outpost-agent postinst: service user, device groups, unit enabled.\nset -e\n" + setupUser + enableUnit

const prerm = `#!/bin/sh
# outpost-agent prerm: stop the agent before its files go.
set -e
if [ -n "${DPKG_ROOT:-}" ]; then
  systemctl --root="$DPKG_ROOT" disable ` + UnitName + ` || true
elif [ -d /run/systemd/system ]; then
  systemctl disable --now ` + UnitName + ` || true
fi
`

// postrm keeps the buffered results and state unless the package is purged.
const postrm = `#!/bin/sh
set -e
root="${DPKG_ROOT:-}"
prefix=""
if [ -n "$root" ]; then prefix="--prefix $root"; fi
if [ "$1" = purge ]; then
  rm -rf "$root` + StateDir + `"
  userdel $prefix ` + ServiceUser + ` 2>/dev/null || true
  groupdel $prefix ` + ServiceUser + ` 2>/dev/null || true
fi
if [ -z "$root" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
`

// installScript installs a .tar.gz bundle: run from the unpacked bundle, as root. DESTDIR
// installs into another root (an image being built) without starting anything.
var installScript = `#!/bin/sh
# Installs this Outpost agent bundle: sh install.sh (as root). DESTDIR=/mnt/root sh install.sh
# installs into an image instead and starts nothing.
set -eu
cd "$(dirname "$0")"
: "${DESTDIR:=}"
if [ "$(id -u)" != 0 ]; then echo "install.sh: run as root" >&2; exit 1; fi
for f in $(cd root && find . -type f | sed 's|^\./||'); do
  install -D -m "$(stat -c %a "root/$f")" "root/$f" "$DESTDIR/$f"
done
if [ -n "$DESTDIR" ]; then
  echo "installed into $DESTDIR; the service user is created by the first boot's install"
  exit 0
fi
` + setupUser + enableUnit + `echo "outpost-agent installed; journalctl -u ` + UnitName + ` -f shows it"
`

var uninstallScript = `#!/bin/sh
# Removes this Outpost agent: sh uninstall.sh [--purge] (as root). --purge also deletes the
# agent's buffered results and state in ` + StateDir + ` and its user.
set -eu
if [ "$(id -u)" != 0 ]; then echo "uninstall.sh: run as root" >&2; exit 1; fi
if [ -d /run/systemd/system ]; then systemctl disable --now ` + UnitName + ` || true; fi
rm -f ` + BinPath + ` ` + UnitPath + `
rm -rf ` + ConfigDir + `
if [ "${1:-}" = --purge ]; then
  rm -rf ` + StateDir + `
  userdel ` + ServiceUser + ` 2>/dev/null || true
  groupdel ` + ServiceUser + ` 2>/dev/null || true
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
echo "outpost-agent removed"
`

// firstRun is for the Raspberry Pi OS boot partition: the kernel command line's
// systemd.run= runs it once on first boot (the mechanism Raspberry Pi Imager uses); it
// installs the .deb next to it and removes itself from cmdline.txt.
func firstRun(debName string) string {
	return `#!/bin/bash
# Installs the Outpost agent on a Raspberry Pi's first boot. See README.txt next to it.
set -eu
here=$(dirname "$(readlink -f "$0")")
dpkg -i "$here/` + debName + `" || exit 1
boot=$(dirname "$here")
sed -i 's| systemd.run=[^ ]*outpost/firstrun.sh||; s| systemd.run_success_action=reboot||; s| systemd.unit=kernel-command-line.target||' "$boot/cmdline.txt"
exit 0
`
}

func firstRunReadme(debName string) string {
	return strings.TrimLeft(`
Outpost agent for a Raspberry Pi, installed on first boot.

1. Flash Raspberry Pi OS (Bookworm or later) and mount its boot partition
   (bootfs; on the running Pi it is /boot/firmware).
2. Copy this outpost/ folder onto the boot partition.
3. Append to the single line in cmdline.txt (space-separated, same line):
     systemd.run=/boot/firmware/outpost/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target
4. Boot the Pi. firstrun.sh installs `+debName+`, removes itself from cmdline.txt and
   reboots; the agent then runs as the outpost-agent service:
     journalctl -u outpost-agent -f
`, "\n")
}
