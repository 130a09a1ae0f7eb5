package tflite

import (
	"errors"
	"fmt"
	"math"

	flatbuffers "github.com/google/flatbuffers/go"
)

// The flatbuffers Go runtime trusts its input and panics on bad offsets. table checks every
// offset, vtable and vector against the buffer before handing a position to flatbuffers.Table,
// so a corrupt file becomes an error instead of a panic.

var errTruncated = errors.New("offset out of range")

type table struct {
	t     flatbuffers.Table
	vtLen uint32 // vtable length in bytes
	size  uint32 // inline table size in bytes
}

func inRange(buf []byte, pos, n uint64) bool {
	return pos <= uint64(len(buf)) && n <= uint64(len(buf))-pos
}

// tableAt validates the table whose first byte (its soffset to the vtable) is at pos.
func tableAt(buf []byte, pos uint32) (table, error) {
	if !inRange(buf, uint64(pos), 4) {
		return table{}, fmt.Errorf("table at %d: %w", pos, errTruncated)
	}
	so := int64(flatbuffers.GetInt32(buf[pos:]))
	vt := int64(pos) - so
	if vt < 0 || !inRange(buf, uint64(vt), 4) {
		return table{}, fmt.Errorf("table at %d: vtable %w", pos, errTruncated)
	}
	vtLen := uint32(flatbuffers.GetUint16(buf[vt:]))
	size := uint32(flatbuffers.GetUint16(buf[vt+2:]))
	if vtLen < 4 || vtLen%2 != 0 || !inRange(buf, uint64(vt), uint64(vtLen)) {
		return table{}, fmt.Errorf("table at %d: bad vtable length %d", pos, vtLen)
	}
	if size < 4 || !inRange(buf, uint64(pos), uint64(size)) {
		return table{}, fmt.Errorf("table at %d: bad table size %d", pos, size)
	}
	return table{t: flatbuffers.Table{Bytes: buf, Pos: flatbuffers.UOffsetT(pos)}, vtLen: vtLen, size: size}, nil
}

// field returns the position of slot's inline field of width n, or 0 if absent or if it does
// not fit inside the table (treated as an error by the caller through ok=false).
func (tb table) field(slot int, n uint32) (pos uint32, present bool, err error) {
	vo := uint32(4 + 2*slot)
	if vo+2 > tb.vtLen {
		return 0, false, nil
	}
	o := uint32(tb.t.Offset(flatbuffers.VOffsetT(vo)))
	if o == 0 {
		return 0, false, nil
	}
	if o+n > tb.size {
		return 0, false, fmt.Errorf("field %d: %w", slot, errTruncated)
	}
	return uint32(tb.t.Pos) + o, true, nil
}

func (tb table) u8(slot int, def uint8) (uint8, error) {
	p, ok, err := tb.field(slot, 1)
	if !ok {
		return def, err
	}
	return tb.t.Bytes[p], nil
}

func (tb table) i8(slot int, def int8) (int8, error) {
	v, err := tb.u8(slot, uint8(def))
	return int8(v), err
}

func (tb table) boolean(slot int) (bool, error) {
	v, err := tb.u8(slot, 0)
	return v != 0, err
}

func (tb table) i32(slot int, def int32) (int32, error) {
	p, ok, err := tb.field(slot, 4)
	if !ok {
		return def, err
	}
	return tb.t.GetInt32(flatbuffers.UOffsetT(p)), nil
}

func (tb table) u32(slot int, def uint32) (uint32, error) {
	p, ok, err := tb.field(slot, 4)
	if !ok {
		return def, err
	}
	return tb.t.GetUint32(flatbuffers.UOffsetT(p)), nil
}

func (tb table) u64(slot int, def uint64) (uint64, error) {
	p, ok, err := tb.field(slot, 8)
	if !ok {
		return def, err
	}
	return tb.t.GetUint64(flatbuffers.UOffsetT(p)), nil
}

func (tb table) f32(slot int, def float32) (float32, error) {
	p, ok, err := tb.field(slot, 4)
	if !ok {
		return def, err
	}
	return tb.t.GetFloat32(flatbuffers.UOffsetT(p)), nil
}

// ref follows the uoffset stored in slot; present=false when the field is absent.
func (tb table) ref(slot int) (target uint32, present bool, err error) {
	p, ok, err := tb.field(slot, 4)
	if !ok {
		return 0, false, err
	}
	t := uint64(p) + uint64(flatbuffers.GetUint32(tb.t.Bytes[p:]))
	if t >= uint64(len(tb.t.Bytes)) {
		return 0, false, fmt.Errorf("field %d: %w", slot, errTruncated)
	}
	return uint32(t), true, nil
}

// vector returns the start and length of the vector in slot with elements of elem bytes.
func (tb table) vector(slot int, elem uint32) (start, n uint32, err error) {
	t, ok, err := tb.ref(slot)
	if !ok {
		return 0, 0, err
	}
	buf := tb.t.Bytes
	if !inRange(buf, uint64(t), 4) {
		return 0, 0, fmt.Errorf("vector field %d: %w", slot, errTruncated)
	}
	n = flatbuffers.GetUint32(buf[t:])
	if !inRange(buf, uint64(t)+4, uint64(n)*uint64(elem)) {
		return 0, 0, fmt.Errorf("vector field %d of %d elements: %w", slot, n, errTruncated)
	}
	return t + 4, n, nil
}

func (tb table) bytes(slot int) ([]byte, error) {
	s, n, err := tb.vector(slot, 1)
	if err != nil || n == 0 {
		return nil, err
	}
	return tb.t.Bytes[s : s+n : s+n], nil
}

func (tb table) str(slot int) (string, error) {
	b, err := tb.bytes(slot)
	return string(b), err
}

func (tb table) int32s(slot int) ([]int32, error) {
	s, n, err := tb.vector(slot, 4)
	if err != nil {
		return nil, err
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = flatbuffers.GetInt32(tb.t.Bytes[s+4*uint32(i):])
	}
	return out, nil
}

func (tb table) int64s(slot int) ([]int64, error) {
	s, n, err := tb.vector(slot, 8)
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = flatbuffers.GetInt64(tb.t.Bytes[s+8*uint32(i):])
	}
	return out, nil
}

func (tb table) float32s(slot int) ([]float32, error) {
	s, n, err := tb.vector(slot, 4)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(flatbuffers.GetUint32(tb.t.Bytes[s+4*uint32(i):]))
	}
	return out, nil
}

// sub returns the table in slot; present=false when absent.
func (tb table) sub(slot int) (table, bool, error) {
	t, ok, err := tb.ref(slot)
	if !ok {
		return table{}, false, err
	}
	st, err := tableAt(tb.t.Bytes, t)
	return st, err == nil, err
}

// tables returns the tables of a vector of tables in slot.
func (tb table) tables(slot int) ([]table, error) {
	s, n, err := tb.vector(slot, 4)
	if err != nil {
		return nil, err
	}
	buf := tb.t.Bytes
	out := make([]table, n)
	for i := range out {
		p := s + 4*uint32(i)
		t := uint64(p) + uint64(flatbuffers.GetUint32(buf[p:]))
		if t >= uint64(len(buf)) {
			return nil, fmt.Errorf("element %d of vector field %d: %w", i, slot, errTruncated)
		}
		if out[i], err = tableAt(buf, uint32(t)); err != nil {
			return nil, fmt.Errorf("element %d of vector field %d: %w", i, slot, err)
		}
	}
	return out, nil
}
