package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnrollFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok := write("token", "oet1.AAECAwQFBgcICQoL.BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc\n")
	pw := write("pw", "secret\n")
	bad := write("bad", "not a token\n")
	base := []string{"--model", "m.tflite", "--data-dir", dir}
	for _, tc := range []struct {
		name string
		args []string
		want string // "" means accepted
	}{
		{"token, no id", []string{"--enroll-token", tok}, ""},
		{"token and fixed id", []string{"--enroll-token", tok, "--id", "d1"}, ""},
		{"no id, no token", nil, "missing --id (or --enroll-token)"},
		{"token and password", []string{"--enroll-token", tok, "--password-file", pw}, "exclude each other"},
		{"malformed token", []string{"--enroll-token", bad}, "not an enrollment token"},
		{"missing token file", []string{"--enroll-token", filepath.Join(dir, "none")}, "no such file"},
	} {
		c, err := parse(append(append([]string{}, base...), tc.args...), io.Discard)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && c.enrollToken == "":
			t.Errorf("%s: token not read", tc.name)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	var out bytes.Buffer
	if code := run(t.Context(), append(base, "--enroll-token", tok, "--check-config"), &out, io.Discard); code != 0 || !strings.Contains(out.String(), "ok: id (from enrollment)") {
		t.Errorf("--check-config with a token: %d %q", code, out.String())
	}
}
