package rollout

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitSelectors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"site=north", []string{"site=north"}, false},
		{"site=north,rack=3", []string{"site=north", "rack=3"}, false},
		{" site=north , rack=3 ,", []string{"site=north", "rack=3"}, false},
		{`loc=Oslo\, Norway`, []string{"loc=Oslo, Norway"}, false},
		{`loc=a\,b,site=x`, []string{"loc=a,b", "site=x"}, false},
		{`path=C:\\data`, []string{`path=C:\data`}, false},
		{`path=\\\,`, []string{`path=\,`}, false},
		{"expr=a=b", []string{"expr=a=b"}, false},
		{`loc=a\b`, nil, true}, // unknown escape
		{`loc=a\`, nil, true},  // dangling backslash
		{"site", nil, true},    // no =
		{"=north", nil, true},  // no key
		{"site=", nil, true},   // no value
		{`loc=a\,b,oops`, nil, true},
	} {
		got, err := SplitSelectors(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestJoinSelectors(t *testing.T) {
	for _, sel := range [][]string{
		{"site=north"},
		{"loc=Oslo, Norway", "rack=3"},
		{`path=C:\data,x`, `k=\\,,`},
	} {
		got, err := SplitSelectors(JoinSelectors(sel))
		if err != nil || !slices.Equal(got, sel) {
			t.Errorf("%q: joined %q, split back %q, %v", sel, JoinSelectors(sel), got, err)
		}
	}
	if got := EscapeSelector("site=north"); got != "site=north" {
		t.Errorf("a plain selector was changed: %q", got)
	}
}

// FuzzSplitSelectors checks that any input splits or fails cleanly, and that what splits
// joins back to a list that splits the same way.
func FuzzSplitSelectors(f *testing.F) {
	for _, s := range []string{"site=north,rack=3", `loc=Oslo\, Norway`, `p=\\`, `a=\x`, ",,", "k=v=w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sel, err := SplitSelectors(in)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %v", err)
			}
			return
		}
		again, err := SplitSelectors(JoinSelectors(sel))
		if err != nil || !slices.Equal(again, sel) {
			t.Fatalf("%q: split %q, joined %q, split again %q (%v)", in, sel, JoinSelectors(sel), again, err)
		}
	})
}
