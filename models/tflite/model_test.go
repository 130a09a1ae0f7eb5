package tflite_test

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

func f32bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func fcOptions(act schema.Activation, keep bool) func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
	return func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
		b.StartObject(5)
		b.PrependInt8Slot(0, int8(act), 0)
		b.PrependBoolSlot(2, keep, false)
		return b.EndObject()
	}
}

// fcModel is input float32[2,3] → FULLY_CONNECTED(W[4,3], b[4]) → output float32[2,4].
func fcModel() tModel {
	return tModel{
		codes: []tCode{{op: schema.OpFullyConnected, version: 1}},
		tensors: []tTensor{
			{name: "in", typ: schema.TensorTypeFloat32, shape: []int32{2, 3}},
			{name: "w", typ: schema.TensorTypeFloat32, shape: []int32{4, 3}, buffer: 1},
			{name: "b", typ: schema.TensorTypeFloat32, shape: []int32{4}, buffer: 2},
			{name: "out", typ: schema.TensorTypeFloat32, shape: []int32{2, 4}},
		},
		buffers: [][]byte{nil,
			f32bytes(1, 0, 0, 0, 1, 0, 0, 0, 1, 1, -1, 2),
			f32bytes(0.5, 0, -10, 0)},
		ops:     []tOp{{code: 0, in: []int32{0, 1, 2}, out: []int32{3}, optType: schema.BuiltinOptionsFullyConnected, opt: fcOptions(schema.ActivationNone, false)}},
		inputs:  []int32{0},
		outputs: []int32{3},
	}
}

func TestLoadValid(t *testing.T) {
	m, err := tflite.Load(fcModel().bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Ops(); len(got) != 1 || got[0].Name() != "FULLY_CONNECTED" || got[0].Version != 1 {
		t.Errorf("Ops() = %v", got)
	}
	if in := m.Inputs(); len(in) != 1 || in[0].Name != "in" || in[0].Shape[1] != 3 {
		t.Errorf("Inputs() = %+v", in)
	}
	if _, ok := m.Operators()[0].Options.(*tflite.FullyConnectedOptions); !ok {
		t.Errorf("options = %T, want *FullyConnectedOptions", m.Operators()[0].Options)
	}
}

func TestLoadErrors(t *testing.T) {
	quant := func(m *tModel, i int, scale []float32, zp []int64, typ schema.TensorType) {
		m.tensors[i].scale, m.tensors[i].zp, m.tensors[i].typ = scale, zp, typ
	}
	tests := []struct {
		name   string
		edit   func(m *tModel)
		raw    []byte // used instead of the model when set
		opts   []tflite.LoadOption
		wantIn string // substring of the error
	}{
		{name: "short", raw: []byte{1, 2, 3}, wantIn: "too short"},
		{name: "identifier", edit: func(m *tModel) { m.ident = "XXXX" }, wantIn: "file identifier"},
		{name: "schema version", edit: func(m *tModel) { m.version = 2 }, wantIn: "schema version 2"},
		{name: "buffer index", edit: func(m *tModel) { m.tensors[1].buffer = 9 }, wantIn: `tensor 1 "w": buffer index 9`},
		{name: "buffer size", edit: func(m *tModel) { m.tensors[1].shape = []int32{4, 4} }, wantIn: `tensor 1 "w": float32[4 4] needs 64 bytes, buffer 1 holds 48`},
		{name: "negative dim", edit: func(m *tModel) { m.tensors[0].shape = []int32{-1, 3} }, wantIn: `tensor 0 "in": dimension 0 is -1`},
		{name: "shape overflow", edit: func(m *tModel) { m.tensors[0].shape = []int32{1 << 30, 1 << 30, 1 << 30, 1 << 30} }, wantIn: "overflows"},
		{name: "input index", edit: func(m *tModel) { m.ops[0].in[0] = 7 }, wantIn: "op 0 (FULLY_CONNECTED): input: tensor index 7 out of range"},
		{name: "optional output", edit: func(m *tModel) { m.ops[0].out[0] = -1 }, wantIn: "output: tensor index -1"},
		{name: "alias", edit: func(m *tModel) { m.ops[0].out[0] = 0 }, wantIn: "output tensor 0 is also an input"},
		{name: "constant output", edit: func(m *tModel) { m.ops[0].in = []int32{0, 1}; m.ops[0].out[0] = 2 }, wantIn: `output tensor 2 "b" is a constant`},
		{name: "opcode index", edit: func(m *tModel) { m.ops[0].code = 3 }, wantIn: "opcode index 3 out of range"},
		{name: "graph input index", edit: func(m *tModel) { m.inputs[0] = 99 }, wantIn: "inputs: tensor index 99"},
		{name: "scale zero", edit: func(m *tModel) { quant(m, 0, []float32{0}, []int64{0}, schema.TensorTypeFloat32) }, wantIn: `tensor 0 "in": quantization: scale[0] is 0`},
		{name: "scale NaN", edit: func(m *tModel) { quant(m, 0, []float32{float32(math.NaN())}, []int64{0}, schema.TensorTypeFloat32) }, wantIn: "scale[0] is NaN"},
		{name: "scale Inf", edit: func(m *tModel) { quant(m, 0, []float32{float32(math.Inf(1))}, []int64{0}, schema.TensorTypeFloat32) }, wantIn: "scale[0] is +Inf"},
		{name: "zero point int8", edit: func(m *tModel) {
			m.tensors[0].typ = schema.TensorTypeInt8
			m.tensors[0].scale, m.tensors[0].zp = []float32{0.5}, []int64{200}
		}, wantIn: "zero_point[0] 200 out of range [-128,127] for int8"},
		{name: "per-channel length", edit: func(m *tModel) { m.tensors[1].scale, m.tensors[1].zp = []float32{1, 1}, []int64{0, 0} }, wantIn: "2 per-channel scales for dimension 0 of size 4"},
		{name: "per-channel dim beyond rank", edit: func(m *tModel) {
			m.tensors[1].scale, m.tensors[1].zp, m.tensors[1].qdim = []float32{1, 1, 1}, []int64{0, 0, 0}, 5
		}, wantIn: "quantized_dimension 5 out of range for rank 2"},
		{name: "zero point count", edit: func(m *tModel) { m.tensors[1].scale, m.tensors[1].zp = []float32{1}, []int64{0, 0} }, wantIn: "1 scales but 2 zero points"},
		{name: "memory cap", opts: []tflite.LoadOption{tflite.WithMaxBytes(40)}, wantIn: "memory cap of 40 bytes"},
		{name: "sparse tensor", edit: func(m *tModel) { m.tensors[1].sparse = true }, wantIn: `tensor 1 "w": sparse tensors are not supported`},
		{name: "written twice", edit: func(m *tModel) { m.ops = append(m.ops, m.ops[0]) }, wantIn: `op 1 (FULLY_CONNECTED): output tensor 3 "out" is written twice`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.raw
			if data == nil {
				m := fcModel()
				if tc.edit != nil {
					tc.edit(&m)
				}
				data = m.bytes()
			}
			_, err := tflite.Load(data, tc.opts...)
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", tc.wantIn)
			}
			if !strings.Contains(err.Error(), tc.wantIn) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Load error = %q, want one line containing %q", err, tc.wantIn)
			}
		})
	}
}

