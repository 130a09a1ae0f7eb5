package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// TargetCustom is the "custom" object of a model package's entry in TUF targets metadata.
// The controller's repository (fleet/tufrepo) writes it and signs it with the targets key;
// the device (agent/trust) reads it only out of verified metadata, so every field here is
// as trustworthy as the targets key. Desired names a target; the length, digest and these
// fields come from signed metadata, never from Desired.
type TargetCustom struct {
	Name    string `json:"name"`    // model name, as in the package manifest
	Version string `json:"version"` // model version, as in the package manifest
	// Release grows with every package of one model name the fleet publishes. A device
	// refuses a package whose release is lower than the highest it has committed for that
	// name (anti-rollback: an older, validly signed package with a known flaw stays refused).
	Release         uint64   `json:"release"`
	Ops             []string `json:"ops"`                         // builtin ops the model needs
	MinAgentVersion string   `json:"min_agent_version,omitempty"` // oldest agent that runs it
}

// Limits of TargetCustom, so a hostile or broken repository cannot make a device allocate
// without bound while decoding it.
const (
	MaxTargetCustom = 16 << 10 // bytes of the encoded custom object
	MaxTargetOps    = 256      // entries in Ops
	maxCustomField  = 128      // bytes of Name, Version, MinAgentVersion and each op
)

// ErrTargetCustom is wrapped by DecodeTargetCustom's and Validate's errors.
var ErrTargetCustom = errors.New("bad target custom fields")

// DecodeTargetCustom parses and validates a target's custom object. Unknown fields are
// ignored, so a newer controller may add fields older agents do not know.
func DecodeTargetCustom(data []byte) (TargetCustom, error) {
	var c TargetCustom
	if len(data) > MaxTargetCustom {
		return c, fmt.Errorf("%w: %d bytes (limit %d)", ErrTargetCustom, len(data), MaxTargetCustom)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, fmt.Errorf("%w: missing", ErrTargetCustom)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return TargetCustom{}, fmt.Errorf("%w: %v", ErrTargetCustom, err)
	}
	if err := c.Validate(); err != nil {
		return TargetCustom{}, err
	}
	return c, nil
}

// Validate reports the first problem with c in one line.
func (c *TargetCustom) Validate() error {
	check := func(what, s string, required bool) error {
		switch {
		case s == "" && required:
			return fmt.Errorf("%w: %s missing", ErrTargetCustom, what)
		case len(s) > maxCustomField:
			return fmt.Errorf("%w: %s of %d bytes (limit %d)", ErrTargetCustom, what, len(s), maxCustomField)
		case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			return fmt.Errorf("%w: %s %q holds control characters", ErrTargetCustom, what, s)
		}
		return nil
	}
	if err := check("name", c.Name, true); err != nil {
		return err
	}
	if err := check("version", c.Version, true); err != nil {
		return err
	}
	if err := check("min_agent_version", c.MinAgentVersion, false); err != nil {
		return err
	}
	if c.Release == 0 {
		return fmt.Errorf("%w: release missing (releases start at 1)", ErrTargetCustom)
	}
	if len(c.Ops) > MaxTargetOps {
		return fmt.Errorf("%w: %d ops (limit %d)", ErrTargetCustom, len(c.Ops), MaxTargetOps)
	}
	for _, op := range c.Ops {
		if err := check("op", op, true); err != nil {
			return err
		}
	}
	return nil
}
