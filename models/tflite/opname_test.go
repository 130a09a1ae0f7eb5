package tflite

import (
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// TestCustomOpName: a custom op's name comes from the file; messages show it on one line.
func TestCustomOpName(t *testing.T) {
	for _, tc := range []struct{ custom, want string }{
		{"TFLite_Detection_PostProcess", "CUSTOM:TFLite_Detection_PostProcess"},
		{"Flex\x00\nName", `CUSTOM:"Flex\x00\nName"`},
		{"bad\xffutf8", `CUSTOM:"bad\xffutf8"`},
		{strings.Repeat("a", 100), `CUSTOM:"` + strings.Repeat("a", maxShownName) + `"`},
	} {
		if got := (OpInfo{Builtin: schema.OpCustom, Custom: tc.custom}).Name(); got != tc.want {
			t.Errorf("Name(%q) = %s, want %s", tc.custom, got, tc.want)
		}
	}
}
