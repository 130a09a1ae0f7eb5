// Package write builds TensorFlow Lite flatbuffers (.tflite, schema version 3) from Go values.
//
// It is the producer side of models/tflite: the sample-model trainer and the single-op test
// models use it. A Model holds buffers, operator codes and subgraphs; Bytes serialises them.
// The output is a pure function of the calls made (no maps are iterated, nothing is timed),
// so the same calls always give the same bytes. Constant data is aligned to 16 bytes in the
// file, as schema.fbs asks for Buffer.data (force_align: 16).
//
//	m := write.NewModel("tiny model")
//	sg := m.Subgraph()
//	in := sg.AddTensor(write.Tensor{Name: "x", Type: schema.TensorTypeFloat32, Shape: []int32{1, 4}})
//	...
//	sg.AddOp(schema.OpFullyConnected, 1, []int32{in, w, b}, []int32{out},
//		write.FullyConnectedOptions{Activation: schema.ActivationRelu})
//	sg.SetInputs(in)
//	sg.SetOutputs(out)
//	buf, err := m.Bytes()
package write

import (
	"encoding/binary"
	"fmt"
	"math"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// bufferAlign is the alignment of constant data inside the file (schema.fbs: force_align 16).
const bufferAlign = 16

// Model is a .tflite model under construction. The zero value is not usable; call NewModel.
// A Model is not safe for concurrent use.
type Model struct {
	description string
	buffers     [][]byte // buffers[0] is the empty sentinel every data-less tensor points to
	codes       []opCode
	subgraphs   []*Subgraph
	metadata    []metadata
}

type opCode struct {
	builtin schema.BuiltinOperator
	custom  string
	version int32
}

type metadata struct {
	name   string
	buffer uint32
}

// NewModel starts an empty model whose Model.description is description.
func NewModel(description string) *Model {
	return &Model{description: description, buffers: [][]byte{nil}}
}

// Subgraph appends a new subgraph and returns it. The first one is the main graph.
func (m *Model) Subgraph() *Subgraph {
	s := &Subgraph{model: m}
	m.subgraphs = append(m.subgraphs, s)
	return s
}

// AddMetadata appends a Model.metadata entry naming a buffer that holds data.
func (m *Model) AddMetadata(name string, data []byte) {
	m.metadata = append(m.metadata, metadata{name: name, buffer: m.addBuffer(data)})
}

func (m *Model) addBuffer(data []byte) uint32 {
	m.buffers = append(m.buffers, append([]byte(nil), data...))
	return uint32(len(m.buffers) - 1)
}

// opIndex returns the index of an operator code, adding it on first use (in order of use).
func (m *Model) opIndex(c opCode) uint32 {
	for i, have := range m.codes {
		if have == c {
			return uint32(i)
		}
	}
	m.codes = append(m.codes, c)
	return uint32(len(m.codes) - 1)
}

// Quant is a tensor's quantization: real = Scale * (q - ZeroPoint). One scale means per-tensor;
// more means per-channel along dimension Dim, one scale per element of Shape[Dim].
type Quant struct {
	Scale     []float32
	ZeroPoint []int64 // nil means all zero
	Dim       int32   // quantized_dimension, for per-channel scales
	Min, Max  []float32
}

// Tensor describes one tensor of a subgraph. Data, when non-empty, is the tensor's constant
// little-endian contents and gets a buffer of its own; otherwise the tensor uses buffer 0.
type Tensor struct {
	Name     string
	Type     schema.TensorType
	Shape    []int32
	Data     []byte
	Quant    *Quant
	Variable bool // is_variable: state the runtime keeps between invocations
}

// Subgraph is one graph of tensors and operators.
type Subgraph struct {
	model           *Model
	name            string
	tensors         []tensor
	ops             []operator
	inputs, outputs []int32
}

type tensor struct {
	Tensor
	buffer uint32
}

type operator struct {
	opcode          uint32
	op              string // for error messages
	inputs, outputs []int32
	opts            *Table
	custom          []byte
}

// SetName sets SubGraph.name.
func (s *Subgraph) SetName(name string) { s.name = name }

// AddTensor appends a tensor and returns its index in the subgraph.
func (s *Subgraph) AddTensor(t Tensor) int32 {
	t.Shape = append([]int32(nil), t.Shape...)
	var buf uint32
	if len(t.Data) > 0 {
		buf = s.model.addBuffer(t.Data)
	}
	t.Data = nil // owned by the model's buffer list now
	s.tensors = append(s.tensors, tensor{Tensor: t, buffer: buf})
	return int32(len(s.tensors) - 1)
}

// AddOp appends a builtin operator. Tensor index -1 marks an omitted optional input. opts may
// be nil for ops without options.
func (s *Subgraph) AddOp(op schema.BuiltinOperator, version int32, inputs, outputs []int32, opts Options) {
	o := operator{
		opcode:  s.model.opIndex(opCode{builtin: op, version: version}),
		op:      op.String(),
		inputs:  append([]int32(nil), inputs...),
		outputs: append([]int32(nil), outputs...),
	}
	if opts != nil {
		t := opts.Table()
		o.opts = &t
	}
	s.ops = append(s.ops, o)
}

// AddCustomOp appends a custom operator identified by code, with raw custom_options bytes.
func (s *Subgraph) AddCustomOp(code string, version int32, inputs, outputs []int32, customOptions []byte) {
	s.ops = append(s.ops, operator{
		opcode:  s.model.opIndex(opCode{builtin: schema.OpCustom, custom: code, version: version}),
		op:      "custom " + code,
		inputs:  append([]int32(nil), inputs...),
		outputs: append([]int32(nil), outputs...),
		custom:  append([]byte(nil), customOptions...),
	})
}

// SetInputs sets the subgraph's input tensor indices.
func (s *Subgraph) SetInputs(idx ...int32) { s.inputs = append([]int32(nil), idx...) }

// SetOutputs sets the subgraph's output tensor indices.
func (s *Subgraph) SetOutputs(idx ...int32) { s.outputs = append([]int32(nil), idx...) }

// Bytes validates the model and serialises it. It can be called more than once.
func (m *Model) Bytes() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	size := 1024
	for _, b := range m.buffers {
		size += len(b) + bufferAlign + 16
	}
	b := flatbuffers.NewBuilder(size)

	// Buffers first: the builder writes back to front, so the bulk data ends up at the end of
	// the file, after the small tables a reader walks.
	bufs := make([]flatbuffers.UOffsetT, len(m.buffers))
	for i, data := range m.buffers {
		var vec flatbuffers.UOffsetT
		if len(data) > 0 {
			vec = alignedBytes(b, data)
		}
		b.StartObject(3)
		if len(data) > 0 {
			b.PrependUOffsetTSlot(schema.BufferData, vec, 0)
		}
		bufs[i] = b.EndObject()
	}

	metas := make([]flatbuffers.UOffsetT, len(m.metadata))
	for i, md := range m.metadata {
		name := b.CreateString(md.name)
		b.StartObject(2)
		b.PrependUOffsetTSlot(schema.MetadataName, name, 0)
		b.PrependUint32Slot(schema.MetadataBuffer, md.buffer, 0)
		metas[i] = b.EndObject()
	}

	codes := make([]flatbuffers.UOffsetT, len(m.codes))
	for i, c := range m.codes {
		var custom flatbuffers.UOffsetT
		if c.custom != "" {
			custom = b.CreateString(c.custom)
		}
		b.StartObject(4)
		// deprecated_builtin_code is an int8: codes above 127 store the placeholder 127 there
		// and the real code in builtin_code; readers take the larger of the two.
		b.PrependInt8Slot(schema.OperatorCodeDeprecatedBuiltinCode, int8(min(int32(c.builtin), 127)), 0)
		if custom != 0 {
			b.PrependUOffsetTSlot(schema.OperatorCodeCustomCode, custom, 0)
		}
		b.PrependInt32Slot(schema.OperatorCodeVersion, c.version, 1)
		b.PrependInt32Slot(schema.OperatorCodeBuiltinCode, int32(c.builtin), 0)
		codes[i] = b.EndObject()
	}

	sgs := make([]flatbuffers.UOffsetT, len(m.subgraphs))
	for i, s := range m.subgraphs {
		sgs[i] = s.build(b)
	}

	desc := b.CreateString(m.description)
	codesVec := tableVector(b, codes)
	sgVec := tableVector(b, sgs)
	bufVec := tableVector(b, bufs)
	var metaVec flatbuffers.UOffsetT
	if len(metas) > 0 {
		metaVec = tableVector(b, metas)
	}
	b.StartObject(8)
	b.PrependUint32Slot(schema.ModelVersion, schema.Version, 0)
	b.PrependUOffsetTSlot(schema.ModelOperatorCodes, codesVec, 0)
	b.PrependUOffsetTSlot(schema.ModelSubgraphs, sgVec, 0)
	b.PrependUOffsetTSlot(schema.ModelDescription, desc, 0)
	b.PrependUOffsetTSlot(schema.ModelBuffers, bufVec, 0)
	if metaVec != 0 {
		b.PrependUOffsetTSlot(schema.ModelMetadata, metaVec, 0)
	}
	root := b.EndObject()
	b.FinishWithFileIdentifier(root, []byte(schema.FileIdentifier))
	return append([]byte(nil), b.FinishedBytes()...), nil
}

