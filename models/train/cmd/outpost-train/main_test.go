package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunWritesModelAndBatch(t *testing.T) {
	dir := t.TempDir()
	batch := filepath.Join(dir, "windows.jsonl")
	var out bytes.Buffer
	if err := run([]string{"-q", "-out", dir, "-oracle-batch", batch, "-oracle-batch-n", "4"}, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	var names []string
	for _, m := range []string{"vibration-anomaly-f32", "vibration-anomaly-i8", "activity-f32", "activity-i8"} {
		names = append(names, m+".tflite", m+".json", m+"-1.0.0.opkg")
	}
	for _, name := range append(names, DemoPublicKeyFile) {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("..", "..", "..", "sample", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from models/sample/%s", name, name)
		}
	}
	b, err := os.ReadFile(batch)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 4 {
		t.Errorf("oracle batch has %d lines, want 4", n)
	}
	if !strings.Contains(out.String(), "held-out accuracy") {
		t.Errorf("output %q lacks the accuracy line", out.String())
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"stray argument", []string{"extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"-bogus"}, "bogus"},
		{"bad created", []string{"-q", "-epochs", "1", "-created", "now", "-out", "OUT"}, "RFC 3339"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			for i, a := range args {
				if a == "OUT" {
					args[i] = t.TempDir()
				}
			}
			var out bytes.Buffer
			err := run(args, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%v) = %v, want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}
