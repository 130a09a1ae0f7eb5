package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/sim"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

const sampleDir = "../../models/sample"

// cli runs the command in-process and returns its stdout and error.
func cli(t testing.TB, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func mustCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := cli(t, args...)
	if err != nil {
		t.Fatalf("outpost %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestKeysBuildVerifyInspect(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "me")
	out := mustCLI(t, "keys", "gen", "--out", prefix)
	if !strings.Contains(out, "key id ed25519:") {
		t.Errorf("keys gen printed %q", out)
	}
	if st, err := os.Stat(prefix + ".key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v, mode %v", err, st.Mode())
	}
	if _, err := cli(t, "keys", "gen", "--out", prefix); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second keys gen = %v, want a refusal", err)
	}
	mustCLI(t, "keys", "gen", "--out", filepath.Join(dir, "other"))

	pkg := filepath.Join(dir, "p.opkg")
	out = mustCLI(t, "models", "build", "--tflite", filepath.Join(sampleDir, "vibration-anomaly-i8.tflite"),
		"--manifest", filepath.Join(sampleDir, "vibration-anomaly-i8.json"), "--key", prefix+".key", "--out", pkg)
	if !strings.Contains(out, "vibration-anomaly-i8 1.0.0") {
		t.Errorf("build printed %q", out)
	}
	out = mustCLI(t, "models", "verify", pkg, "--pub", prefix+".pub")
	if !strings.Contains(out, ": OK, vibration-anomaly-i8 1.0.0 signed by ed25519:") {
		t.Errorf("verify printed %q", out)
	}
	if _, err := cli(t, "models", "verify", pkg, "--pub", filepath.Join(dir, "other.pub")); err == nil || !strings.Contains(err.Error(), "signature does not verify") {
		t.Errorf("verify with another key = %v", err)
	}
	// The committed sample packages are signed with the DEMO key.
	demoPub := filepath.Join(dir, "demo.pub")
	b, err := bundle.MarshalPublicKey(bundle.DemoKey().Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(demoPub, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vibration-anomaly-f32", "vibration-anomaly-i8", "activity-f32", "activity-i8"} {
		mustCLI(t, "models", "verify", filepath.Join(sampleDir, name+"-1.0.0.opkg"), "--pub", demoPub)
	}

	out = mustCLI(t, "models", "inspect", pkg)
	for _, want := range []string{"vibration-anomaly-i8 1.0.0", "int8 [1 64] (scale", "anomaly_score", "golden", "8 vectors", "not checked"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	out = mustCLI(t, "models", "inspect", pkg, "--json")
	var js struct {
		Signature string          `json:"signature"`
		Manifest  bundle.Manifest `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || len(js.Signature) != 128 || js.Manifest.Name != "vibration-anomaly-i8" {
		t.Errorf("inspect --json: %v, %+v", err, js)
	}

	// Tampering: flip one byte of the model inside the package.
	data, _ := os.ReadFile(pkg)
	p, _ := bundle.Read(bytes.NewReader(data), bundle.Limits{})
	i := bytes.Index(data, p.Model) + 100
	data[i] ^= 1
	bad := filepath.Join(dir, "bad.opkg")
	os.WriteFile(bad, data, 0o644)
	if _, err := cli(t, "models", "verify", bad, "--pub", prefix+".pub"); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("verify tampered = %v", err)
	}
	os.WriteFile(bad, data[:len(data)/3], 0o644)
	if _, err := cli(t, "models", "inspect", bad); err == nil || !strings.Contains(err.Error(), "not a valid package") {
		t.Errorf("inspect truncated = %v", err)
	}
}

func TestModelsCommandErrors(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, "keys", "gen", "--out", filepath.Join(dir, "k"))
	tfl, man := filepath.Join(sampleDir, "activity-f32.tflite"), filepath.Join(sampleDir, "activity-f32.json")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"build no key flag", []string{"models", "build", "--tflite", tfl, "--manifest", man}, `"key" not set`},
		{"build wrong model", []string{"models", "build", "--tflite", filepath.Join(sampleDir, "activity-i8.tflite"), "--manifest", man, "--key", filepath.Join(dir, "k.key"), "--out", filepath.Join(dir, "x.opkg")}, "does not match"},
		{"build public key as key", []string{"models", "build", "--tflite", tfl, "--manifest", man, "--key", filepath.Join(dir, "k.pub")}, `PEM block is "PUBLIC KEY"`},
		{"build missing file", []string{"models", "build", "--tflite", "nope.tflite", "--manifest", man, "--key", filepath.Join(dir, "k.key")}, "read model"},
		{"verify not a package", []string{"models", "verify", tfl, "--pub", filepath.Join(dir, "k.pub")}, "not a valid package"},
		{"verify no args", []string{"models", "verify", "--pub", filepath.Join(dir, "k.pub")}, "accepts 1 arg"},
		{"baseline golden 0", []string{"models", "baseline", "--tflite", tfl, "--manifest", man, "--csv", "x.csv", "--golden", "0"}, "--golden 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cli(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %v, want one line containing %q", err, tt.want)
			}
		})
	}
}

// writeMotionCSV writes n samples of a simulated wearer as x,y,z columns (plus a time column
// the command must ignore), cycling through the activities.
func writeMotionCSV(t *testing.T, path string, n int) {
	t.Helper()
	m := sim.NewMotion(sim.MotionConfig{Seed: 99, SampleRateHz: 25})
	var b bytes.Buffer
	b.WriteString("t,x,y,z\n")
	for i := 0; i < n; i++ {
		if i%250 == 0 {
			m.SetActivity(sim.Activities[(i/250)%len(sim.Activities)])
		}
		s := m.Next()
		fmt.Fprintf(&b, "%.3f,%g,%g,%g\n", float64(i)/25, s[0], s[1], s[2])
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBaselineFromCSV completes a draft manifest (no digest, ops, baseline or golden vectors)
// from a CSV, then checks that the result validates, that the golden vectors pass on the
// interpreter, that the input baseline describes the CSV, and that it packages.
func TestBaselineFromCSV(t *testing.T) {
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "train.csv")
	writeMotionCSV(t, csvPath, 2000)
	full, err := os.ReadFile(filepath.Join(sampleDir, "activity-f32.json"))
	if err != nil {
		t.Fatal(err)
	}
	var draft map[string]any
	if err := json.Unmarshal(full, &draft); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"baseline", "golden", "sha256", "size", "ops"} {
		delete(draft, k)
	}
	draftJSON, _ := json.Marshal(draft)
	man := filepath.Join(dir, "draft.json")
	os.WriteFile(man, draftJSON, 0o644)
	tfl := filepath.Join(sampleDir, "activity-f32.tflite")

	out := mustCLI(t, "models", "baseline", "--tflite", tfl, "--manifest", man, "--csv", csvPath, "--golden", "5")
	// 2000 rows, window 50, stride 25: 79 windows.
	if !strings.Contains(out, "baseline of 79 windows, 5 golden vectors") {
		t.Errorf("baseline printed %q", out)
	}
	js, _ := os.ReadFile(man)
	m, err := bundle.DecodeManifest(js)
	if err != nil {
		t.Fatalf("completed manifest: %v", err)
	}
	if m.Baseline.Source != "train.csv" || len(m.Baseline.Inputs) != 3 || len(m.Baseline.Outputs) != 4 || m.Baseline.Outputs[2].Name != "run" {
		t.Errorf("baseline %+v", m.Baseline)
	}
	if z := m.Baseline.Inputs[2]; z.Name != "z" || z.Mean < 0.5 || z.Mean > 1.1 {
		t.Errorf("z baseline mean %v, want the simulated gravity share", z.Mean)
	}
	data, _ := os.ReadFile(tfl)
	tm, _ := tflite.Load(data)
	ip, err := tflite.NewInterpreter(tm, kernels.Builtins(), tflite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CheckGolden(func(in []float64) ([]float64, error) { return invokeValues(ip, in) }); err != nil {
		t.Errorf("golden vectors fail on the interpreter: %v", err)
	}
	// Corrupt one expected output: the check must notice.
	m.Golden.Vectors[1].Output[0] += 0.01
	if err := m.CheckGolden(func(in []float64) ([]float64, error) { return invokeValues(ip, in) }); err == nil {
		t.Error("CheckGolden accepted a wrong expected output")
	}
	mustCLI(t, "keys", "gen", "--out", filepath.Join(dir, "k"))
	mustCLI(t, "models", "build", "--tflite", tfl, "--manifest", man, "--key", filepath.Join(dir, "k.key"), "--out", filepath.Join(dir, "a.opkg"))
	mustCLI(t, "models", "verify", filepath.Join(dir, "a.opkg"), "--pub", filepath.Join(dir, "k.pub"))
}

func TestBaselineErrors(t *testing.T) {
	dir := t.TempDir()
	tfl, man := filepath.Join(sampleDir, "activity-f32.tflite"), filepath.Join(sampleDir, "activity-f32.json")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	out := filepath.Join(dir, "out.json")
	tests := []struct {
		name     string
		csv, man string
		want     string
	}{
		{"missing column", write("a.csv", "x,y\n1,2\n"), man, `no column "z"`},
		{"bad number", write("b.csv", "x,y,z\n1,2,3\n1,two,3\n"), man, `line 3 column "y": "two" is not a finite number`},
		{"nan", write("c.csv", "x,y,z\n1,2,NaN\n"), man, "not a finite number"},
		{"too short", write("d.csv", "x,y,z\n1,2,3\n"), man, "1 rows, one window needs 50"},
		{"ragged", write("e.csv", "x,y,z\n1,2\n"), man, "wrong number of fields"},
		{"unknown manifest field", write("f.csv", "x,y,z\n"), write("m.json", `{"colour":"red"}`), `unknown field "colour"`},
		{"draft without window", write("g.csv", "x,y,z\n"), write("n.json", `{"input":{"channels":["x"]}}`), "window 0 and stride 0"},
		{"missing csv", filepath.Join(dir, "none.csv"), man, "read csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cli(t, "models", "baseline", "--tflite", tfl, "--manifest", tt.man, "--csv", tt.csv, "--out", out)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %v, want one line containing %q", err, tt.want)
			}
		})
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed baseline wrote %s", out)
	}
}