func (s *Subgraph) build(b *flatbuffers.Builder) flatbuffers.UOffsetT {
	tensors := make([]flatbuffers.UOffsetT, len(s.tensors))
	for i, t := range s.tensors {
		shape := int32Vector(b, t.Shape)
		name := b.CreateString(t.Name)
		var quant flatbuffers.UOffsetT
		if t.Quant != nil {
			quant = buildQuant(b, t.Quant)
		}
		b.StartObject(10)
		b.PrependUOffsetTSlot(schema.TensorShape, shape, 0)
		b.PrependInt8Slot(schema.TensorType_, int8(t.Type), 0)
		b.PrependUint32Slot(schema.TensorBuffer, t.buffer, 0)
		b.PrependUOffsetTSlot(schema.TensorName, name, 0)
		if quant != 0 {
			b.PrependUOffsetTSlot(schema.TensorQuantization, quant, 0)
		}
		b.PrependBoolSlot(schema.TensorIsVariable, t.Variable, false)
		tensors[i] = b.EndObject()
	}

	ops := make([]flatbuffers.UOffsetT, len(s.ops))
	for i, o := range s.ops {
		in := int32Vector(b, o.inputs)
		out := int32Vector(b, o.outputs)
		var opts, custom flatbuffers.UOffsetT
		if o.opts != nil {
			opts = o.opts.build(b)
		}
		if o.custom != nil {
			custom = b.CreateByteVector(o.custom)
		}
		b.StartObject(13)
		b.PrependUint32Slot(schema.OperatorOpcodeIndex, o.opcode, 0)
		b.PrependUOffsetTSlot(schema.OperatorInputs, in, 0)
		b.PrependUOffsetTSlot(schema.OperatorOutputs, out, 0)
		if o.opts != nil {
			b.PrependUint8Slot(schema.OperatorBuiltinOptionsType, uint8(o.opts.Type), 0)
			b.PrependUOffsetTSlot(schema.OperatorBuiltinOptions, opts, 0)
		}
		if custom != 0 {
			b.PrependUOffsetTSlot(schema.OperatorCustomOptions, custom, 0)
		}
		ops[i] = b.EndObject()
	}

	tensorVec := tableVector(b, tensors)
	inVec := int32Vector(b, s.inputs)
	outVec := int32Vector(b, s.outputs)
	opVec := tableVector(b, ops)
	var name flatbuffers.UOffsetT
	if s.name != "" {
		name = b.CreateString(s.name)
	}
	b.StartObject(5)
	b.PrependUOffsetTSlot(schema.SubGraphTensors, tensorVec, 0)
	b.PrependUOffsetTSlot(schema.SubGraphInputs, inVec, 0)
	b.PrependUOffsetTSlot(schema.SubGraphOutputs, outVec, 0)
	b.PrependUOffsetTSlot(schema.SubGraphOperators, opVec, 0)
	if name != 0 {
		b.PrependUOffsetTSlot(schema.SubGraphName, name, 0)
	}
	return b.EndObject()
}

