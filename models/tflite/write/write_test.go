package write

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// table is a minimal reader over the generic flatbuffers Table, enough to check the writer
// without depending on the interpreter's parser.
type table struct{ flatbuffers.Table }

func root(buf []byte) table {
	return table{flatbuffers.Table{Bytes: buf, Pos: flatbuffers.GetUOffsetT(buf)}}
}

func (t table) field(slot int) flatbuffers.UOffsetT {
	return flatbuffers.UOffsetT(t.Offset(flatbuffers.VOffsetT(schema.VOffset(slot))))
}

func (t table) has(slot int) bool { return t.field(slot) != 0 }

func (t table) u32(slot int, def uint32) uint32 {
	if o := t.field(slot); o != 0 {
		return t.GetUint32(o + t.Pos)
	}
	return def
}

func (t table) i32(slot int, def int32) int32 {
	if o := t.field(slot); o != 0 {
		return t.GetInt32(o + t.Pos)
	}
	return def
}

func (t table) i8(slot int, def int8) int8 {
	if o := t.field(slot); o != 0 {
		return t.GetInt8(o + t.Pos)
	}
	return def
}

func (t table) str(slot int) string {
	if o := t.field(slot); o != 0 {
		return string(t.ByteVector(o + t.Pos))
	}
	return ""
}

func (t table) vecLen(slot int) int {
	if o := t.field(slot); o != 0 {
		return t.VectorLen(o)
	}
	return 0
}

// vecStart returns the absolute offset of element 0 of a vector field.
func (t table) vecStart(slot int) flatbuffers.UOffsetT { return t.Vector(t.field(slot)) }

func (t table) elem(slot, i int) table {
	p := t.vecStart(slot) + flatbuffers.UOffsetT(4*i)
	return table{flatbuffers.Table{Bytes: t.Bytes, Pos: t.Indirect(p)}}
}

func (t table) sub(slot int) table {
	return table{flatbuffers.Table{Bytes: t.Bytes, Pos: t.Indirect(t.field(slot) + t.Pos)}}
}

func (t table) ints(slot int) []int32 {
	n := t.vecLen(slot)
	out := make([]int32, n)
	for i := range out {
		out[i] = t.GetInt32(t.vecStart(slot) + flatbuffers.UOffsetT(4*i))
	}
	return out
}

func (t table) bytes(slot int) []byte {
	if !t.has(slot) {
		return nil
	}
	return t.ByteVector(t.field(slot) + t.Pos)
}

// sampleModel builds a model exercising every feature: float32 and int8 tensors, per-tensor
// and per-channel quantization, options, an op code above 127, a custom op and metadata.
func sampleModel() *Model {
	m := NewModel("writer test")
	sg := m.Subgraph()
	sg.SetName("main")
	f32, i8, i32 := schema.TensorTypeFloat32, schema.TensorTypeInt8, schema.TensorTypeInt32
	x := sg.AddTensor(Tensor{Name: "x", Type: f32, Shape: []int32{1, 3}})
	w := sg.AddTensor(Tensor{Name: "w", Type: f32, Shape: []int32{2, 3}, Data: Float32s([]float32{1, 2, 3, 4, 5, 6})})
	h := sg.AddTensor(Tensor{Name: "h", Type: f32, Shape: []int32{1, 2}})
	sg.AddOp(schema.OpFullyConnected, 1, []int32{x, w, -1}, []int32{h}, FullyConnectedOptions{Activation: schema.ActivationRelu})
	h2 := sg.AddTensor(Tensor{Name: "h2", Type: f32, Shape: []int32{1, 2}})
	sg.AddOp(schema.OpFullyConnected, 1, []int32{h, w, -1}, []int32{h2}, FullyConnectedOptions{KeepNumDims: true})
	s := sg.AddTensor(Tensor{Name: "sign", Type: f32, Shape: []int32{1, 2}})
	sg.AddOp(schema.OpSign, 1, []int32{h2}, []int32{s}, nil)
	q := sg.AddTensor(Tensor{Name: "q", Type: i8, Shape: []int32{3, 1, 1, 2},
		Data:  Int8s([]int8{-1, 2, -3, 4, -5, 6}),
		Quant: &Quant{Scale: []float32{0.5, 0.25, 0.125}, ZeroPoint: []int64{0, 0, 0}, Dim: 0}})
	b := sg.AddTensor(Tensor{Name: "b", Type: i32, Shape: []int32{3}, Data: Int32s([]int32{7, -8, 9}),
		Quant: &Quant{Scale: []float32{0.01}, ZeroPoint: []int64{-3}}})
	c := sg.AddTensor(Tensor{Name: "c", Type: f32, Shape: []int32{1, 1, 1, 3}})
	sg.AddOp(schema.OpConv2D, 3, []int32{s, q, b}, []int32{c},
		Conv2DOptions{Padding: schema.PaddingValid, StrideW: 1, StrideH: 2, DilationW: 2})
	cu := sg.AddTensor(Tensor{Name: "cu", Type: f32, Shape: []int32{1, 1, 1, 3}})
	sg.AddCustomOp("MyOp", 1, []int32{c}, []int32{cu}, []byte{9, 8, 7})
	sg.SetInputs(x)
	sg.SetOutputs(cu)
	m.AddMetadata("min_runtime_version", []byte("1.5.0\x00"))
	return m
}

