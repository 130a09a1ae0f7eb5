package firmware

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// moduleDir is the checkout the agent is built from.
func moduleDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var (
	agentsOnce sync.Once
	agents     *AgentSource
)

// sharedAgents builds each architecture's agent once for every test in the package.
func sharedAgents(t *testing.T) *AgentSource {
	t.Helper()
	agentsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-firmware-agents")
		if err != nil {
			t.Fatal(err)
		}
		agents = &AgentSource{ModuleDir: moduleDir(t), Version: "v1.2.3-test", WorkDir: dir}
	})
	return agents
}

func TestMain(m *testing.M) {
	code := m.Run()
	if agents != nil {
		os.RemoveAll(agents.WorkDir)
	}
	os.Exit(code)
}

// testFleet writes a fleet file naming the sample signed model and the demo package key,
// copied beside it, and loads it.
func testFleet(t *testing.T, broker, extra string) *Fleet {
	t.Helper()
	dir := t.TempDir()
	sample := filepath.Join(moduleDir(t), "models/sample")
	for src, dst := range map[string]string{"vibration-anomaly-i8-1.0.0.opkg": "model.opkg", "demo-signing.pub": "models.pub"} {
		data, err := os.ReadFile(filepath.Join(sample, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The trust root's content is the agent's business at start; the bundle only carries it.
	if err := os.WriteFile(filepath.Join(dir, "root.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	text := "fleet: plant-7\nbroker: " + broker + "\nmodel: model.opkg\npackage_key: models.pub\ntrust_root: root.json\nsensors: [sim:vibration]\n" + extra
	p := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFleet(p)
	if err != nil {
		t.Fatalf("LoadFleet: %v", err)
	}
	return f
}

func TestParseFleetErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.opkg"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	const ok = "fleet: f\nbroker: tcp://h:1883\nmodel: m.opkg\nsensors: [sim:vibration]\n"
	if _, err := ParseFleet([]byte(ok), dir); err != nil {
		t.Fatalf("valid fleet file: %v", err)
	}
	for _, tc := range []struct{ text, want string }{
		{"", "empty fleet file"},
		{ok + "brokr: x\n", "field brokr not found"},
		{strings.Replace(ok, "fleet: f", "fleet: Big Fleet", 1), `fleet "Big Fleet"`},
		{strings.Replace(ok, "broker: tcp://h:1883\n", "", 1), "broker: missing"},
		{strings.Replace(ok, "tcp://", "http://", 1), "want tcp://"},
		{strings.Replace(ok, "model: m.opkg\n", "", 1), "model: missing"},
		{strings.Replace(ok, "m.opkg", "missing.opkg", 1), "no such file"},
		{strings.Replace(ok, "sensors: [sim:vibration]\n", "", 1), "sensors: missing"},
		{ok + "agent:\n  id: other\n", "agent: id: set by the bundle"},
		{ok + "agent:\n  data-dir: /tmp\n", "agent: data-dir: set by the bundle"},
		{ok + "tls_ca: .\n", "not a regular file"},
		{"fleet: [\n", "yaml:"},
	} {
		_, err := ParseFleet([]byte(tc.text), dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseFleet(%q): %v, want one line containing %q", tc.text, err, tc.want)
		}
	}
}

func TestDebVersion(t *testing.T) {
	for in, want := range map[string]string{"v1.2.0": "1.2.0", "v1.2.0-3-gabc123": "1.2.0+3+gabc123", "abc123": "0.0.0~abc123", "dev": "0.0.0~dev", "1ffb80a-dirty": "1ffb80a+dirty"} {
		if got := DebVersion(in); got != want {
			t.Errorf("DebVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLookupTarget(t *testing.T) {
	for _, name := range []string{"rpi-zero", "rpi3", "rpi4", "rpi5", "rpi4-32", "generic-arm64", "generic-armv7", "riscv64", "amd64"} {
		if _, err := LookupTarget(name); err != nil {
			t.Errorf("LookupTarget(%q): %v", name, err)
		}
	}
	if _, err := LookupTarget("esp32"); err == nil || !strings.Contains(err.Error(), "rpi-zero") {
		t.Errorf("unknown target error %v, want the list of targets", err)
	}
}

// tarNames lists a .tar.gz's entries with their modes.
func tarNames(t *testing.T, path string) map[string]int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	names := map[string]int64{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uname != "root" || h.Uid != 0 {
			t.Errorf("%s owned by %s/%d, want root", h.Name, h.Uname, h.Uid)
		}
		names[h.Name] = h.Mode
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestBundleHost builds an amd64 bundle and checks every form of it: the tarball's files and
// modes, the .deb's control data and contents with dpkg-deb, the .deb extracted into a
// temporary root where the unit expects its files, the unit with systemd-analyze verify,
// and the config read by the bundle's own agent (--check-config).
func TestBundleHost(t *testing.T) {
	t.Parallel()
	f := testFleet(t, "tcp://127.0.0.1:1883", "agent:\n  health-interval: 30s\n")
	tg, _ := LookupTarget("amd64")
	out := t.TempDir()
	b, err := Build(t.Context(), Options{Target: tg, Fleet: f, DeviceID: "dev-1", OutDir: out, Version: "v1.2.3-test", Agents: sharedAgents(t), MTime: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	names := tarNames(t, b.TarGz)
	p := b.Name + "/"
	for name, mode := range map[string]int64{
		p + "install.sh": 0o755, p + "uninstall.sh": 0o755, p + "root" + BinPath: 0o755, p + "root" + ConfigPath: 0o640,
		p + "root" + ModelPath: 0o640, p + "root" + KeyPath: 0o640, p + "root" + RootPath: 0o640, p + "root" + UnitPath: 0o644,
	} {
		if got, ok := names[name]; !ok || got != mode {
			t.Errorf("tarball entry %s: present %v mode %o, want mode %o", name, ok, got, mode)
		}
	}
	if b.BootDir != "" {
		t.Errorf("amd64 bundle has a Raspberry Pi boot folder %s", b.BootDir)
	}

	info := run(t, "dpkg-deb", "--info", b.Deb)
	for _, want := range []string{"Package: outpost-agent", "Version: 1.2.3+test", "Architecture: amd64", "postinst", "prerm", "postrm", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	contents := run(t, "dpkg-deb", "--contents", b.Deb)
	for _, want := range []string{"." + BinPath, "." + ConfigPath, "." + ModelPath, "." + UnitPath} {
		if !strings.Contains(contents, want) {
			t.Errorf("dpkg-deb --contents lacks %s:\n%s", want, contents)
		}
	}
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", b.Deb, root)
	unitText, err := os.ReadFile(filepath.Join(root, UnitPath))
	if err != nil {
		t.Fatal(err)
	}
	// The unit's paths exist in the installed tree.
	for _, want := range []string{"ExecStart=" + BinPath + " --config " + ConfigPath, "WatchdogSec=", "Type=notify", "Restart=always",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "StateDirectory=outpost-agent", "User=outpost", "SupplementaryGroups=i2c gpio"} {
		if !strings.Contains(string(unitText), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	for _, path := range []string{BinPath, ConfigPath, ModelPath, KeyPath} {
		if _, err := os.Stat(filepath.Join(root, path)); err != nil {
			t.Errorf("installed tree: %v", err)
		}
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify resolves ExecStart= against the host, so point it at the extracted binary.
		unitCopy := filepath.Join(t.TempDir(), UnitName)
		text := strings.ReplaceAll(string(unitText), "ExecStart="+BinPath, "ExecStart="+filepath.Join(root, BinPath))
		if err := os.WriteFile(unitCopy, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", unitCopy).CombinedOutput()
		// Lines about the host's own units are not ours; any line naming this unit is.
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, UnitName) {
				t.Errorf("systemd-analyze verify: %s", line)
			}
		}
		if err != nil && !strings.Contains(string(out), UnitName) {
			t.Logf("systemd-analyze verify exited %v with nothing about our unit:\n%s", err, out)
		}
	} else if os.Getenv("CI") == "true" {
		t.Error("systemd-analyze not found")
	}
	// The bundle's own agent accepts the bundle's config (paths re-rooted).
	cfg := filepath.Join(root, ConfigPath)
	text, _ := os.ReadFile(cfg)
	rerooted := strings.ReplaceAll(string(text), ConfigDir+"/", filepath.Join(root, ConfigDir)+"/")
	if err := os.WriteFile(cfg, []byte(rerooted), 0o640); err != nil {
		t.Fatal(err)
	}
	check := run(t, filepath.Join(root, BinPath), "--config", cfg, "--check-config")
	if !strings.Contains(check, "ok: id dev-1, broker tcp://127.0.0.1:1883") {
		t.Errorf("--check-config: %s", check)
	}
	version := run(t, filepath.Join(root, BinPath), "--version")
	if !strings.Contains(version, "v1.2.3-test") {
		t.Errorf("--version = %q, want the embedded version", version)
	}
}

// TestEveryTargetBuilds cross-builds a bundle for every target and checks each binary's
// architecture and the Raspberry Pi boot folder.
func TestEveryTargetBuilds(t *testing.T) {
	t.Parallel()
	f := testFleet(t, "ssl://mqtt.example.com:8883", "")
	out := t.TempDir()
	wantELF := map[string]string{"amd64": "x86-64", "arm64": "aarch64", "arm": "ARM", "riscv64": "RISC-V"}
	for _, tg := range Targets {
		b, err := Build(t.Context(), Options{Target: tg, Fleet: f, DeviceID: "dev-" + tg.Name, OutDir: out, Version: "v1.2.3-test", Agents: sharedAgents(t)})
		if err != nil {
			t.Fatalf("%s: %v", tg.Name, err)
		}
		bin := filepath.Join(b.Dir, "root", BinPath)
		st, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 15<<20 {
			t.Errorf("%s: agent is %d bytes, over 15 MiB", tg.Name, st.Size())
		}
		t.Logf("%-14s %-8s agent %5.2f MiB", tg.Name, tg.Arch(), float64(st.Size())/(1<<20))
		if file, err := exec.LookPath("file"); err == nil {
			desc := run(t, file, "-b", bin)
			if !strings.Contains(desc, wantELF[tg.GOARCH]) || !strings.Contains(desc, "statically linked") {
				t.Errorf("%s: binary is %q", tg.Name, desc)
			}
		}
		info := run(t, "dpkg-deb", "--field", b.Deb, "Architecture")
		if strings.TrimSpace(info) != tg.DebArch {
			t.Errorf("%s: .deb architecture %q, want %s", tg.Name, info, tg.DebArch)
		}
		isPi := strings.HasPrefix(tg.Name, "rpi")
		if (b.BootDir != "") != isPi {
			t.Errorf("%s: boot folder %q", tg.Name, b.BootDir)
		}
		if isPi {
			ents, _ := os.ReadDir(filepath.Join(b.BootDir, "outpost"))
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if !slices.Contains(names, "firstrun.sh") || !slices.Contains(names, filepath.Base(b.Deb)) {
				t.Errorf("%s: boot folder holds %v", tg.Name, names)
			}
		}
	}
}
