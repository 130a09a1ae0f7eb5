// Package tensor defines the tensors the interpreter computes on: element type, shape,
// quantization parameters and a byte view into memory owned by someone else (an interpreter
// arena or a model's constant block). It uses only the standard library.
package tensor

import (
	"fmt"
	"unsafe"
)

// DType is the element type of a tensor. The values are Outpost's own; String returns the names
// the TFLite oracle prints ("float32", "int8", …).
type DType uint8

const (
	Invalid DType = iota
	Float32
	Float16
	Float64
	Int4
	Int8
	Uint8
	Int16
	Uint16
	Int32
	Uint32
	Int64
	Uint64
	Bool
	String
	Complex64
	Complex128
	Resource
	Variant
)

var dtypeNames = [...]string{"invalid", "float32", "float16", "float64", "int4", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool", "string", "complex64", "complex128", "resource", "variant"}

// String returns the lower-case type name, e.g. "float32".
func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the size of one element in bytes, or 0 for types without a fixed element size
// (string, resource, variant, int4 which packs two elements per byte).
func (d DType) Size() int {
	switch d {
	case Int8, Uint8, Bool:
		return 1
	case Int16, Uint16, Float16:
		return 2
	case Float32, Int32, Uint32:
		return 4
	case Float64, Int64, Uint64, Complex64:
		return 8
	case Complex128:
		return 16
	}
	return 0
}

// Quant holds affine quantization parameters: real = Scale * (q - ZeroPoint). With one entry it
// is per-tensor; with more, entry i applies to index i along dimension Dim (per-channel).
type Quant struct {
	Scale     []float32
	ZeroPoint []int64
	Dim       int
}

// PerChannel reports whether q has more than one scale.
func (q *Quant) PerChannel() bool { return q != nil && len(q.Scale) > 1 }

// Tensor is a typed, shaped view of bytes. The bytes belong to the interpreter arena or the
// model's constants; a Tensor never allocates them. Data is little-endian, as in .tflite files,
// and the typed views (Float32, Int8, …) assume a little-endian host, which every target of
// Outpost (amd64, arm, arm64) is.
type Tensor struct {
	name     string
	dtype    DType
	shape    []int
	quant    *Quant
	data     []byte
	constant bool
	variable bool
}

// New returns a tensor without data; the owner attaches memory with SetData.
func New(name string, dtype DType, shape []int, q *Quant) *Tensor {
	return &Tensor{name: name, dtype: dtype, shape: append([]int(nil), shape...), quant: q}
}

func (t *Tensor) Name() string   { return t.name }
func (t *Tensor) DType() DType   { return t.dtype }
func (t *Tensor) Shape() []int   { return t.shape }
func (t *Tensor) Quant() *Quant  { return t.quant }
func (t *Tensor) Rank() int      { return len(t.shape) }
func (t *Tensor) Bytes() []byte  { return t.data }
func (t *Tensor) Constant() bool { return t.constant }
func (t *Tensor) Variable() bool { return t.variable }

// Dim returns the size of dimension i; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// SetConstant and SetVariable record the tensor's role; the interpreter sets them.
func (t *Tensor) SetConstant(c bool) { t.constant = c }
func (t *Tensor) SetVariable(v bool) { t.variable = v }

// SetShape replaces the shape. Kernels call it only in Prepare, before memory is planned.
func (t *Tensor) SetShape(shape []int) { t.shape = append(t.shape[:0], shape...) }

// SetData attaches memory. It must be aligned for the element type and hold at least ByteSize
// bytes; the typed views rely on that.
func (t *Tensor) SetData(b []byte) { t.data = b }

// NumElements is the product of the dimensions (1 for a scalar). It returns -1 when a dimension
// is negative or the product overflows an int.
func (t *Tensor) NumElements() int { return NumElements(t.shape) }

// ByteSize is the number of bytes the tensor's elements occupy, or -1 if unknown or overflowing.
func (t *Tensor) ByteSize() int { return ByteSize(t.dtype, t.shape) }

// NumElements is the product of shape, or -1 if a dimension is negative or it overflows.
func NumElements(shape []int) int {
	const maxInt = int(^uint(0) >> 1)
	n := 1
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		if d != 0 && n > maxInt/d {
			return -1
		}
		n *= d
	}
	return n
}

// ByteSize is the storage size of a dense tensor of dtype and shape, or -1 if the dtype has no
// fixed size or the size overflows. int4 packs two elements per byte.
func ByteSize(dtype DType, shape []int) int {
	n := NumElements(shape)
	if n < 0 {
		return -1
	}
	if dtype == Int4 {
		return (n + 1) / 2
	}
	s := dtype.Size()
	if s == 0 {
		return -1
	}
	const maxInt = int(^uint(0) >> 1)
	if n > maxInt/s {
		return -1
	}
	return n * s
}

// view reinterprets the tensor bytes as n elements of E when the dtype matches.
func view[E any](t *Tensor, want DType) []E {
	if t == nil || t.dtype != want || len(t.data) == 0 {
		return nil
	}
	var zero E
	n := len(t.data) / int(unsafe.Sizeof(zero))
	if ne := t.NumElements(); ne >= 0 && ne < n {
		n = ne
	}
	return unsafe.Slice((*E)(unsafe.Pointer(unsafe.SliceData(t.data))), n)
}

// Typed views of the tensor's memory (no copy). Each returns nil when the dtype differs or the
// tensor has no memory attached.
func (t *Tensor) Float32() []float32 { return view[float32](t, Float32) }
func (t *Tensor) Float64() []float64 { return view[float64](t, Float64) }
func (t *Tensor) Int8() []int8       { return view[int8](t, Int8) }
func (t *Tensor) Uint8() []uint8     { return view[uint8](t, Uint8) }
func (t *Tensor) Int16() []int16     { return view[int16](t, Int16) }
func (t *Tensor) Uint16() []uint16   { return view[uint16](t, Uint16) }
func (t *Tensor) Int32() []int32     { return view[int32](t, Int32) }
func (t *Tensor) Uint32() []uint32   { return view[uint32](t, Uint32) }
func (t *Tensor) Int64() []int64     { return view[int64](t, Int64) }
func (t *Tensor) Uint64() []uint64   { return view[uint64](t, Uint64) }

// Bool views bool tensors as bytes (0 or 1), TFLite's bool representation.
func (t *Tensor) Bool() []uint8 { return view[uint8](t, Bool) }

// String describes the tensor briefly, e.g. `float32[1,10] "logits"`.
func (t *Tensor) String() string {
	return fmt.Sprintf("%s%v %q", t.dtype, t.shape, t.name)
}