func TestBytesLayout(t *testing.T) {
	buf, err := sampleModel().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if id := string(buf[4:8]); id != "TFL3" {
		t.Fatalf("file identifier %q, want TFL3", id)
	}
	r := root(buf)
	if v := r.u32(schema.ModelVersion, 0); v != 3 {
		t.Errorf("version %d, want 3", v)
	}
	if d := r.str(schema.ModelDescription); d != "writer test" {
		t.Errorf("description %q", d)
	}

	// Buffers: 0 empty, then w, q, b, metadata in order of creation, data 16-byte aligned.
	wantBufs := [][]byte{nil, Float32s([]float32{1, 2, 3, 4, 5, 6}), Int8s([]int8{-1, 2, -3, 4, -5, 6}), Int32s([]int32{7, -8, 9}), []byte("1.5.0\x00")}
	if n := r.vecLen(schema.ModelBuffers); n != len(wantBufs) {
		t.Fatalf("%d buffers, want %d", n, len(wantBufs))
	}
	for i, want := range wantBufs {
		bt := r.elem(schema.ModelBuffers, i)
		got := bt.bytes(schema.BufferData)
		if !bytes.Equal(got, want) {
			t.Errorf("buffer %d = %v, want %v", i, got, want)
		}
		if len(got) > 0 {
			if start := bt.vecStart(schema.BufferData); start%16 != 0 {
				t.Errorf("buffer %d data at offset %d, not 16-byte aligned", i, start)
			}
		}
	}

	// Operator codes: FULLY_CONNECTED once despite two uses; SIGN (158) with the placeholder 127
	// in deprecated_builtin_code; the custom op by name.
	wantCodes := []struct {
		deprecated int8
		code       int32
		version    int32
		custom     string
	}{{9, 9, 1, ""}, {127, 158, 1, ""}, {3, 3, 3, ""}, {32, 32, 1, "MyOp"}}
	if n := r.vecLen(schema.ModelOperatorCodes); n != len(wantCodes) {
		t.Fatalf("%d operator codes, want %d", n, len(wantCodes))
	}
	for i, want := range wantCodes {
		oc := r.elem(schema.ModelOperatorCodes, i)
		got := struct {
			deprecated int8
			code       int32
			version    int32
			custom     string
		}{oc.i8(schema.OperatorCodeDeprecatedBuiltinCode, 0), oc.i32(schema.OperatorCodeBuiltinCode, 0), oc.i32(schema.OperatorCodeVersion, 1), oc.str(schema.OperatorCodeCustomCode)}
		if got != want {
			t.Errorf("operator code %d = %+v, want %+v", i, got, want)
		}
	}

	sg := r.elem(schema.ModelSubgraphs, 0)
	if n := sg.str(schema.SubGraphName); n != "main" {
		t.Errorf("subgraph name %q", n)
	}
	if in, out := sg.ints(schema.SubGraphInputs), sg.ints(schema.SubGraphOutputs); len(in) != 1 || in[0] != 0 || len(out) != 1 || out[0] != 8 {
		t.Errorf("subgraph inputs %v outputs %v, want [0] [8]", in, out)
	}
	if n := sg.vecLen(schema.SubGraphTensors); n != 9 {
		t.Fatalf("%d tensors, want 9", n)
	}
	wantTensors := []struct {
		name   string
		typ    schema.TensorType
		buffer uint32
		shape  []int32
	}{
		{"x", schema.TensorTypeFloat32, 0, []int32{1, 3}},
		{"w", schema.TensorTypeFloat32, 1, []int32{2, 3}},
		{"q", schema.TensorTypeInt8, 2, []int32{3, 1, 1, 2}},
		{"b", schema.TensorTypeInt32, 3, []int32{3}},
	}
	for _, want := range wantTensors {
		var tt table
		for i := 0; i < 9; i++ {
			if c := sg.elem(schema.SubGraphTensors, i); c.str(schema.TensorName) == want.name {
				tt = c
			}
		}
		if tt.Bytes == nil {
			t.Fatalf("no tensor %q", want.name)
		}
		if typ := schema.TensorType(tt.i8(schema.TensorType_, 0)); typ != want.typ {
			t.Errorf("tensor %s type %v, want %v", want.name, typ, want.typ)
		}
		if b := tt.u32(schema.TensorBuffer, 0); b != want.buffer {
			t.Errorf("tensor %s buffer %d, want %d", want.name, b, want.buffer)
		}
		if s := tt.ints(schema.TensorShape); !equalInts(s, want.shape) {
			t.Errorf("tensor %s shape %v, want %v", want.name, s, want.shape)
		}
	}

	// Per-channel quantization of q (tensor 5) and per-tensor of b (tensor 6).
	qt := sg.elem(schema.SubGraphTensors, 5).sub(schema.TensorQuantization)
	if n := qt.vecLen(schema.QuantScale); n != 3 {
		t.Errorf("q has %d scales, want 3", n)
	}
	if s := math.Float32frombits(qt.GetUint32(qt.vecStart(schema.QuantScale) + 8)); s != 0.125 {
		t.Errorf("q scale[2] = %v, want 0.125", s)
	}
	bq := sg.elem(schema.SubGraphTensors, 6).sub(schema.TensorQuantization)
	if zp := int64(binary.LittleEndian.Uint64(buf[bq.vecStart(schema.QuantZeroPoint):])); zp != -3 {
		t.Errorf("b zero point %d, want -3", zp)
	}

	// Operators: FC with optional bias -1 and RELU; CONV_2D options; custom options bytes.
	op0 := sg.elem(schema.SubGraphOperators, 0)
	if in := op0.ints(schema.OperatorInputs); !equalInts(in, []int32{0, 1, -1}) {
		t.Errorf("op 0 inputs %v", in)
	}
	if tag := schema.BuiltinOptions(op0.i8(schema.OperatorBuiltinOptionsType, 0)); tag != schema.BuiltinOptionsFullyConnected {
		t.Errorf("op 0 options type %d", tag)
	}
	if a := op0.sub(schema.OperatorBuiltinOptions).i8(0, 0); schema.Activation(a) != schema.ActivationRelu {
		t.Errorf("op 0 activation %d, want RELU", a)
	}
	op1 := sg.elem(schema.SubGraphOperators, 1)
	if k := op1.sub(schema.OperatorBuiltinOptions).i8(2, 0); k != 1 {
		t.Errorf("op 1 keep_num_dims %d, want 1", k)
	}
	if op2 := sg.elem(schema.SubGraphOperators, 2); op2.has(schema.OperatorBuiltinOptions) || op2.u32(schema.OperatorOpcodeIndex, 0) != 1 {
		t.Errorf("op 2 (SIGN) has options or wrong opcode index")
	}
	conv := sg.elem(schema.SubGraphOperators, 3).sub(schema.OperatorBuiltinOptions)
	gotConv := []int32{int32(conv.i8(0, 0)), conv.i32(1, 0), conv.i32(2, 0), int32(conv.i8(3, 0)), conv.i32(4, 1), conv.i32(5, 1)}
	if !equalInts(gotConv, []int32{int32(schema.PaddingValid), 1, 2, 0, 2, 1}) {
		t.Errorf("conv options %v, want [1 1 2 0 2 1]", gotConv)
	}
	if co := sg.elem(schema.SubGraphOperators, 4).bytes(schema.OperatorCustomOptions); !bytes.Equal(co, []byte{9, 8, 7}) {
		t.Errorf("custom options %v", co)
	}

	md := r.elem(schema.ModelMetadata, 0)
	if md.str(schema.MetadataName) != "min_runtime_version" || md.u32(schema.MetadataBuffer, 0) != 4 {
		t.Errorf("metadata = %q -> buffer %d", md.str(schema.MetadataName), md.u32(schema.MetadataBuffer, 0))
	}
}

