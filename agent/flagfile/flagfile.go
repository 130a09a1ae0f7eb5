// Package flagfile reads settings files whose keys are a program's flag names: YAML mapping each
// flag name (without dashes) to a value, or to a list for a repeatable flag. Every value goes
// through the flag's own Set, exactly as on the command line, so the file and the flags can
// never disagree about what a setting is called, means or accepts; a flag given on the command
// line overrides the file.
package flagfile

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// An example, for outpost-agent --config (docs/agent.md documents it):
//
//	id: dev-1
//	broker: ssl://fleet.example.com:8883
//	model: /etc/outpost/model.opkg
//	sensor: [bme280, "sim:vibration?seed=3"]
//	data-dir: /var/lib/outpost-agent
//	health-interval: 30s

// MaxBytes bounds the file read: a settings file is a few hundred bytes; anything near this
// is a wrong file.
const MaxBytes = 64 << 10

// Repeatable is implemented by flag values that may be given several times; only they take a
// list in the file.
type Repeatable interface {
	flag.Value
	Repeatable() bool
}

// CommandLineOnly names flags a file may not set (the one naming the file, for instance).
type CommandLineOnly map[string]bool

// ApplyFile reads path and sets every flag it names that was not set on the command line
// (fs.Visit's flags). The error is one line naming the file, the line and the key.
func ApplyFile(fs *flag.FlagSet, path string, only CommandLineOnly) error {
	f, err := os.Open(path)
	if err != nil {
		return err // *PathError names the file
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > MaxBytes {
		return fmt.Errorf("%s: larger than %d bytes", path, MaxBytes)
	}
	if err := Apply(fs, data, only); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Apply is ApplyFile on the file's content.
func Apply(fs *flag.FlagSet, data []byte, only CommandLineOnly) error {
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return oneLine(err)
	}
	if doc.Kind == 0 {
		return nil // empty file: nothing to set
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return errors.New("want a mapping of flag names to values at the top level")
	}
	m := doc.Content[0]
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: a key must be a flag name", k.Line)
		}
		name := k.Value
		f := fs.Lookup(name)
		switch {
		case only[name]:
			return fmt.Errorf("line %d: %q can only be given on the command line", k.Line, name)
		case f == nil:
			return fmt.Errorf("line %d: unknown key %q (keys are flag names)", k.Line, name)
		case seen[name]:
			return fmt.Errorf("line %d: %q given twice", k.Line, name)
		}
		seen[name] = true
		if explicit[name] {
			continue // the command line overrides the file
		}
		var values []*yaml.Node
		switch v.Kind {
		case yaml.ScalarNode:
			values = []*yaml.Node{v}
		case yaml.SequenceNode:
			if r, ok := f.Value.(Repeatable); !ok || !r.Repeatable() {
				return fmt.Errorf("line %d: %s takes one value, not a list", v.Line, name)
			}
			values = v.Content
		default:
			return fmt.Errorf("line %d: %s: want a value", v.Line, name)
		}
		for _, x := range values {
			if x.Kind != yaml.ScalarNode || x.Tag == "!!null" {
				return fmt.Errorf("line %d: %s: want a plain value", x.Line, name)
			}
			if err := fs.Set(name, x.Value); err != nil {
				return fmt.Errorf("line %d: %s: %v", x.Line, name, oneLine(err))
			}
		}
	}
	return nil
}

// oneLine keeps the first line of err's text (yaml errors can span several).
func oneLine(err error) error {
	s := err.Error()
	for i, r := range s {
		if r == '\n' {
			return errors.New(s[:i])
		}
	}
	return err
}
