package boltbuf

import (
	"encoding/json"
	"strings"
	"testing"
)

var jsonCases = []string{
	`{"seq":1,"ts":"2026-01-01T00:00:00Z","model":"m@1","score":0.25,"label":"normal","outputs":[0.25,-1e-7,3E+2],"latency_us":40}`,
	``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `[1 2]`, `{"a":1 "b":2}`,
	`01`, `-`, `-0`, `1.`, `.5`, `1e`, `1e+`, `1.5e-3`, `--1`, `+1`, `0x10`, `1.2.3`,
	`"\u00e9"`, `"\u00g9"`, `"\u12"`, `"\x"`, `"a` + "\x01" + `"`, "\"\xff\xfe\"", `"\/\b\f\n\r\t\\\""`,
	`true`, `tru`, `truex`, `nul`, `null `, ` false`, `[true,false,null]`, `{"":{}}`, `[[[]]]`,
	`{"seq":0,"ts":"20`, `{"seq":0}x`, "\t\n {}\r\n", `{"a":[1,{"b":"c"}]}`, `"`, `[`, `[1`, `{"a":1`,
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
}

// TestValidJSONMatchesStdlib: validJSON decides like encoding/json.Valid.
func TestValidJSONMatchesStdlib(t *testing.T) {
	for _, c := range jsonCases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%.60q) = %v, json.Valid says %v", c, got, want)
		}
	}
}

// FuzzValidJSON checks validJSON against encoding/json.Valid on any input.
func FuzzValidJSON(f *testing.F) {
	for _, c := range jsonCases {
		if len(c) < 1000 {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	rec := []byte(jsonCases[0])
	b.SetBytes(int64(len(rec)))
	for range b.N {
		if !validJSON(rec) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkStdlibValid(b *testing.B) {
	rec := []byte(jsonCases[0])
	b.SetBytes(int64(len(rec)))
	for range b.N {
		if !json.Valid(rec) {
			b.Fatal("invalid")
		}
	}
}
