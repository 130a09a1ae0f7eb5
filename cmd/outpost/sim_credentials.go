package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/outpost-ml/outpost/fleet/wire"
)

// simCredential is one device's login for `outpost sim --credentials`.
type simCredential struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// maxSimCredentials bounds the devices one credentials file may list.
const maxSimCredentials = 100_000

// parseSimCredentials reads the devices' secrets as issued by `outpost devices add`: either
// CSV lines "id,secret" (an "id,secret" header line and # comments allowed), or JSON, an
// array of {"id":…,"secret":…} or an object {"id": "secret", …}. Device ids must be valid
// and unique; the order of the file is kept (JSON objects are sorted by id).
func parseSimCredentials(data []byte) ([]simCredential, error) {
	trimmed := bytes.TrimSpace(data)
	var creds []simCredential
	switch {
	case len(trimmed) == 0:
		return nil, errors.New("credentials: empty file")
	case trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &creds); err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
	case trimmed[0] == '{':
		var m map[string]string
		if err := json.Unmarshal(trimmed, &m); err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		for id, s := range m {
			creds = append(creds, simCredential{id, s})
		}
		slices.SortFunc(creds, func(a, b simCredential) int { return strings.Compare(a.ID, b.ID) })
	default:
		r := csv.NewReader(bytes.NewReader(trimmed))
		r.Comment, r.FieldsPerRecord, r.TrimLeadingSpace = '#', 2, true
		for first := true; ; first = false {
			rec, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("credentials: %w", err)
			}
			if first && rec[0] == "id" && rec[1] == "secret" {
				continue
			}
			creds = append(creds, simCredential{strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])})
			if len(creds) > maxSimCredentials {
				break
			}
		}
	}
	if len(creds) > maxSimCredentials {
		return nil, fmt.Errorf("credentials: more than %d devices", maxSimCredentials)
	}
	if len(creds) == 0 {
		return nil, errors.New("credentials: no device in the file")
	}
	seen := make(map[string]bool, len(creds))
	for i, c := range creds {
		if err := wire.ValidDeviceID(c.ID); err != nil {
			return nil, fmt.Errorf("credentials entry %d: %w", i+1, err)
		}
		if c.Secret == "" {
			return nil, fmt.Errorf("credentials entry %d (%s): empty secret", i+1, c.ID)
		}
		if seen[c.ID] {
			return nil, fmt.Errorf("credentials entry %d: device %s listed twice", i+1, c.ID)
		}
		seen[c.ID] = true
	}
	return creds, nil
}
