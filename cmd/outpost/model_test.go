package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
)

// modelCorpus returns <repo root>/../shared/tflite-conformance, skipping when it is absent.
func modelCorpus(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "tflite-conformance")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("conformance corpus %s absent: %v", dir, err)
	}
	return dir
}

// runOutpost runs the CLI in-process and returns stdout and the exit code main would use.
func runOutpost(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	code := 0
	if err != nil {
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return out.String(), code
}

type oracleTensorJSON struct {
	Position     int             `json:"position"`
	Tensor       int             `json:"tensor"`
	Name         string          `json:"name"`
	DType        string          `json:"dtype"`
	Shape        []int           `json:"shape"`
	Quantization json.RawMessage `json:"quantization"`
	Values       []any           `json:"values"`
}

type oracleJSON struct {
	Seed    *uint32            `json:"seed"`
	Case    *int               `json:"case"`
	Header  bool               `json:"header"`
	Inputs  []oracleTensorJSON `json:"inputs"`
	Outputs []oracleTensorJSON `json:"outputs"`
	Error   string             `json:"error"`
}

func num(t *testing.T, v any) float64 {
	t.Helper()
	f, err := decodeNumber(v)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// sameTensors compares tensors of our output and the oracle's: metadata exactly, values
// bit-exactly (exact=true, used for generated inputs) or within the float tolerance of the
// conformance tests (1e-5 relative) and 3 LSB for int8 outputs (XNNPACK rounding).
func sameTensors(t *testing.T, what string, got, want []oracleTensorJSON, exact bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d tensors, oracle %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Position != w.Position || g.Tensor != w.Tensor || g.Name != w.Name || g.DType != w.DType || !equalInts(g.Shape, w.Shape) {
			t.Errorf("%s %d: header %+v, oracle %+v", what, i, g, w)
		}
		if len(g.Values) != len(w.Values) {
			t.Fatalf("%s %d: %d values, oracle %d", what, i, len(g.Values), len(w.Values))
		}
		bad := 0
		for j := range w.Values {
			a, b := num(t, g.Values[j]), num(t, w.Values[j])
			ok := math.Float32bits(float32(a)) == math.Float32bits(float32(b)) || a == b
			if !exact && !ok {
				switch w.DType {
				case "float32":
					ok = math.Abs(a-b) <= 1e-5*math.Max(math.Abs(a), math.Abs(b))+1e-6
				case "int8", "uint8":
					ok = math.Abs(a-b) <= 3
				}
			}
			if !ok {
				if bad++; bad <= 3 {
					t.Errorf("%s %d element %d = %v, oracle %v", what, i, j, g.Values[j], w.Values[j])
				}
			}
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func decodeRun(t *testing.T, s string) oracleJSON {
	t.Helper()
	var r oracleJSON
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	return r
}

// TestModelRunMatchesOracle is the golden comparison: `outpost model run M --random 1` must
// print the oracle's inputs bit for bit and its outputs within tolerance.
func TestModelRunMatchesOracle(t *testing.T) {
	dir := modelCorpus(t)
	for _, tc := range []struct{ dir, file string }{
		{"hello_world_float", "hello_world_float.tflite"},
		{"hello_world_int8", "hello_world_int8.tflite"},
		{"seanet_quantize0", "quantize0.tflite"},
		{"seanet_quantize1", "quantize1.tflite"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			out, code := runOutpost(t, "model", "run", filepath.Join(dir, tc.dir, tc.file), "--random", "1")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, out)
			}
			got := decodeRun(t, out)
			raw, err := os.ReadFile(filepath.Join(dir, tc.dir, "oracle-1.json"))
			if err != nil {
				t.Fatal(err)
			}
			want := decodeRun(t, string(raw))
			if got.Seed == nil || *got.Seed != 1 {
				t.Errorf("seed = %v, want 1", got.Seed)
			}
			sameTensors(t, "input", got.Inputs, want.Inputs, true)
			sameTensors(t, "output", got.Outputs, want.Outputs, false)
			for i := range want.Outputs {
				if !bytes.Equal(compactJSON(t, got.Outputs[i].Quantization), compactJSON(t, want.Outputs[i].Quantization)) {
					t.Errorf("output %d quantization %s, oracle %s", i, got.Outputs[i].Quantization, want.Outputs[i].Quantization)
				}
			}
		})
	}
}

func compactJSON(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRandomInputsMatchOracle checks the xorshift32 generator against the seed-1 inputs the
// oracle recorded for every corpus model (whether or not our interpreter runs it).
func TestRandomInputsMatchOracle(t *testing.T) {
	dir := modelCorpus(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.tflite"))
	checked := 0
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(filepath.Dir(f), "oracle-1.json"))
		if err != nil {
			continue
		}
		want := decodeRun(t, string(raw))
		if want.Error != "" || len(want.Inputs) == 0 {
			continue
		}
		t.Run(filepath.Base(filepath.Dir(f)), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := tflite.Load(data)
			if err != nil {
				t.Fatal(err)
			}
			var ins []*tensor.Tensor
			for _, ti := range m.Inputs() {
				tt := tensor.New(ti.Name, ti.DType, ti.Shape, ti.Quant)
				tt.SetData(make([]byte, tensor.ByteSize(ti.DType, ti.Shape)))
				ins = append(ins, tt)
			}
			given := map[int]inputSpec{}
			if fixed, err := os.ReadFile(filepath.Join(filepath.Dir(f), "random-fixed-inputs.json")); err == nil {
				if given, err = parseInputSet(fixed, ins); err != nil {
					t.Fatal(err)
				}
			}
			seed := uint32(1)
			if err := fillInputs(ins, given, &seed); err != nil {
				t.Fatal(err)
			}
			got := make([]oracleTensorJSON, len(ins))
			for i, tt := range ins {
				var vals []any
				if err := json.Unmarshal(appendValues(nil, tt), &vals); err != nil {
					t.Fatal(err)
				}
				got[i] = oracleTensorJSON{Position: i, Tensor: m.Subgraphs[0].Inputs[i], Name: tt.Name(), DType: tt.DType().String(), Shape: tt.Shape(), Values: vals}
			}
			sameTensors(t, "input", got, want.Inputs, true)
		})
		checked++
	}
	if checked == 0 {
		t.Fatal("no oracle-1.json inputs found")
	}
	t.Logf("generator matched the oracle's seed-1 inputs of %d models", checked)
}

