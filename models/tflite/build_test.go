package tflite_test

import (
	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// A small flatbuffer builder for tests: it writes exactly the fields the tests describe, so
// table tests can produce valid models and break one thing at a time.

type tCode struct {
	op      schema.BuiltinOperator
	version int32
	custom  string
}

type tTensor struct {
	name     string
	typ      schema.TensorType
	shape    []int32
	buffer   uint32
	scale    []float32
	zp       []int64
	qdim     int32
	variable bool
	sparse   bool // writes an (empty) SparsityParameters table
}

type tOp struct {
	code    uint32
	in, out []int32
	optType schema.BuiltinOptions
	opt     func(b *flatbuffers.Builder) flatbuffers.UOffsetT // builds the options table
}

type tModel struct {
	version   uint32
	codes     []tCode
	tensors   []tTensor
	buffers   [][]byte // buffer 0 should be empty
	ops       []tOp
	inputs    []int32
	outputs   []int32
	ident     string // file identifier; "TFL3" when empty
	subgraphs int    // extra empty subgraphs
}

func int32Vec(b *flatbuffers.Builder, v []int32) flatbuffers.UOffsetT {
	b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependInt32(v[i])
	}
	return b.EndVector(len(v))
}

func tableVec(b *flatbuffers.Builder, offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	b.StartVector(4, len(offs), 4)
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

func (m tModel) bytes() []byte {
	b := flatbuffers.NewBuilder(1024)
	// Buffers.
	var bufs []flatbuffers.UOffsetT
	for _, d := range m.buffers {
		var data flatbuffers.UOffsetT
		if d != nil {
			b.StartVector(1, len(d), 16)
			for i := len(d) - 1; i >= 0; i-- {
				b.PrependByte(d[i])
			}
			data = b.EndVector(len(d))
		}
		b.StartObject(3)
		if d != nil {
			b.PrependUOffsetTSlot(schema.BufferData, data, 0)
		}
		bufs = append(bufs, b.EndObject())
	}
	// Tensors.
	var tens []flatbuffers.UOffsetT
	for _, t := range m.tensors {
		name := b.CreateString(t.name)
		shape := int32Vec(b, t.shape)
		var q flatbuffers.UOffsetT
		if t.scale != nil || t.zp != nil {
			b.StartVector(4, len(t.scale), 4)
			for i := len(t.scale) - 1; i >= 0; i-- {
				b.PrependFloat32(t.scale[i])
			}
			sc := b.EndVector(len(t.scale))
			b.StartVector(8, len(t.zp), 8)
			for i := len(t.zp) - 1; i >= 0; i-- {
				b.PrependInt64(t.zp[i])
			}
			zp := b.EndVector(len(t.zp))
			b.StartObject(7)
			b.PrependUOffsetTSlot(schema.QuantScale, sc, 0)
			b.PrependUOffsetTSlot(schema.QuantZeroPoint, zp, 0)
			b.PrependInt32Slot(schema.QuantQuantizedDimension, t.qdim, 0)
			q = b.EndObject()
		}
		var sp flatbuffers.UOffsetT
		if t.sparse {
			b.StartObject(3)
			sp = b.EndObject()
		}
		b.StartObject(10)
		b.PrependUOffsetTSlot(schema.TensorShape, shape, 0)
		b.PrependInt8Slot(schema.TensorType_, int8(t.typ), 0)
		b.PrependUint32Slot(schema.TensorBuffer, t.buffer, 0)
		b.PrependUOffsetTSlot(schema.TensorName, name, 0)
		if q != 0 {
			b.PrependUOffsetTSlot(schema.TensorQuantization, q, 0)
		}
		b.PrependBoolSlot(schema.TensorIsVariable, t.variable, false)
		if sp != 0 {
			b.PrependUOffsetTSlot(schema.TensorSparsity, sp, 0)
		}
		tens = append(tens, b.EndObject())
	}
	// Operators.
	var ops []flatbuffers.UOffsetT
	for _, o := range m.ops {
		in, out := int32Vec(b, o.in), int32Vec(b, o.out)
		var opt flatbuffers.UOffsetT
		if o.opt != nil {
			opt = o.opt(b)
		}
		b.StartObject(13)
		b.PrependUint32Slot(schema.OperatorOpcodeIndex, o.code, 0)
		b.PrependUOffsetTSlot(schema.OperatorInputs, in, 0)
		b.PrependUOffsetTSlot(schema.OperatorOutputs, out, 0)
		if o.opt != nil {
			b.PrependUint8Slot(schema.OperatorBuiltinOptionsType, uint8(o.optType), 0)
			b.PrependUOffsetTSlot(schema.OperatorBuiltinOptions, opt, 0)
		}
		ops = append(ops, b.EndObject())
	}
	tv, ov := tableVec(b, tens), tableVec(b, ops)
	iv, outv := int32Vec(b, m.inputs), int32Vec(b, m.outputs)
	b.StartObject(5)
	b.PrependUOffsetTSlot(schema.SubGraphTensors, tv, 0)
	b.PrependUOffsetTSlot(schema.SubGraphInputs, iv, 0)
	b.PrependUOffsetTSlot(schema.SubGraphOutputs, outv, 0)
	b.PrependUOffsetTSlot(schema.SubGraphOperators, ov, 0)
	sgs := []flatbuffers.UOffsetT{b.EndObject()}
	for i := 0; i < m.subgraphs; i++ {
		b.StartObject(5)
		sgs = append(sgs, b.EndObject())
	}
	// Operator codes.
	var codes []flatbuffers.UOffsetT
	for _, c := range m.codes {
		var cs flatbuffers.UOffsetT
		if c.custom != "" {
			cs = b.CreateString(c.custom)
		}
		b.StartObject(4)
		b.PrependInt8Slot(schema.OperatorCodeDeprecatedBuiltinCode, int8(min(c.op, 127)), 0)
		if cs != 0 {
			b.PrependUOffsetTSlot(schema.OperatorCodeCustomCode, cs, 0)
		}
		b.PrependInt32Slot(schema.OperatorCodeVersion, c.version, 1)
		b.PrependInt32Slot(schema.OperatorCodeBuiltinCode, int32(c.op), 0)
		codes = append(codes, b.EndObject())
	}
	cv, sv, bv := tableVec(b, codes), tableVec(b, sgs), tableVec(b, bufs)
	b.StartObject(8)
	v := m.version
	if v == 0 {
		v = schema.Version
	}
	b.PrependUint32Slot(schema.ModelVersion, v, 0)
	b.PrependUOffsetTSlot(schema.ModelOperatorCodes, cv, 0)
	b.PrependUOffsetTSlot(schema.ModelSubgraphs, sv, 0)
	b.PrependUOffsetTSlot(schema.ModelBuffers, bv, 0)
	root := b.EndObject()
	id := m.ident
	if id == "" {
		id = schema.FileIdentifier
	}
	b.FinishWithFileIdentifier(root, []byte(id))
	return b.FinishedBytes()
}