func buildQuant(b *flatbuffers.Builder, q *Quant) flatbuffers.UOffsetT {
	zp := q.ZeroPoint
	if zp == nil {
		zp = make([]int64, len(q.Scale))
	}
	var minV, maxV flatbuffers.UOffsetT
	if len(q.Min) > 0 {
		minV = float32Vector(b, q.Min)
	}
	if len(q.Max) > 0 {
		maxV = float32Vector(b, q.Max)
	}
	scale := float32Vector(b, q.Scale)
	b.StartVector(8, len(zp), 8)
	for i := len(zp) - 1; i >= 0; i-- {
		b.PrependInt64(zp[i])
	}
	zpVec := b.EndVector(len(zp))
	b.StartObject(7)
	if minV != 0 {
		b.PrependUOffsetTSlot(schema.QuantMin, minV, 0)
	}
	if maxV != 0 {
		b.PrependUOffsetTSlot(schema.QuantMax, maxV, 0)
	}
	b.PrependUOffsetTSlot(schema.QuantScale, scale, 0)
	b.PrependUOffsetTSlot(schema.QuantZeroPoint, zpVec, 0)
	b.PrependInt32Slot(schema.QuantQuantizedDimension, q.Dim, 0)
	return b.EndObject()
}

// alignedBytes writes a [ubyte] vector whose first element is 16-byte aligned in the file.
// The builder aligns relative to the buffer's end and pads the finished buffer to its largest
// alignment, so aligning here aligns the absolute file offset too.
func alignedBytes(b *flatbuffers.Builder, data []byte) flatbuffers.UOffsetT {
	b.StartVector(1, len(data), bufferAlign)
	for i := len(data) - 1; i >= 0; i-- {
		b.PlaceByte(data[i])
	}
	return b.EndVector(len(data))
}

