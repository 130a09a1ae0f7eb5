package rollout

import (
	"fmt"
	"strings"
)

// The HTTP API's `?select=` takes several selectors in one value, separated by commas. A tag
// value may itself contain a comma, so inside one value `\,` stands for a comma and `\\` for a
// backslash; any other backslash is an error rather than a guess. The CLI's repeatable
// --select takes each selector literally and escapes it on the way (EscapeSelector).

// SplitSelectors splits a comma-separated list of selectors, undoing the escapes, and checks
// each (ParseSelector). Blank items (an empty value, a trailing comma) are skipped; spaces
// around an item are trimmed.
func SplitSelectors(list string) ([]string, error) {
	var out []string
	var cur strings.Builder
	flush := func() error {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return nil
		}
		if _, _, err := ParseSelector(s); err != nil {
			return err
		}
		out = append(out, s)
		return nil
	}
	for i := 0; i < len(list); i++ {
		switch c := list[i]; c {
		case '\\':
			if i+1 == len(list) || (list[i+1] != ',' && list[i+1] != '\\') {
				return nil, fmt.Errorf("selectors %q: a backslash must be followed by , or \\ (\\, is a comma inside a value)", list)
			}
			i++
			cur.WriteByte(list[i])
		case ',':
			if err := flush(); err != nil {
				return nil, err
			}
		default:
			cur.WriteByte(c)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// EscapeSelector escapes one selector for a comma-separated list (SplitSelectors).
func EscapeSelector(s string) string {
	if !strings.ContainsAny(s, `,\`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(s)
}

// JoinSelectors writes selectors as one comma-separated list SplitSelectors reads back.
func JoinSelectors(sel []string) string {
	parts := make([]string, len(sel))
	for i, s := range sel {
		parts[i] = EscapeSelector(s)
	}
	return strings.Join(parts, ",")
}