func TestXorshift32FirstDraws(t *testing.T) {
	r := newXorshift32(1)
	for i, want := range []uint32{524866043, 2877414208, 2380002740} {
		if got := r.next(); got != want {
			t.Errorf("draw %d = %d, want %d", i, got, want)
		}
	}
}

func TestModelRunBatch(t *testing.T) {
	dir := modelCorpus(t)
	model := filepath.Join(dir, "hello_world_float", "hello_world_float.tflite")
	out, code := runOutpost(t, "model", "run", model, "--random", "7", "--count", "3", "--no-inputs")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want header + 3:\n%s", len(lines), out)
	}
	if h := decodeRun(t, lines[0]); !h.Header || len(h.Inputs) != 1 || h.Inputs[0].Values != nil {
		t.Errorf("header = %s", lines[0])
	}
	for k, l := range lines[1:] {
		c := decodeRun(t, l)
		if c.Case == nil || *c.Case != k || c.Seed == nil || *c.Seed != uint32(7+k) || c.Inputs != nil || len(c.Outputs) != 1 {
			t.Errorf("case line %d = %s", k, l)
		}
		if c.Outputs[0].Quantization != nil {
			t.Errorf("case line %d carries quantization", k)
		}
		// Each case equals a single run with that seed.
		single, _ := runOutpost(t, "model", "run", model, "--random", strings.TrimSpace(jsonNum(*c.Seed)))
		sameTensors(t, "output", c.Outputs, decodeRun(t, single).Outputs, true)
	}
}

func jsonNum(v uint32) string { b, _ := json.Marshal(v); return string(b) }