func equalInts(a, b []int32) bool {
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

func TestBytesDeterministic(t *testing.T) {
	a, err := sampleModel().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	m := sampleModel()
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Bytes() // a second call on the same model
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || !bytes.Equal(b, c) {
		t.Error("the same model serialised to different bytes")
	}
	if len(a)%16 != 0 {
		t.Errorf("file size %d is not a multiple of 16, the largest alignment used", len(a))
	}
}

func TestOptionsTables(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		tag    schema.BuiltinOptions
		fields int
	}{
		{"fc default", FullyConnectedOptions{}, schema.BuiltinOptionsFullyConnected, 0},
		{"softmax", SoftmaxOptions{Beta: 1}, schema.BuiltinOptionsSoftmax, 1},
		{"reshape", ReshapeOptions{NewShape: []int32{1, -1}}, schema.BuiltinOptionsReshape, 1},
		{"reshape from input", ReshapeOptions{}, schema.BuiltinOptionsReshape, 0},
		{"conv dilation 1 is default", Conv2DOptions{DilationW: 1, DilationH: 1}, schema.BuiltinOptionsConv2D, 0},
		{"depthwise", DepthwiseConv2DOptions{StrideW: 1, StrideH: 1, DepthMultiplier: 2}, schema.BuiltinOptionsDepthwiseConv2D, 3},
		{"pool", Pool2DOptions{StrideW: 2, StrideH: 2, FilterWidth: 2, FilterHeight: 2}, schema.BuiltinOptionsPool2D, 4},
		{"add", AddOptions(schema.ActivationRelu6), schema.BuiltinOptionsAdd, 1},
		{"mul", MulOptions(schema.ActivationNone), schema.BuiltinOptionsMul, 0},
		{"sub", SubOptions(schema.ActivationRelu), schema.BuiltinOptionsSub, 1},
		{"div", DivOptions(schema.ActivationRelu), schema.BuiltinOptionsDiv, 1},
		{"concat", ConcatenationOptions{Axis: -1}, schema.BuiltinOptionsConcatenation, 1},
		{"mean", ReducerOptions{KeepDims: true}, schema.BuiltinOptionsReducer, 1},
		{"squeeze", SqueezeOptions{Dims: []int32{1}}, schema.BuiltinOptionsSqueeze, 1},
		{"strided slice", StridedSliceOptions{ShrinkAxisMask: 1}, schema.BuiltinOptionsStridedSlice, 1},
		{"gather", GatherOptions{Axis: 1}, schema.BuiltinOptionsGather, 1},
		{"pack", PackOptions{ValuesCount: 2}, schema.BuiltinOptionsPack, 1},
		{"split", SplitOptions{NumSplits: 2}, schema.BuiltinOptionsSplit, 1},
		{"leaky relu", LeakyReluOptions{Alpha: 0.2}, schema.BuiltinOptionsLeakyRelu, 1},
		{"argmax", ArgMaxOptions{OutputType: schema.TensorTypeInt32}, schema.BuiltinOptionsArgMax, 1},
		{"resize bilinear", ResizeOptions{Op: schema.BuiltinOptionsResizeBilinear, HalfPixelCenters: true}, schema.BuiltinOptionsResizeBilinear, 1},
		{"space to depth", BlockSizeOptions{Op: schema.BuiltinOptionsSpaceToDepth, BlockSize: 2}, schema.BuiltinOptionsSpaceToDepth, 1},
		{"transpose conv", TransposeConvOptions{StrideW: 2, StrideH: 2}, schema.BuiltinOptionsTransposeConv, 2},
		{"empty", Empty(schema.BuiltinOptionsTranspose), schema.BuiltinOptionsTranspose, 0},
		{"raw table", Table{Type: schema.BuiltinOptionsGelu, Fields: []Field{BoolField(0, true)}}, schema.BuiltinOptionsGelu, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := tt.opts.Table()
			if tab.Type != tt.tag || len(tab.Fields) != tt.fields {
				t.Errorf("Table() = tag %d with %d fields, want tag %d with %d", tab.Type, len(tab.Fields), tt.tag, tt.fields)
			}
			// Every table must serialise inside a model.
			m := NewModel("")
			sg := m.Subgraph()
			x := sg.AddTensor(Tensor{Name: "x", Type: schema.TensorTypeFloat32, Shape: []int32{1}})
			sg.AddOp(schema.OpAdd, 1, []int32{x}, []int32{x}, tt.opts)
			if _, err := m.Bytes(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFieldValuesRoundTrip(t *testing.T) {
	m := NewModel("")
	sg := m.Subgraph()
	x := sg.AddTensor(Tensor{Name: "x", Type: schema.TensorTypeFloat32, Shape: []int32{1}})
	sg.AddOp(schema.OpSoftmax, 1, []int32{x}, []int32{x}, Table{Type: schema.BuiltinOptionsSoftmax,
		Fields: []Field{Float32Field(0, 0.75), Int32sField(2, []int32{4, -5}), Int32Field(3, -7), Int8Field(1, -2)}})
	buf, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	o := root(buf).elem(schema.ModelSubgraphs, 0).elem(schema.SubGraphOperators, 0).sub(schema.OperatorBuiltinOptions)
	if f := o.GetFloat32(o.field(0) + o.Pos); f != 0.75 {
		t.Errorf("float field = %v, want 0.75", f)
	}
	if v := o.i8(1, 0); v != -2 {
		t.Errorf("int8 field = %d, want -2", v)
	}
	if v := o.ints(2); !equalInts(v, []int32{4, -5}) {
		t.Errorf("vector field = %v", v)
	}
	if v := o.i32(3, 0); v != -7 {
		t.Errorf("int32 field = %d, want -7", v)
	}
}

func TestBytesErrors(t *testing.T) {
	f32 := schema.TensorTypeFloat32
	tests := []struct {
		name  string
		build func(m *Model)
		want  string
	}{
		{"no subgraph", func(m *Model) {}, "no subgraph"},
		{"input out of range", func(m *Model) {
			sg := m.Subgraph()
			x := sg.AddTensor(Tensor{Name: "x", Type: f32, Shape: []int32{1}})
			sg.AddOp(schema.OpRelu, 1, []int32{x + 1}, []int32{x}, nil)
		}, "input tensor 1 out of range"},
		{"omitted output", func(m *Model) {
			sg := m.Subgraph()
			x := sg.AddTensor(Tensor{Name: "x", Type: f32, Shape: []int32{1}})
			sg.AddOp(schema.OpRelu, 1, []int32{x}, []int32{-1}, nil)
		}, "output tensor -1"},
		{"graph output", func(m *Model) {
			sg := m.Subgraph()
			sg.AddTensor(Tensor{Name: "x", Type: f32, Shape: []int32{1}})
			sg.SetOutputs(3)
		}, "output tensor 3"},
		{"data size", func(m *Model) {
			m.Subgraph().AddTensor(Tensor{Name: "w", Type: f32, Shape: []int32{2, 2}, Data: Float32s([]float32{1, 2, 3})})
		}, `"w": data is 12 bytes, shape [2 2] of FLOAT32 needs 16`},
		{"negative dim", func(m *Model) {
			m.Subgraph().AddTensor(Tensor{Name: "w", Type: f32, Shape: []int32{-1}})
		}, "negative dimension"},
		{"per-channel count", func(m *Model) {
			m.Subgraph().AddTensor(Tensor{Name: "q", Type: schema.TensorTypeInt8, Shape: []int32{3, 2},
				Quant: &Quant{Scale: []float32{1, 2}, Dim: 0}})
		}, "2 per-channel scales but dimension 0 has size 3"},
		{"per-channel dim", func(m *Model) {
			m.Subgraph().AddTensor(Tensor{Name: "q", Type: schema.TensorTypeInt8, Shape: []int32{2},
				Quant: &Quant{Scale: []float32{1, 2}, Dim: 1}})
		}, "quantized dimension 1 out of range"},
		{"zero points", func(m *Model) {
			m.Subgraph().AddTensor(Tensor{Name: "q", Type: schema.TensorTypeInt8, Shape: []int32{2},
				Quant: &Quant{Scale: []float32{1}, ZeroPoint: []int64{0, 0}}})
		}, "1 scales but 2 zero points"},
		{"zero scale", func(m *Model) {
			m.Subgraph().AddTensor(Tensor{Name: "q", Type: schema.TensorTypeInt8, Shape: []int32{2},
				Quant: &Quant{Scale: []float32{0}}})
		}, "scale 0 is not a positive finite number"},
		{"no scale", func(m *Model) {
			m.Subgraph().AddTensor(Tensor{Name: "q", Type: schema.TensorTypeInt8, Shape: []int32{2}, Quant: &Quant{}})
		}, "no scale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewModel("")
			tt.build(m)
			_, err := m.Bytes()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Bytes() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestDataHelpers(t *testing.T) {
	if got := Float32s([]float32{1}); !bytes.Equal(got, []byte{0, 0, 0x80, 0x3f}) {
		t.Errorf("Float32s(1) = %v", got)
	}
	if got := Int32s([]int32{-2}); !bytes.Equal(got, []byte{0xfe, 0xff, 0xff, 0xff}) {
		t.Errorf("Int32s(-2) = %v", got)
	}
	if got := Int16s([]int16{-2}); !bytes.Equal(got, []byte{0xfe, 0xff}) {
		t.Errorf("Int16s(-2) = %v", got)
	}
	if got := Int64s([]int64{1}); !bytes.Equal(got, []byte{1, 0, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("Int64s(1) = %v", got)
	}
	if got := Int8s([]int8{-1}); !bytes.Equal(got, []byte{0xff}) {
		t.Errorf("Int8s(-1) = %v", got)
	}
}
