package firmware

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// Fleet is FLEET.yaml: what every device of a fleet shares. Relative paths are relative to
// the file's own directory.
//
//	fleet: plant-7
//	broker: ssl://mqtt.example.com:8883
//	tls_ca: ca.pem                  # optional: CA certificate the agent trusts for the broker
//	model: vibration-anomaly-i8-1.0.0.opkg
//	package_key: models.pub         # ed25519 key the model packages are signed with
//	trust_root: trust/root.json     # optional: the fleet's TUF root (outpost keys init)
//	sensors: [sim:vibration]
//	agent:                          # any other outpost-agent flag, by name
//	  health-interval: 30s
type Fleet struct {
	Name       string            `yaml:"fleet"`
	Broker     string            `yaml:"broker"`
	TLSCA      string            `yaml:"tls_ca"`
	Model      string            `yaml:"model"`
	PackageKey string            `yaml:"package_key"`
	TrustRoot  string            `yaml:"trust_root"`
	Sensors    []string          `yaml:"sensors"`
	Agent      map[string]string `yaml:"agent"`

	dir string // the file's directory, for relative paths
}

var fleetName = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]{0,62}$`) // a Debian package name part

// reservedAgentKeys are settings the bundle itself decides; a fleet file may not override them.
var reservedAgentKeys = map[string]string{
	"id": "the device id comes from --device-id or devices.csv", "broker": "use broker:",
	"model": "use model:", "sensor": "use sensors:", "data-dir": "the unit's StateDirectory holds the data",
	"config": "the bundle writes the config", "tls-ca": "use tls_ca:", "package-key": "use package_key:",
	"trust-root": "use trust_root:", "password-file": "firmware build --device-id places the secret",
	"enroll-token": "firmware build --enroll places the token", "version": "not a setting", "check-config": "not a setting",
}

// LoadFleet reads and checks a fleet file. Errors are one line naming the file.
func LoadFleet(path string) (*Fleet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := ParseFleet(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// ParseFleet decodes a fleet file strictly (unknown keys are errors) and checks it; dir
// anchors its relative paths.
func ParseFleet(data []byte, dir string) (*Fleet, error) {
	if len(data) > 1<<20 {
		return nil, errors.New("larger than 1 MiB: not a fleet file")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f Fleet
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty fleet file")
		}
		return nil, firstLine(err)
	}
	f.dir = dir
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

func (f *Fleet) validate() error {
	switch {
	case !fleetName.MatchString(f.Name):
		return fmt.Errorf("fleet %q: want 1-63 of a-z 0-9 . + - starting with a letter or digit", f.Name)
	case f.Broker == "":
		return errors.New("broker: missing (e.g. ssl://mqtt.example.com:8883)")
	case !strings.HasPrefix(f.Broker, "tcp://") && !strings.HasPrefix(f.Broker, "ssl://") &&
		!strings.HasPrefix(f.Broker, "tls://") && !strings.HasPrefix(f.Broker, "ws://") && !strings.HasPrefix(f.Broker, "wss://"):
		return fmt.Errorf("broker %q: want tcp://, ssl://, tls://, ws:// or wss://", f.Broker)
	case f.Model == "":
		return errors.New("model: missing (the initial model package, .opkg)")
	case len(f.Sensors) == 0:
		return errors.New("sensors: missing (e.g. [sim:vibration] or [bme280])")
	}
	for _, p := range []struct{ key, path string }{{"model", f.Model}, {"tls_ca", f.TLSCA}, {"package_key", f.PackageKey}, {"trust_root", f.TrustRoot}} {
		if p.path == "" {
			continue
		}
		if st, err := os.Stat(f.Path(p.path)); err != nil {
			return fmt.Errorf("%s: %w", p.key, err)
		} else if !st.Mode().IsRegular() {
			return fmt.Errorf("%s: %s is not a regular file", p.key, f.Path(p.path))
		}
	}
	for _, s := range f.Sensors {
		if s == "" || strings.ContainsAny(s, "\n\r") {
			return fmt.Errorf("sensors: %q is not a sensor spec", s)
		}
	}
	keys := make([]string, 0, len(f.Agent))
	for k := range f.Agent {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if why, ok := reservedAgentKeys[k]; ok {
			return fmt.Errorf("agent: %s: set by the bundle (%s)", k, why)
		}
		if strings.ContainsAny(f.Agent[k], "\n\r") {
			return fmt.Errorf("agent: %s: value spans lines", k)
		}
	}
	return nil
}

// Path resolves p against the fleet file's directory.
func (f *Fleet) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(f.dir, p)
}

// ValidDeviceID is the agent's rule for device ids.
func ValidDeviceID(id string) error { return wire.ValidDeviceID(id) }

// firstLine makes a yaml error one line: a TypeError lists one problem per line.
func firstLine(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := strings.ReplaceAll(te.Errors[0], " in type firmware.Fleet", "")
		if n := len(te.Errors) - 1; n > 0 {
			msg += fmt.Sprintf(" (and %d more)", n)
		}
		return errors.New(msg)
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return errors.New(s)
}