// TestModelRunInputReplay feeds the oracle's own output back as --input.
func TestModelRunInputReplay(t *testing.T) {
	dir := modelCorpus(t)
	base := filepath.Join(dir, "hello_world_float")
	out, code := runOutpost(t, "model", "run", filepath.Join(base, "hello_world_float.tflite"), "--input", filepath.Join(base, "oracle-1.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	raw, _ := os.ReadFile(filepath.Join(base, "oracle-1.json"))
	want := decodeRun(t, string(raw))
	got := decodeRun(t, out)
	if got.Seed != nil {
		t.Errorf("seed = %v, want null", *got.Seed)
	}
	sameTensors(t, "input", got.Inputs, want.Inputs, true)
	sameTensors(t, "output", got.Outputs, want.Outputs, false)
}

func TestModelRunErrors(t *testing.T) {
	dir := modelCorpus(t)
	tmp := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hello := filepath.Join(dir, "hello_world_float", "hello_world_float.tflite")
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		wantInOut string // substring of stdout (the JSON error for codes 2 and 3)
	}{
		{"count without random", []string{"model", "run", hello, "--count", "2"}, 1, ""},
		{"seed out of range", []string{"model", "run", hello, "--random", "4294967296"}, 1, ""},
		{"missing model", []string{"model", "run", filepath.Join(tmp, "nope.tflite")}, 1, ""},
		{"missing input file", []string{"model", "run", hello, "--input", filepath.Join(tmp, "nope.json")}, 1, ""},
		{"bad input JSON", []string{"model", "run", hello, "--input", write("bad.json", "{")}, 1, ""},
		{"wrong value count", []string{"model", "run", hello, "--input", write("n.json", `{"inputs":[[1,2]]}`)}, 1, ""},
		{"unknown input name", []string{"model", "run", hello, "--input", write("u.json", `{"nope":[1]}`)}, 1, ""},
		{"not a model", []string{"model", "run", write("x.tflite", "hello, this is not a model")}, 2, `"error":"load model: file identifier`},
		{"unsupported op", []string{"model", "run", filepath.Join(dir, "person_detect_vela", "person_detect_vela.tflite")}, 2, "unsupported op CUSTOM:ethos-u v1"},
		{"named input", []string{"model", "run", hello, "--input", write("ok.json", `{"serving_default_dense_input:0":[[0.5]]}`)}, 0, `"values":[0.5]`},
		{"b64 input", []string{"model", "run", hello, "--input", write("b.json", `{"inputs":[{"position":0,"b64":"AAAAPw=="}]}`)}, 0, `"values":[0.5]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runOutpost(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d (stdout %q)", code, tc.wantCode, out)
			}
			if !strings.Contains(out, tc.wantInOut) {
				t.Errorf("stdout %q does not contain %q", out, tc.wantInOut)
			}
		})
	}
}

func TestModelInspect(t *testing.T) {
	dir := modelCorpus(t)
	model := filepath.Join(dir, "hello_world_int8", "hello_world_int8.tflite")
	out, code := runOutpost(t, "model", "inspect", model, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	var r inspectReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Operators) != 3 || r.Operators[0].Op != "FULLY_CONNECTED" || r.ArenaBytes == nil || *r.ArenaBytes <= 0 || len(r.Tensors) != 10 {
		t.Errorf("inspect report = %+v", r)
	}
	if q := r.Tensors[0].Quantization; q == nil || q.ZeroPoint[0] != -128 {
		t.Errorf("input quantization = %+v, want zero point -128", q)
	}
	text, code := runOutpost(t, "model", "inspect", model)
	if code != 0 || !strings.Contains(text, "FULLY_CONNECTED v4") || !strings.Contains(text, "arena:") {
		t.Errorf("text inspect (exit %d):\n%s", code, text)
	}
	// A model with an unsupported (custom) op still inspects; the arena line says why it is not
	// planned.
	text, code = runOutpost(t, "model", "inspect", filepath.Join(dir, "person_detect_vela", "person_detect_vela.tflite"))
	if code != 0 || !strings.Contains(text, "not planned: new interpreter: unsupported op") {
		t.Errorf("person_detect_vela inspect (exit %d):\n%.400s", code, text)
	}
}

func TestAppendJSNumber(t *testing.T) {
	tests := []struct {
		f    float64
		want string
	}{
		{0, "0"}, {math.Copysign(0, -1), "0"}, {1, "1"}, {-2.5, "-2.5"}, {100, "100"},
		{1e21, "1e+21"}, {1e20, "100000000000000000000"}, {123456.789, "123456.789"},
		{0.000001, "0.000001"}, {1e-7, "1e-7"}, {float64(float32(1.4901161193847656e-07)), "1.4901161193847656e-7"},
		{float64(float32(-0.7555903)), "-0.7555903196334839"}, {1.5e300, "1.5e+300"}, {math.NaN(), `"NaN"`}, {math.Inf(-1), `"-Infinity"`},
	}
	for _, tc := range tests {
		if got := string(appendFloat(nil, tc.f)); got != tc.want {
			t.Errorf("appendFloat(%v) = %s, want %s", tc.f, got, tc.want)
		}
	}
}
