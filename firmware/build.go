package firmware

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// Options describe one bundle.
type Options struct {
	Target   Target
	Fleet    *Fleet
	DeviceID string // may be empty with EnrollToken: the controller names the device
	// The device's identity, at most one of: Secret (from outpost devices add), placed at
	// SecretPath for --password-file; or EnrollToken (outpost devices enroll-token), placed at
	// TokenPath for --enroll-token. Neither: the secret is put on the device by hand.
	Secret      string
	EnrollToken string
	OutDir      string // bundles are written here; created if missing
	Version     string // agent version, embedded in the binary and the .deb
	Agents      *AgentSource
	MTime       time.Time // file times in the archives; zero: SOURCE_DATE_EPOCH, else now
}

// Bundle names what Build wrote.
type Bundle struct {
	Name    string // <fleet>-<device>-<target>
	Dir     string // the staged tree: root/ (files as on the device), install.sh, uninstall.sh
	TarGz   string
	Deb     string
	BootDir string // Raspberry Pi OS boot-partition folder (rpi targets only), else ""
}

// Build stages and packs one device's bundle.
func Build(ctx context.Context, o Options) (*Bundle, error) {
	if o.Secret != "" && o.EnrollToken != "" {
		return nil, errors.New("firmware build: a device secret or an enrollment token, not both")
	}
	if o.DeviceID != "" || o.EnrollToken == "" {
		if err := ValidDeviceID(o.DeviceID); err != nil {
			return nil, err
		}
	}
	if strings.ContainsAny(o.Secret+o.EnrollToken, " \t\r\n") {
		return nil, errors.New("firmware build: secret or token spans lines")
	}
	if o.Fleet == nil || o.Agents == nil || o.OutDir == "" {
		return nil, errors.New("firmware build: fleet, agent source and output directory are required")
	}
	if o.MTime.IsZero() {
		o.MTime = sourceDate()
	}
	bin, err := o.Agents.Binary(ctx, o.Target)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Name: o.Fleet.Name + "-" + bundleDevice(o) + "-" + o.Target.Name}
	b.Dir = filepath.Join(o.OutDir, b.Name)
	if err := os.RemoveAll(b.Dir); err != nil {
		return nil, err
	}
	cfg, err := agentConfig(o.Fleet, o.DeviceID, identityKeys(o))
	if err != nil {
		return nil, err
	}
	root := filepath.Join(b.Dir, "root")
	type file struct {
		path string // on the device
		mode fs.FileMode
		src  string // copy from, or
		data []byte // write this
	}
	fl := []file{
		{BinPath, 0o755, bin, nil},
		{ConfigPath, 0o640, "", cfg},
		{ModelPath, 0o640, o.Fleet.Path(o.Fleet.Model), nil},
		{UnitPath, 0o644, "", []byte(unit)},
	}
	// The identity is readable by root and the agent's group only (0640 root:outpost once
	// installed), like the config.
	if o.Secret != "" {
		fl = append(fl, file{SecretPath, 0o640, "", []byte(o.Secret + "\n")})
	}
	if o.EnrollToken != "" {
		fl = append(fl, file{TokenPath, 0o640, "", []byte(o.EnrollToken + "\n")})
	}
	for _, opt := range []struct{ dst, src string }{{KeyPath, o.Fleet.PackageKey}, {RootPath, o.Fleet.TrustRoot}, {CAPath, o.Fleet.TLSCA}} {
		if opt.src != "" {
			fl = append(fl, file{opt.dst, 0o640, o.Fleet.Path(opt.src), nil})
		}
	}
	for _, f := range fl {
		dst := filepath.Join(root, f.path)
		if f.data == nil {
			if f.data, err = os.ReadFile(f.src); err != nil {
				return nil, fmt.Errorf("firmware build: %w", err)
			}
		}
		if err := writeFile(dst, f.data, f.mode); err != nil {
			return nil, err
		}
	}
	for name, text := range map[string]string{"install.sh": installScript, "uninstall.sh": uninstallScript} {
		if err := writeFile(filepath.Join(b.Dir, name), []byte(text), 0o755); err != nil {
			return nil, err
		}
	}
	b.TarGz = filepath.Join(o.OutDir, b.Name+".tar.gz")
	if err := packTarGz(b.Dir, b.TarGz, b.Name, o.MTime); err != nil {
		return nil, err
	}
	if b.Deb, err = packDeb(o, root, b.Name); err != nil {
		return nil, err
	}
	if strings.HasPrefix(o.Target.Name, "rpi") {
		if b.BootDir, err = bootFolder(o.OutDir, b.Name, b.Deb); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func writeFile(path string, data []byte, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode) // WriteFile's mode is masked by the umask
}

func sourceDate() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err == nil {
			return time.Unix(sec, 0).UTC()
		}
	}
	return time.Now().UTC().Truncate(time.Second)
}

