package flagfile

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }
func (l *list) Repeatable() bool   { return true }

// newFlagSet has one flag of each kind a program may have (string, duration, int, bool,
// repeatable, command-line-only).
func newFlagSet() (*flag.FlagSet, *list) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("id", "", "")
	fs.String("config", "", "")
	fs.Duration("interval", time.Second, "")
	fs.Int("max", 1, "")
	fs.Bool("verbose", false, "")
	var l list
	fs.Var(&l, "sensor", "")
	return fs, &l
}

var only = CommandLineOnly{"config": true}

func TestApply(t *testing.T) {
	fs, l := newFlagSet()
	if err := fs.Parse([]string{"--max", "7"}); err != nil {
		t.Fatal(err)
	}
	err := Apply(fs, []byte("# comment\nid: dev-1\ninterval: 30s\nmax: 99\nverbose: true\nsensor: [a, \"b?x=1\"]\n"), only)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	got := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { got[f.Name] = f.Value.String() })
	want := map[string]string{"id": "dev-1", "interval": "30s", "max": "7", "verbose": "true", "sensor": "a,b?x=1", "config": ""}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(*l) != 2 {
		t.Errorf("sensor list %q", *l)
	}
	fs2, _ := newFlagSet()
	if err := Apply(fs2, nil, only); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func TestApplyErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"idd: x\n", `line 1: unknown key "idd"`},
		{"id: a\nid: b\n", `line 2: "id" given twice`},
		{"interval: soon\n", "line 1: interval: "},
		{"id: [a, b]\n", "line 1: id takes one value, not a list"},
		{"- id\n", "want a mapping"},
		{"config: other.yaml\n", `"config" can only be given on the command line`},
		{"sensor: [{kind: x}]\n", "sensor: want a plain value"},
		{"sensor: {a: b}\n", "sensor: want a value"},
		{"id: dev\n  broken: indentation\n", "yaml:"},
		{"id:\n", "id: want a plain value"},
		{"? [a]\n: b\n", "a key must be a flag name"},
	} {
		fs, _ := newFlagSet()
		err := Apply(fs, []byte(tc.text), only)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Apply(%q): error %v, want one line containing %q", tc.text, err, tc.want)
		}
	}
}

func TestApplyFile(t *testing.T) {
	dir := t.TempDir()
	fs, _ := newFlagSet()
	if err := ApplyFile(fs, filepath.Join(dir, "missing.yaml"), only); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", MaxBytes+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ApplyFile(fs, big, only); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("idd: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ApplyFile(fs, bad, only); err == nil || !strings.HasPrefix(err.Error(), bad+": line 1:") {
		t.Errorf("bad file: %v, want it to start with the file and line", err)
	}
}

func FuzzApply(f *testing.F) {
	f.Add([]byte("id: dev-7\ninterval: 1h\nsensor: [bme280, sim:vibration]\nverbose: true\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("max: 0x10\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, _ := newFlagSet()
		if err := Apply(fs, data, only); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error spans lines: %q", err)
		}
	})
}