// TestLoadRankOnePerChannel: like TFLite Micro, a rank-1 per-channel tensor whose
// quantized_dimension points past its rank (person_detect's biases) is accepted.
func TestLoadRankOnePerChannel(t *testing.T) {
	m := fcModel()
	m.tensors[2].scale, m.tensors[2].zp, m.tensors[2].qdim = []float32{1, 2, 3, 4}, []int64{0, 0, 0, 0}, 3
	mod, err := tflite.Load(m.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if q := mod.Tensors()[2].Quant; q == nil || q.Dim != 0 || len(q.Scale) != 4 {
		t.Errorf("quant = %+v, want 4 scales on dimension 0", q)
	}
}

// TestLoadCorruptNeverPanics truncates and flips bytes of a real model; every result must be a
// model or an error, never a panic (Load's recover would turn one into an "internal error").
func TestLoadCorruptNeverPanics(t *testing.T) {
	data := fcModel().bytes()
	check := func(b []byte) {
		_, err := tflite.Load(b)
		if err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatalf("Load panicked: %v", err)
		}
	}
	for n := range data {
		check(data[:n])
	}
	mut := make([]byte, len(data))
	for i := range data {
		for _, x := range []byte{0x00, 0xff, 0x80, 0x7f, data[i] ^ 1} {
			copy(mut, data)
			mut[i] = x
			check(mut)
		}
	}
}

func newInterp(t *testing.T, m tModel) *tflite.Interpreter {
	t.Helper()
	return oracletest.NewInterpreter(t, m.bytes(), kernels.Builtins())
}

func TestUnsupportedOp(t *testing.T) {
	m := fcModel()
	m.codes = append(m.codes, tCode{op: schema.OpCustom, version: 1, custom: "Frobnicate"}, tCode{op: schema.OpRfft2d, version: 1})
	m.tensors = append(m.tensors, tTensor{name: "x", typ: schema.TensorTypeFloat32, shape: []int32{2, 4}}, tTensor{name: "y", typ: schema.TensorTypeFloat32, shape: []int32{2, 4}})
	m.ops = append(m.ops, tOp{code: 1, in: []int32{3}, out: []int32{4}}, tOp{code: 2, in: []int32{4}, out: []int32{5}})
	m.outputs = []int32{5}
	mod, err := tflite.Load(m.bytes())
	if err != nil {
		t.Fatal(err)
	}
	_, err = tflite.NewInterpreter(mod, kernels.Builtins(), tflite.Options{})
	// RFFT2D is a builtin outside TFLite Micro's op set, so it stays unsupported.
	want := "unsupported op CUSTOM:Frobnicate v1 (op 1), RFFT2D v1 (op 2); model ops: FULLY_CONNECTED v1, CUSTOM:Frobnicate v1, RFFT2D v1"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("NewInterpreter error = %v, want it to contain %q", err, want)
	}
}

func TestInterpreterMemoryCap(t *testing.T) {
	mod, err := tflite.Load(fcModel().bytes())
	if err != nil {
		t.Fatal(err)
	}
	_, err = tflite.NewInterpreter(mod, kernels.Builtins(), tflite.Options{MaxBytes: mod.ConstBytes() + 40})
	if err == nil || !strings.Contains(err.Error(), "memory cap") {
		t.Fatalf("NewInterpreter error = %v, want memory cap error", err)
	}
}

// TestInvokeZeroAllocs holds Invoke at zero allocations on a real model.
func TestInvokeZeroAllocs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(oracletest.CorpusDir(t), "hello_world_float", "hello_world_float.tflite"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{{"hello_world_float", data}, {"fc", fcModel().bytes()}} {
		t.Run(tc.name, func(t *testing.T) {
			oracletest.ZeroAllocs(t, oracletest.NewInterpreter(t, tc.data, kernels.Builtins()))
		})
	}
}