func tableVector(b *flatbuffers.Builder, offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	b.StartVector(4, len(offs), 4)
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

func int32Vector(b *flatbuffers.Builder, v []int32) flatbuffers.UOffsetT {
	b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependInt32(v[i])
	}
	return b.EndVector(len(v))
}

func float32Vector(b *flatbuffers.Builder, v []float32) flatbuffers.UOffsetT {
	b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependFloat32(v[i])
	}
	return b.EndVector(len(v))
}

// validate checks everything a reader would reject, so a bad model fails here with a message
// naming the tensor or operator rather than later in a runtime.
func (m *Model) validate() error {
	if len(m.subgraphs) == 0 {
		return fmt.Errorf("model has no subgraph")
	}
	for si, s := range m.subgraphs {
		n := int32(len(s.tensors))
		for ti, t := range s.tensors {
			if err := checkTensor(m, t); err != nil {
				return fmt.Errorf("subgraph %d tensor %d %q: %w", si, ti, t.Name, err)
			}
		}
		for oi, o := range s.ops {
			for _, idx := range o.inputs {
				if idx < -1 || idx >= n {
					return fmt.Errorf("subgraph %d operator %d (%s): input tensor %d out of range [0,%d)", si, oi, o.op, idx, n)
				}
			}
			for _, idx := range o.outputs {
				if idx < 0 || idx >= n {
					return fmt.Errorf("subgraph %d operator %d (%s): output tensor %d out of range [0,%d)", si, oi, o.op, idx, n)
				}
			}
		}
		for _, l := range []struct {
			what string
			idx  []int32
		}{{"input", s.inputs}, {"output", s.outputs}} {
			for _, idx := range l.idx {
				if idx < 0 || idx >= n {
					return fmt.Errorf("subgraph %d: %s tensor %d out of range [0,%d)", si, l.what, idx, n)
				}
			}
		}
	}
	return nil
}

