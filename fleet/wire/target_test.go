package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeTargetCustom(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string // want: "" for success, else a substring of the error
	}{
		{"full", `{"name":"vib","version":"1.1.0","release":3,"ops":["CONV_2D","SOFTMAX"],"min_agent_version":"0.8.0"}`, ""},
		{"unknown field ignored", `{"name":"vib","version":"1","release":1,"ops":[],"future":{"x":1}}`, ""},
		{"empty", ``, "missing"},
		{"null", `null`, "name missing"},
		{"not an object", `[1,2]`, "cannot unmarshal"},
		{"no name", `{"version":"1","release":1}`, "name missing"},
		{"no version", `{"name":"vib","release":1}`, "version missing"},
		{"release zero", `{"name":"vib","version":"1"}`, "release missing"},
		{"negative release", `{"name":"vib","version":"1","release":-1}`, "cannot unmarshal"},
		{"control character", `{"name":"vi\u0007b","version":"1","release":1}`, "control"},
		{"empty op", `{"name":"vib","version":"1","release":1,"ops":[""]}`, "op missing"},
		{"long name", `{"name":"` + strings.Repeat("n", 129) + `","version":"1","release":1}`, "limit 128"},
		{"too many ops", `{"name":"vib","version":"1","release":1,"ops":[` + strings.Repeat(`"A",`, MaxTargetOps) + `"A"]}`, "ops (limit"},
		{"too large", `{"name":"vib","version":"1","release":1,"x":"` + strings.Repeat(" ", MaxTargetCustom) + `"}`, "bytes (limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeTargetCustom([]byte(tc.in))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("DecodeTargetCustom = %v", err)
				}
				if c.Name == "" || c.Release == 0 {
					t.Errorf("decoded %+v", c)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrTargetCustom) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("DecodeTargetCustom = %v, want a one-line ErrTargetCustom mentioning %q", err, tc.want)
			}
		})
	}
}

// FuzzDecodeTargetCustom: whatever a repository signs, decoding never panics, and what it
// accepts is valid and survives a round trip.
func FuzzDecodeTargetCustom(f *testing.F) {
	f.Add([]byte(`{"name":"vib","version":"1.1.0","release":3,"ops":["CONV_2D"],"min_agent_version":"0.8.0"}`))
	f.Add([]byte(`{"name":"vib","version":"1","release":18446744073709551615}`))
	f.Add([]byte(`{"name":"\u0000","version":"1","release":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeTargetCustom(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted %q but Validate = %v", data, err)
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := DecodeTargetCustom(again)
		if err != nil {
			t.Fatalf("round trip of %q: %v", again, err)
		}
		if c2.Name != c.Name || c2.Version != c.Version || c2.Release != c.Release || len(c2.Ops) != len(c.Ops) {
			t.Fatalf("round trip changed %+v to %+v", c, c2)
		}
	})
}
