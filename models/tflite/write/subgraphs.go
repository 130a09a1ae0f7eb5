package write

import (
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Options of the sequence, matrix, control-flow and resource ops. A model already holds any
// number of subgraphs (Model.Subgraph); these builders let IF, WHILE and CALL_ONCE name them.

// IfOptions is IfOptions (IF): the subgraphs run when the condition is true or false.
type IfOptions struct{ Then, Else int32 }

// Table implements Options.
func (o IfOptions) Table() Table {
	return Table{Type: schema.BuiltinOptionsIf, Fields: []Field{Int32Field(0, o.Then), Int32Field(1, o.Else)}}
}

// WhileOptions is WhileOptions (WHILE): the condition and body subgraphs.
type WhileOptions struct{ Cond, Body int32 }

// Table implements Options.
func (o WhileOptions) Table() Table {
	return Table{Type: schema.BuiltinOptionsWhile, Fields: []Field{Int32Field(0, o.Cond), Int32Field(1, o.Body)}}
}

// CallOnceOptions is CallOnceOptions (CALL_ONCE): the initialisation subgraph.
type CallOnceOptions struct{ Init int32 }

// Table implements Options.
func (o CallOnceOptions) Table() Table {
	return Table{Type: schema.BuiltinOptionsCallOnce, Fields: []Field{Int32Field(0, o.Init)}}
}

// BatchMatMulOptions is BatchMatMulOptions (BATCH_MATMUL).
type BatchMatMulOptions struct{ AdjX, AdjY, AsymmetricQuantizeInputs bool }

// Table implements Options.
func (o BatchMatMulOptions) Table() Table {
	var fs fields
	fs.bool(0, o.AdjX)
	fs.bool(1, o.AdjY)
	fs.bool(2, o.AsymmetricQuantizeInputs)
	return Table{Type: schema.BuiltinOptionsBatchMatMul, Fields: fs}
}

// SVDFOptions is SVDFOptions (SVDF).
type SVDFOptions struct {
	Rank                     int32
	Activation               schema.Activation
	AsymmetricQuantizeInputs bool // hybrid (float32 input, int8 weights) only
}

// Table implements Options.
func (o SVDFOptions) Table() Table {
	var fs fields
	fs.int32(0, o.Rank)
	fs.int8(1, int8(o.Activation))
	fs.bool(2, o.AsymmetricQuantizeInputs)
	return Table{Type: schema.BuiltinOptionsSVDF, Fields: fs}
}

// UnidirectionalSequenceLSTMOptions is UnidirectionalSequenceLSTMOptions.
type UnidirectionalSequenceLSTMOptions struct {
	Activation schema.Activation
	CellClip   float32
	TimeMajor  bool
	// AsymmetricQuantizeInputs: hybrid (float32 input, int8 weights) only.
	AsymmetricQuantizeInputs bool
}

// Table implements Options.
func (o UnidirectionalSequenceLSTMOptions) Table() Table {
	var fs fields
	fs.int8(0, int8(o.Activation))
	fs.float32(1, o.CellClip)
	fs.bool(3, o.TimeMajor)
	fs.bool(4, o.AsymmetricQuantizeInputs)
	return Table{Type: schema.BuiltinOptionsUnidirectionalSequenceLSTM, Fields: fs}
}

// VarHandleOptions is VarHandleOptions (VAR_HANDLE): handles with the same container and
// shared_name refer to the same resource variable.
type VarHandleOptions struct{ Container, SharedName string }

// Table implements Options. The options table builder writes int32 vectors but not strings, so
// each name is written as the int32 vector that has the same bytes as the flatbuffer string: a
// vector's length prefix counts elements, so a name of n bytes becomes n int32s whose first n
// bytes are the name and whose next byte is 0, the terminator strings need. Readers see a
// valid string of length n (the spare padding after the terminator is never read).
func (o VarHandleOptions) Table() Table {
	var fs []Field
	for slot, s := range []string{o.Container, o.SharedName} {
		if s != "" {
			fs = append(fs, Int32sField(slot, stringAsInt32s(s)))
		}
	}
	return Table{Type: schema.BuiltinOptionsVarHandle, Fields: fs}
}

func stringAsInt32s(s string) []int32 {
	b := make([]byte, 4*len(s)) // zeroed: b[len(s)] is the terminator
	copy(b, s)
	v := make([]int32, len(s))
	for i := range v {
		v[i] = int32(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
	}
	return v
}