func checkTensor(m *Model, t tensor) error {
	elems := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("negative dimension %d in shape %v", d, t.Shape)
		}
		elems *= int64(d)
	}
	if t.buffer != 0 {
		got := int64(len(m.buffers[t.buffer]))
		if want, ok := dataSize(t.Type, elems); ok && got != want {
			return fmt.Errorf("data is %d bytes, shape %v of %s needs %d", got, t.Shape, t.Type, want)
		}
	}
	q := t.Quant
	if q == nil {
		return nil
	}
	if len(q.Scale) == 0 {
		return fmt.Errorf("quantization has no scale")
	}
	if q.ZeroPoint != nil && len(q.ZeroPoint) != len(q.Scale) {
		return fmt.Errorf("quantization has %d scales but %d zero points", len(q.Scale), len(q.ZeroPoint))
	}
	if len(q.Scale) > 1 {
		if q.Dim < 0 || int(q.Dim) >= len(t.Shape) {
			return fmt.Errorf("quantized dimension %d out of range for shape %v", q.Dim, t.Shape)
		}
		if int(t.Shape[q.Dim]) != len(q.Scale) {
			return fmt.Errorf("%d per-channel scales but dimension %d has size %d", len(q.Scale), q.Dim, t.Shape[q.Dim])
		}
	}
	for _, s := range q.Scale {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return fmt.Errorf("quantization scale %v is not a positive finite number", s)
		}
	}
	return nil
}

// dataSize is the byte size of elems elements of type t; ok is false for types whose size
// is not fixed per element (strings, resources, variants).
func dataSize(t schema.TensorType, elems int64) (size int64, ok bool) {
	switch t {
	case schema.TensorTypeUint8, schema.TensorTypeInt8, schema.TensorTypeBool:
		return elems, true
	case schema.TensorTypeInt16, schema.TensorTypeUint16, schema.TensorTypeFloat16:
		return 2 * elems, true
	case schema.TensorTypeFloat32, schema.TensorTypeInt32, schema.TensorTypeUint32:
		return 4 * elems, true
	case schema.TensorTypeInt64, schema.TensorTypeUint64, schema.TensorTypeFloat64, schema.TensorTypeComplex64:
		return 8 * elems, true
	case schema.TensorTypeComplex128:
		return 16 * elems, true
	case schema.TensorTypeInt4:
		return (elems + 1) / 2, true
	}
	return 0, false
}

// Float32s returns v as little-endian bytes, the layout of a FLOAT32 tensor's buffer.
func Float32s(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

// Int32s returns v as little-endian bytes, the layout of an INT32 tensor's buffer.
func Int32s(v []int32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], uint32(x))
	}
	return out
}

// Int8s returns v as bytes, the layout of an INT8 tensor's buffer.
func Int8s(v []int8) []byte {
	out := make([]byte, len(v))
	for i, x := range v {
		out[i] = byte(x)
	}
	return out
}

// Int16s returns v as little-endian bytes, the layout of an INT16 tensor's buffer.
func Int16s(v []int16) []byte {
	out := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(out[2*i:], uint16(x))
	}
	return out
}

// Int64s returns v as little-endian bytes, the layout of an INT64 tensor's buffer.
func Int64s(v []int64) []byte {
	out := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(out[8*i:], uint64(x))
	}
	return out
}
