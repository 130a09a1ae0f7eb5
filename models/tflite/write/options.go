package write

import (
	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Options is an operator's builtin_options: anything that can describe itself as a Table.
// The named option structs below cover common ops; any other op's options table can be
// written directly as a Table with the field slots from schema.fbs.
type Options interface {
	Table() Table
}

// Table is a builtin options table: the union tag and the fields to write. Fields left out
// read as their schema default.
type Table struct {
	Type   schema.BuiltinOptions
	Fields []Field
}

// Table returns t itself, so a Table is an Options.
func (t Table) Table() Table { return t }

// Empty is the options table of an op whose options table has no fields (e.g. TRANSPOSE).
func Empty(tag schema.BuiltinOptions) Table { return Table{Type: tag} }

type fieldKind uint8

const (
	kindInt8 fieldKind = iota
	kindBool
	kindInt32
	kindFloat32
	kindInt32s
)

// Field is one field of an options table, at the slot number schema.fbs gives it (the
// field's position in the table, counting from 0).
type Field struct {
	Slot int
	kind fieldKind
	i    int32
	f    float32
	ints []int32
}

// Int8Field is a byte-sized field: enums such as Padding, ActivationFunctionType, TensorType.
func Int8Field(slot int, v int8) Field { return Field{Slot: slot, kind: kindInt8, i: int32(v)} }

// BoolField is a bool field.
func BoolField(slot int, v bool) Field {
	f := Field{Slot: slot, kind: kindBool}
	if v {
		f.i = 1
	}
	return f
}

// Int32Field is an int field.
func Int32Field(slot int, v int32) Field { return Field{Slot: slot, kind: kindInt32, i: v} }

// Float32Field is a float field.
func Float32Field(slot int, v float32) Field { return Field{Slot: slot, kind: kindFloat32, f: v} }

// Int32sField is an [int] vector field.
func Int32sField(slot int, v []int32) Field {
	return Field{Slot: slot, kind: kindInt32s, ints: append([]int32(nil), v...)}
}

func (t Table) build(b *flatbuffers.Builder) flatbuffers.UOffsetT {
	// Vectors must be finished before the table that refers to them is started.
	vecs := make([]flatbuffers.UOffsetT, len(t.Fields))
	slots := 0
	for i, f := range t.Fields {
		if f.kind == kindInt32s {
			vecs[i] = int32Vector(b, f.ints)
		}
		slots = max(slots, f.Slot+1)
	}
	b.StartObject(slots)
	for i, f := range t.Fields {
		switch f.kind {
		case kindInt8:
			b.PrependInt8(int8(f.i))
		case kindBool:
			b.PrependBool(f.i != 0)
		case kindInt32:
			b.PrependInt32(f.i)
		case kindFloat32:
			b.PrependFloat32(f.f)
		case kindInt32s:
			b.PrependUOffsetT(vecs[i])
		}
		b.Slot(f.Slot)
	}
	return b.EndObject()
}

// fields collects fields, leaving out zero values, which are the schema default for every
// field written through it (non-zero defaults are handled by the callers).
type fields []Field

func (fs *fields) int8(slot int, v int8) {
	if v != 0 {
		*fs = append(*fs, Int8Field(slot, v))
	}
}

func (fs *fields) bool(slot int, v bool) {
	if v {
		*fs = append(*fs, BoolField(slot, v))
	}
}

func (fs *fields) int32(slot int, v int32) {
	if v != 0 {
		*fs = append(*fs, Int32Field(slot, v))
	}
}

func (fs *fields) float32(slot int, v float32) {
	if v != 0 {
		*fs = append(*fs, Float32Field(slot, v))
	}
}

// dilation writes a dilation factor, whose schema default is 1; 0 in Go means "default".
func (fs *fields) dilation(slot int, v int32) {
	if v != 0 && v != 1 {
		*fs = append(*fs, Int32Field(slot, v))
	}
}

// FullyConnectedOptions is FullyConnectedOptions (FULLY_CONNECTED).
type FullyConnectedOptions struct {
	Activation               schema.Activation
	KeepNumDims              bool // version 5+
	AsymmetricQuantizeInputs bool
}

// Table implements Options.
func (o FullyConnectedOptions) Table() Table {
	var fs fields
	fs.int8(0, int8(o.Activation))
	fs.bool(2, o.KeepNumDims)
	fs.bool(3, o.AsymmetricQuantizeInputs)
	return Table{Type: schema.BuiltinOptionsFullyConnected, Fields: fs}
}

// SoftmaxOptions is SoftmaxOptions (SOFTMAX). TFLite converters write Beta 1.
type SoftmaxOptions struct{ Beta float32 }

// Table implements Options.
func (o SoftmaxOptions) Table() Table {
	var fs fields
	fs.float32(0, o.Beta)
	return Table{Type: schema.BuiltinOptionsSoftmax, Fields: fs}
}

// ReshapeOptions is ReshapeOptions (RESHAPE). NewShape nil leaves the field out (the shape
// then comes from the second input).
type ReshapeOptions struct{ NewShape []int32 }

// Table implements Options.
func (o ReshapeOptions) Table() Table {
	t := Table{Type: schema.BuiltinOptionsReshape}
	if o.NewShape != nil {
		t.Fields = []Field{Int32sField(0, o.NewShape)}
	}
	return t
}

// Conv2DOptions is Conv2DOptions (CONV_2D). Dilation 0 means the schema default 1.
type Conv2DOptions struct {
	Padding              schema.Padding
	StrideW, StrideH     int32
	Activation           schema.Activation
	DilationW, DilationH int32
}

// Table implements Options.
func (o Conv2DOptions) Table() Table {
	var fs fields
	fs.int8(0, int8(o.Padding))
	fs.int32(1, o.StrideW)
	fs.int32(2, o.StrideH)
	fs.int8(3, int8(o.Activation))
	fs.dilation(4, o.DilationW)
	fs.dilation(5, o.DilationH)
	return Table{Type: schema.BuiltinOptionsConv2D, Fields: fs}
}

// DepthwiseConv2DOptions is DepthwiseConv2DOptions (DEPTHWISE_CONV_2D).
type DepthwiseConv2DOptions struct {
	Padding              schema.Padding
	StrideW, StrideH     int32
	DepthMultiplier      int32
	Activation           schema.Activation
	DilationW, DilationH int32
}

// Table implements Options.
func (o DepthwiseConv2DOptions) Table() Table {
	var fs fields
	fs.int8(0, int8(o.Padding))
	fs.int32(1, o.StrideW)
	fs.int32(2, o.StrideH)
	fs.int32(3, o.DepthMultiplier)
	fs.int8(4, int8(o.Activation))
	fs.dilation(5, o.DilationW)
	fs.dilation(6, o.DilationH)
	return Table{Type: schema.BuiltinOptionsDepthwiseConv2D, Fields: fs}
}

// TransposeConvOptions is TransposeConvOptions (TRANSPOSE_CONV).
type TransposeConvOptions struct {
	Padding          schema.Padding
	StrideW, StrideH int32
	Activation       schema.Activation
}

// Table implements Options.
func (o TransposeConvOptions) Table() Table {
	var fs fields
	fs.int8(0, int8(o.Padding))
	fs.int32(1, o.StrideW)
	fs.int32(2, o.StrideH)
	fs.int8(3, int8(o.Activation))
	return Table{Type: schema.BuiltinOptionsTransposeConv, Fields: fs}
}

// Pool2DOptions is Pool2DOptions (AVERAGE_POOL_2D, MAX_POOL_2D, L2_POOL_2D).
type Pool2DOptions struct {
	Padding                   schema.Padding
	StrideW, StrideH          int32
	FilterWidth, FilterHeight int32
	Activation                schema.Activation
}

// Table implements Options.
func (o Pool2DOptions) Table() Table {
	var fs fields
	fs.int8(0, int8(o.Padding))
	fs.int32(1, o.StrideW)
	fs.int32(2, o.StrideH)
	fs.int32(3, o.FilterWidth)
	fs.int32(4, o.FilterHeight)
	fs.int8(5, int8(o.Activation))
	return Table{Type: schema.BuiltinOptionsPool2D, Fields: fs}
}

// ActivationOptions is the options table of the element-wise ops whose only field (slot 0)
// is a fused activation: ADD, SUB, MUL, DIV, L2_NORMALIZATION. Op picks the union tag.
// ADD's and SUB's pot_scale_int16 keep their default (true).
type ActivationOptions struct {
	Op         schema.BuiltinOptions
	Activation schema.Activation
}

// Table implements Options.
func (o ActivationOptions) Table() Table {
	var fs fields
	fs.int8(0, int8(o.Activation))
	return Table{Type: o.Op, Fields: fs}
}

// AddOptions returns the options of ADD with a fused activation.
func AddOptions(a schema.Activation) ActivationOptions {
	return ActivationOptions{Op: schema.BuiltinOptionsAdd, Activation: a}
}

// SubOptions returns the options of SUB with a fused activation.
func SubOptions(a schema.Activation) ActivationOptions {
	return ActivationOptions{Op: schema.BuiltinOptionsSub, Activation: a}
}

// MulOptions returns the options of MUL with a fused activation.
func MulOptions(a schema.Activation) ActivationOptions {
	return ActivationOptions{Op: schema.BuiltinOptionsMul, Activation: a}
}

// DivOptions returns the options of DIV with a fused activation.
func DivOptions(a schema.Activation) ActivationOptions {
	return ActivationOptions{Op: schema.BuiltinOptionsDiv, Activation: a}
}

// ConcatenationOptions is ConcatenationOptions (CONCATENATION).
type ConcatenationOptions struct {
	Axis       int32
	Activation schema.Activation
}

// Table implements Options.
func (o ConcatenationOptions) Table() Table {
	var fs fields
	fs.int32(0, o.Axis)
	fs.int8(1, int8(o.Activation))
	return Table{Type: schema.BuiltinOptionsConcatenation, Fields: fs}
}

// ReducerOptions is ReducerOptions (MEAN, SUM, REDUCE_MAX, REDUCE_MIN, REDUCE_PROD, ...).
type ReducerOptions struct{ KeepDims bool }

// Table implements Options.
func (o ReducerOptions) Table() Table {
	var fs fields
	fs.bool(0, o.KeepDims)
	return Table{Type: schema.BuiltinOptionsReducer, Fields: fs}
}

// SqueezeOptions is SqueezeOptions (SQUEEZE).
type SqueezeOptions struct{ Dims []int32 }

// Table implements Options.
func (o SqueezeOptions) Table() Table {
	t := Table{Type: schema.BuiltinOptionsSqueeze}
	if o.Dims != nil {
		t.Fields = []Field{Int32sField(0, o.Dims)}
	}
	return t
}

// StridedSliceOptions is StridedSliceOptions (STRIDED_SLICE).
type StridedSliceOptions struct {
	BeginMask, EndMask, EllipsisMask, NewAxisMask, ShrinkAxisMask int32
}

// Table implements Options.
func (o StridedSliceOptions) Table() Table {
	var fs fields
	fs.int32(0, o.BeginMask)
	fs.int32(1, o.EndMask)
	fs.int32(2, o.EllipsisMask)
	fs.int32(3, o.NewAxisMask)
	fs.int32(4, o.ShrinkAxisMask)
	return Table{Type: schema.BuiltinOptionsStridedSlice, Fields: fs}
}

// GatherOptions is GatherOptions (GATHER).
type GatherOptions struct{ Axis, BatchDims int32 }

// Table implements Options.
func (o GatherOptions) Table() Table {
	var fs fields
	fs.int32(0, o.Axis)
	fs.int32(1, o.BatchDims)
	return Table{Type: schema.BuiltinOptionsGather, Fields: fs}
}

// PackOptions is PackOptions (PACK).
type PackOptions struct{ ValuesCount, Axis int32 }

// Table implements Options.
func (o PackOptions) Table() Table {
	var fs fields
	fs.int32(0, o.ValuesCount)
	fs.int32(1, o.Axis)
	return Table{Type: schema.BuiltinOptionsPack, Fields: fs}
}

// SplitOptions is SplitOptions (SPLIT).
type SplitOptions struct{ NumSplits int32 }

// Table implements Options.
func (o SplitOptions) Table() Table {
	var fs fields
	fs.int32(0, o.NumSplits)
	return Table{Type: schema.BuiltinOptionsSplit, Fields: fs}
}

// LeakyReluOptions is LeakyReluOptions (LEAKY_RELU).
type LeakyReluOptions struct{ Alpha float32 }

// Table implements Options.
func (o LeakyReluOptions) Table() Table {
	var fs fields
	fs.float32(0, o.Alpha)
	return Table{Type: schema.BuiltinOptionsLeakyRelu, Fields: fs}
}

// ArgMaxOptions is ArgMaxOptions (ARG_MAX); OutputType is INT32 or INT64.
type ArgMaxOptions struct{ OutputType schema.TensorType }

// Table implements Options.
func (o ArgMaxOptions) Table() Table {
	var fs fields
	fs.int8(0, int8(o.OutputType))
	return Table{Type: schema.BuiltinOptionsArgMax, Fields: fs}
}

// ResizeOptions is the options of RESIZE_BILINEAR (Op BuiltinOptionsResizeBilinear) and
// RESIZE_NEAREST_NEIGHBOR (Op BuiltinOptionsResizeNearestNeighbor).
type ResizeOptions struct {
	Op                             schema.BuiltinOptions
	AlignCorners, HalfPixelCenters bool
}

// Table implements Options.
func (o ResizeOptions) Table() Table {
	var fs fields
	base := 0
	if o.Op == schema.BuiltinOptionsResizeBilinear {
		base = 2 // slots 0 and 1 are the deprecated new_height/new_width
	}
	fs.bool(base, o.AlignCorners)
	fs.bool(base+1, o.HalfPixelCenters)
	return Table{Type: o.Op, Fields: fs}
}

// BlockSizeOptions is the options of SPACE_TO_DEPTH and DEPTH_TO_SPACE (block_size, slot 0).
type BlockSizeOptions struct {
	Op        schema.BuiltinOptions
	BlockSize int32
}

// Table implements Options.
func (o BlockSizeOptions) Table() Table {
	var fs fields
	fs.int32(0, o.BlockSize)
	return Table{Type: o.Op, Fields: fs}
}