// packTarGz writes dir as prefix/… with root ownership and fixed times, files sorted, so the
// same inputs give the same archive.
func packTarGz(dir, out, prefix string, mtime time.Time) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: name, Mode: int64(info.Mode().Perm()), ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatPAX}
		if d.IsDir() {
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
			return tw.WriteHeader(h)
		}
		h.Typeflag, h.Size = tar.TypeReg, info.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return fmt.Errorf("pack %s: %w", out, err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

var debVersionOK = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`)

// DebVersion turns an agent version (git describe: v1.2.0, v1.2.0-3-gabc123, abc123, dev)
// into a Debian version, which must start with a digit.
func DebVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if debVersionOK.MatchString(v) {
		return strings.ReplaceAll(v, "-", "+")
	}
	clean := regexp.MustCompile(`[^A-Za-z0-9.+~]`).ReplaceAllString(v, "")
	return "0.0.0~" + clean
}

func packDeb(o Options, root, name string) (string, error) {
	scripts := filepath.Join(filepath.Dir(root), ".deb-scripts")
	for n, text := range map[string]string{"postinst": postinst, "prerm": prerm, "postrm": postrm} {
		if err := writeFile(filepath.Join(scripts, n), []byte(text), 0o755); err != nil {
			return "", err
		}
	}
	defer os.RemoveAll(scripts)
	var contents files.Contents
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		dst := "/" + filepath.ToSlash(strings.TrimPrefix(p, root+string(filepath.Separator)))
		c := &files.Content{Source: p, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: info.Mode().Perm(), Owner: "root", Group: "root", MTime: o.MTime}}
		if strings.HasPrefix(dst, ConfigDir+"/") {
			c.Type = files.TypeConfigNoReplace // a device's edits survive upgrades
		}
		contents = append(contents, c)
		return nil
	})
	if err != nil {
		return "", err
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          "outpost-agent",
		Arch:          o.Target.DebArch,
		Platform:      "linux",
		Version:       DebVersion(o.Version),
		VersionSchema: "none",
		Section:       "misc",
		Priority:      "optional",
		Maintainer:    "Outpost fleet " + o.Fleet.Name + " <outpost@localhost>",
		Description:   "Outpost edge ML inference agent for device " + bundleDevice(o) + " of fleet " + o.Fleet.Name,
		License:       "Apache-2.0",
		MTime:         o.MTime,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Depends:  []string{"adduser | passwd"},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(scripts, "postinst"),
				PreRemove:   filepath.Join(scripts, "prerm"),
				PostRemove:  filepath.Join(scripts, "postrm"),
			},
		},
	})
	if err := info.Validate(); err != nil {
		return "", fmt.Errorf("deb: %w", err)
	}
	out := filepath.Join(o.OutDir, name+".deb")
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("deb: %w", err)
	}
	return out, f.Close()
}

func bootFolder(outDir, name, debPath string) (string, error) {
	dir := filepath.Join(outDir, name+"-boot", "outpost")
	if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
		return "", err
	}
	debName := filepath.Base(debPath)
	data, err := os.ReadFile(debPath)
	if err != nil {
		return "", err
	}
	for n, c := range map[string]struct {
		data []byte
		mode fs.FileMode
	}{
		debName:       {data, 0o644},
		"firstrun.sh": {[]byte(firstRun(debName)), 0o755},
		"README.txt":  {[]byte(firstRunReadme(debName)), 0o644},
	} {
		if err := writeFile(filepath.Join(dir, n), c.data, c.mode); err != nil {
			return "", err
		}
	}
	return filepath.Dir(dir), nil
}

// AgentSource provides the agent binary for each target, building each architecture once.
type AgentSource struct {
	// ReleaseDir, when set, holds prebuilt binaries named as make cross names them
	// (outpost-agent-linux-arm64, …-armv7, …); nothing is compiled.
	ReleaseDir string
	// ModuleDir is the Outpost checkout to build from (when ReleaseDir is empty).
	ModuleDir string
	Version   string
	// WorkDir receives built binaries.
	WorkDir string

	mu    sync.Mutex
	built map[string]string
}

// Binary returns the path of a stripped, static outpost-agent for t.
func (s *AgentSource) Binary(ctx context.Context, t Target) (string, error) {
	name := "outpost-agent-linux-" + t.Arch()
	if s.ReleaseDir != "" {
		p := filepath.Join(s.ReleaseDir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("agent for %s: %w (make cross writes these names)", t.Name, err)
		}
		return p, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.built[name]; ok {
		return p, nil
	}
	out := filepath.Join(s.WorkDir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+s.Version, "-o", out, "./cmd/outpost-agent")
	cmd.Dir = s.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.GOARCH, "GOARM="+t.GOARM)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build agent for %s: %v: %s", t.Name, err, firstLineOf(string(msg)))
	}
	if s.built == nil {
		s.built = map[string]string{}
	}
	s.built[name] = out
	return out, nil
}

func firstLineOf(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
