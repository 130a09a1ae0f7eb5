package firmware

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stubScript is what each stubbed account command runs: it records its command line and, as
// the real command with --prefix does, adds the account to the prefix's files, so the
// scripts' "already there?" checks see it on the next run.
const stubScript = `#!/bin/sh
echo "$(basename "$0") $*" >> "$STUB_CALLS"
prefix=""
if [ "$1" = --prefix ]; then prefix=$2; fi
name=$(eval echo \${$#})
case "$(basename "$0")" in
groupadd) [ -n "$prefix" ] && echo "$name:x:$((900 + $(wc -l < "$prefix/etc/group"))):" >> "$prefix/etc/group" ;;
useradd) [ -n "$prefix" ] && echo "$name:x:990:990::/var/lib/outpost-agent:/usr/sbin/nologin" >> "$prefix/etc/passwd" ;;
esac
exit 0
`

// TestDebInstallsIntoRoot installs the .deb with the real dpkg into a temporary root, its
// maintainer scripts run chrootless with DPKG_ROOT (dpkg --root --force-script-chrootless),
// as an image builder would. What it proves: dpkg accepts the package; every file lands
// where the unit expects it with its mode; postinst creates the i2c, gpio and outpost
// groups and the outpost user in the root's account files (through stubbed
// groupadd/useradd, which record their --prefix calls: the real ones need root and would
// touch the host), gives /etc/outpost to that group, and enables the unit with the real
// `systemctl --root` (the multi-user.target.wants link) where systemctl exists; installing
// again (an upgrade or a re-run) creates nothing twice; purge removes the files, the state
// directory and the account. It does not prove the unit starts: that needs a booted system.
func TestDebInstallsIntoRoot(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("dpkg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dpkg not found")
		}
		t.Skip("dpkg not found")
	}
	f := testFleet(t, "tcp://127.0.0.1:1883", "")
	tg, _ := LookupTarget("amd64")
	b, err := Build(t.Context(), Options{Target: tg, Fleet: f, DeviceID: "dev-9", Secret: "s3cret-for-dev-9", OutDir: t.TempDir(), Version: "v1.2.3-test", Agents: sharedAgents(t), MTime: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "etc/group", "etc/passwd"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stubs := t.TempDir()
	calls := filepath.Join(t.TempDir(), "calls")
	stubbed := []string{"groupadd", "useradd", "userdel", "groupdel", "chgrp"}
	_, errSystemctl := exec.LookPath("systemctl")
	if errSystemctl != nil {
		stubbed = append(stubbed, "systemctl")
	}
	for _, name := range stubbed {
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(stubScript), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dpkg := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-not-root", "--force-script-chrootless", "--force-depends", "--log=/dev/null"}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+stubs+":"+os.Getenv("PATH"), "STUB_CALLS="+calls)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	readCalls := func() []string {
		b, _ := os.ReadFile(calls)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}

	dpkg("-i", b.Deb)
	for path, mode := range map[string]os.FileMode{BinPath: 0o755, ConfigPath: 0o640, ModelPath: 0o640, SecretPath: 0o640, UnitPath: 0o644, ConfigDir: 0o750} {
		st, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("installed root: %v", err)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	cfg, _ := os.ReadFile(filepath.Join(root, ConfigPath))
	if !strings.Contains(string(cfg), "password-file: "+SecretPath) {
		t.Errorf("config does not point at the secret:\n%s", cfg)
	}
	if secret, _ := os.ReadFile(filepath.Join(root, SecretPath)); string(secret) != "s3cret-for-dev-9\n" {
		t.Errorf("secret file holds %q", secret)
	}
	first := readCalls()
	want := []string{
		"groupadd --prefix " + root + " --system i2c",
		"groupadd --prefix " + root + " --system gpio",
		"groupadd --prefix " + root + " --system outpost",
		"useradd --prefix " + root + " --system --gid outpost --groups i2c,gpio --home-dir /var/lib/outpost-agent --no-create-home --shell /usr/sbin/nologin outpost",
		"chgrp 902 " + root + "/etc/outpost " + root + "/etc/outpost/agent.yaml " + root + "/etc/outpost/model.opkg " +
			root + "/etc/outpost/package.pub " + root + "/etc/outpost/root.json " + root + "/etc/outpost/secret",
	}
	if errSystemctl != nil {
		want = append(want, "systemctl --root="+root+" enable outpost-agent.service")
	}
	if strings.Join(first, "\n") != strings.Join(want, "\n") {
		t.Errorf("postinst ran:\n%s\nwant:\n%s", strings.Join(first, "\n"), strings.Join(want, "\n"))
	}
	if errSystemctl == nil {
		link := filepath.Join(root, "etc/systemd/system/multi-user.target.wants", UnitName)
		if dst, err := os.Readlink(link); err != nil || dst != UnitPath {
			t.Errorf("systemctl --root enable: link %s -> %q, %v; want -> %s", link, dst, err, UnitPath)
		}
	}

	// Again: the accounts exist, so only the group change and the enable are repeated.
	dpkg("-i", b.Deb)
	again := readCalls()[len(first):]
	for _, c := range again {
		if strings.HasPrefix(c, "groupadd") || strings.HasPrefix(c, "useradd") {
			t.Errorf("second install ran %q", c)
		}
	}

	// Rotation by rebuild: a bundle with a new secret, installed over the old one, replaces
	// the unmodified conffile without asking.
	b2, err := Build(t.Context(), Options{Target: tg, Fleet: f, DeviceID: "dev-9", Secret: "rotated-secret", OutDir: t.TempDir(), Version: "v1.2.4-test", Agents: sharedAgents(t), MTime: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	dpkg("-i", b2.Deb)
	if secret, _ := os.ReadFile(filepath.Join(root, SecretPath)); string(secret) != "rotated-secret\n" {
		t.Errorf("after installing the rebuilt bundle the secret file holds %q", secret)
	}

	if err := os.MkdirAll(filepath.Join(root, StateDir), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, StateDir, "buffer.db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg("--purge", "outpost-agent")
	for _, path := range []string{BinPath, UnitPath, ConfigPath, StateDir} {
		if _, err := os.Stat(filepath.Join(root, path)); err == nil {
			t.Errorf("%s still there after purge", path)
		}
	}
	purge := strings.Join(readCalls(), "\n")
	for _, w := range []string{"userdel --prefix " + root + " outpost", "groupdel --prefix " + root + " outpost"} {
		if !strings.Contains(purge, w) {
			t.Errorf("purge did not run %q:\n%s", w, purge)
		}
	}
}
