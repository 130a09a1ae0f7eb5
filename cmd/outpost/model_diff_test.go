package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata")

// The recorded runs under testdata/diff are the official runtime's (`tflite-oracle.js MODEL
// --random 1 --outputs all`) on the committed sample models.
const (
	sampleI8  = "../../models/sample/vibration-anomaly-i8.tflite"
	sampleF32 = "../../models/sample/vibration-anomaly-f32.tflite"
	oracleI8  = "testdata/diff/vibration-anomaly-i8.oracle-all.json"
	oracleF32 = "testdata/diff/vibration-anomaly-f32.oracle-all.json"
)

// golden compares got with testdata/diff/NAME, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "diff", name)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// TestModelRunOutputsAll checks --outputs all against the oracle's: the same tensors in the
// same order with the same metadata, and (this model runs exactly like the reference) equal
// values.
func TestModelRunOutputsAll(t *testing.T) {
	raw, err := os.ReadFile(oracleI8)
	if err != nil {
		t.Fatal(err)
	}
	want := decodeRun(t, string(raw))
	out, code := runOutpost(t, "model", "run", sampleI8, "--random", "1", "--outputs", "all")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	got := decodeRun(t, out)
	sameTensors(t, "input", got.Inputs, want.Inputs, true)
	sameTensors(t, "output", got.Outputs, want.Outputs, true)
}

func TestModelRunOutputsList(t *testing.T) {
	tests := []struct {
		spec    string
		want    []int // tensor indices of the outputs
		wantErr string
	}{
		{spec: "+6,dense_0/relu", want: []int{10, 6, 3}},
		{spec: "3, 9", want: []int{3, 9}},
		{spec: "logits,logits,10", want: []int{9, 10}},
		{spec: "+10", want: []int{10}},
		{spec: "nope", wantErr: `--outputs: no tensor "nope" in subgraph 0`},
		{spec: "11", wantErr: `--outputs: no tensor "11"`},
		{spec: " , ", wantErr: "--outputs: empty list"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			root := newRootCmd()
			var out, errOut strings.Builder
			root.SetOut(&out)
			root.SetErr(&errOut)
			root.SetArgs([]string{"model", "run", sampleI8, "--random", "2", "--no-inputs", "--outputs", tc.spec})
			err := root.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := decodeRun(t, out.String())
			var idx []int
			for i, o := range r.Outputs {
				idx = append(idx, o.Tensor)
				if o.Position != i || len(o.Values) == 0 {
					t.Errorf("output %d = %+v", i, o)
				}
			}
			if !equalInts(idx, tc.want) {
				t.Errorf("outputs are tensors %v, want %v", idx, tc.want)
			}
		})
	}
}

// TestModelRunScalarShape: a rank-0 tensor prints "shape": [], as the oracle does.
func TestModelRunScalarShape(t *testing.T) {
	m := write.NewModel("scalar output")
	sg := m.Subgraph()
	in := sg.AddTensor(write.Tensor{Name: "x", Type: schema.TensorTypeFloat32, Shape: []int32{1}})
	shape := sg.AddTensor(write.Tensor{Name: "shape", Type: schema.TensorTypeInt32, Shape: []int32{0}, Data: []byte{}})
	out := sg.AddTensor(write.Tensor{Name: "y", Type: schema.TensorTypeFloat32, Shape: []int32{}})
	sg.AddOp(schema.OpReshape, 1, []int32{in, shape}, []int32{out}, nil)
	sg.SetInputs(in)
	sg.SetOutputs(out)
	data, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "scalar.tflite")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, code := runOutpost(t, "model", "run", path, "--random", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, got)
	}
	var r struct {
		Outputs []map[string]json.RawMessage `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(got), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Outputs) != 1 || string(r.Outputs[0]["shape"]) != "[]" {
		t.Errorf("output = %s, want \"shape\":[]", got)
	}
}

func TestModelDiff(t *testing.T) {
	tmp := t.TempDir()
	// A copy of the oracle's run with one element of dense_1/relu (tensor 6, op 1's output)
	// moved by 2 LSB: op 1 must be named, although op 2 and 3 then depart too.
	raw, err := os.ReadFile(oracleI8)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, o := range doc["outputs"].([]any) {
		o := o.(map[string]any)
		if o["tensor"].(float64) == 6 {
			vals := o["values"].([]any)
			vals[3] = vals[3].(float64) + 2
		}
	}
	perturbed := filepath.Join(tmp, "perturbed.json")
	b, _ := json.Marshal(doc)
	if err := os.WriteFile(perturbed, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// A second run of ours as the reference: everything agrees exactly.
	own, code := runOutpost(t, "model", "run", sampleF32, "--random", "5", "--outputs", "all")
	if code != 0 {
		t.Fatalf("model run: exit %d", code)
	}
	ownPath := filepath.Join(tmp, "own.json")
	if err := os.WriteFile(ownPath, []byte(own), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, model, against string
		args                 []string
		golden               string
	}{
		{"int8 vs oracle", sampleI8, oracleI8, nil, "i8-oracle.txt"},
		{"float vs oracle", sampleF32, oracleF32, nil, "f32-oracle.txt"},
		{"float vs oracle, strict", sampleF32, oracleF32, []string{"--rel", "1e-6"}, "f32-oracle-strict.txt"},
		{"perturbed", sampleI8, perturbed, nil, "i8-perturbed.txt"},
		{"perturbed within 2 LSB", sampleI8, perturbed, []string{"--lsb", "2"}, "i8-perturbed-lsb2.txt"},
		{"own run", sampleF32, ownPath, nil, "f32-own.txt"},
		// Isolated: op 2 is fed the recorded (perturbed) dense_1/relu instead of ours; its one
		// logit comes out the same. On the float model, isolation takes op 1's error from
		// 1.46e-6 (accumulated through op 0) down to its own 2.49e-7.
		{"perturbed, isolated", sampleI8, perturbed, []string{"--isolate"}, "i8-perturbed-isolate.txt"},
		{"float vs oracle, isolated", sampleF32, oracleF32, []string{"--isolate"}, "f32-oracle-isolate.txt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"model", "diff", tc.model, "--against", tc.against}, tc.args...)
			out, code := runOutpost(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, out)
			}
			// Temp paths differ per run; the report names files by base name only.
			golden(t, tc.golden, out)
		})
	}
}

func TestModelDiffErrors(t *testing.T) {
	tmp := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no against", []string{sampleI8}, "--against RUN.json is required"},
		{"missing file", []string{sampleI8, "--against", filepath.Join(tmp, "nope.json")}, "read "},
		{"not JSON", []string{sampleI8, "--against", write("bad.json", "{")}, "parse JSON"},
		{"batch", []string{sampleI8, "--against", write("batch.json", `{"header":true}`)}, "batch"},
		{"failed run", []string{sampleI8, "--against", write("err.json", `{"error":"boom"}`)}, "the recorded run failed: boom"},
		{"no outputs", []string{sampleI8, "--against", write("none.json", `{"inputs":[]}`)}, "no outputs"},
		{"other model", []string{sampleF32, "--against", oracleI8}, "which the model does not have"},
		{"no inputs recorded", []string{sampleI8, "--against", write("noin.json", `{"outputs":[{"tensor":10,"name":"anomaly_score","values":[1]}]}`)}, "0 inputs recorded, the model has 1"},
		{"negative lsb", []string{sampleI8, "--against", oracleI8, "--lsb", "-1"}, "must be >= 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := newRootCmd()
			var out strings.Builder
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append([]string{"model", "diff"}, tc.args...))
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, tc.want)
			}
		})
	}
}
