package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCredentialFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "s3cret-from-devices-add\n")
	base := []string{"--id", "d1", "--model", "m.tflite", "--data-dir", dir}

	c, err := parse(append(base, "--password-file", good), nil)
	if err != nil || c.Link.Password != "s3cret-from-devices-add" || c.Link.TLS != nil {
		t.Fatalf("--password-file: password %q, tls %v, err %v", c.Link.Password, c.Link.TLS, err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing password file", []string{"--password-file", filepath.Join(dir, "nope")}, "--password-file"},
		{"empty password file", []string{"--password-file", write("empty", "\n")}, "one line"},
		{"two lines", []string{"--password-file", write("two", "a\nb\n")}, "one line"},
		{"huge password file", []string{"--password-file", write("huge", strings.Repeat("x", 5000))}, "larger than"},
		{"cert without key", []string{"--broker", "ssl://h:8883", "--tls-cert", good}, "go together"},
		{"tls with tcp broker", []string{"--tls-ca", good}, "ssl://"},
		{"ca without pem", []string{"--broker", "ssl://h:8883", "--tls-ca", good}, "no PEM certificate"},
		{"unreadable pair", []string{"--broker", "ssl://h:8883", "--tls-cert", good, "--tls-key", good}, "--tls-cert/--tls-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(append(base, tt.args...), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("parse(%v) = %v, want one line containing %q", tt.args, err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error shows the secret: %v", err)
			}
		})
	}
}
