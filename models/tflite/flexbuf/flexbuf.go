// Package flexbuf reads and writes the small FlexBuffers maps that TFLite custom ops carry as
// their options (custom_options, e.g. TFLite_Detection_PostProcess's max_detections or
// nms_iou_threshold). Only what option maps need: a root map whose values are scalars (int,
// uint, float, bool, null, and their indirect forms); nested vectors, maps, strings and blobs
// are recognised and reported by type but not read.
//
// The reader is bounds-checked everywhere: any bytes give a map or a one-line error, never a
// panic, and it allocates at most in proportion to the input (FuzzDecodeMap holds that). The
// format is Google's FlexBuffers (flatbuffers/flexbuffers.h): the root's byte width is the
// last byte, its packed type the one before; a packed type is type<<2 | log2(byte width);
// offsets point backwards from where they are stored.
package flexbuf

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
)

// Type is a FlexBuffers value type.
type Type uint8

// The FlexBuffers types (flexbuffers.h, enum Type).
const (
	Null         Type = 0
	Int          Type = 1
	Uint         Type = 2
	Float        Type = 3
	Key          Type = 4
	String       Type = 5
	IndirectInt  Type = 6
	IndirectUint Type = 7
	IndirectFlt  Type = 8
	Map          Type = 9
	Vector       Type = 10
	Blob         Type = 25
	Bool         Type = 26
	VectorBool   Type = 36
	maxType      Type = 36
)

// Value is one decoded map value. Scalars carry their number; other types only their Type.
type Value struct {
	Type Type
	i    int64
	u    uint64
	f    float64
}

// IsNull reports whether the value is null (also what a missing key reads as).
func (v Value) IsNull() bool { return v.Type == Null }

// Int converts like flexbuffers' AsInt64: ints and uints as themselves, floats truncated,
// bools 0/1, anything else 0.
func (v Value) Int() int64 {
	switch v.Type {
	case Int, IndirectInt:
		return v.i
	case Uint, IndirectUint, Bool:
		return int64(v.u)
	case Float, IndirectFlt:
		return floatToInt(v.f)
	}
	return 0
}

// Float converts like flexbuffers' AsDouble.
func (v Value) Float() float64 {
	switch v.Type {
	case Int, IndirectInt:
		return float64(v.i)
	case Uint, IndirectUint, Bool:
		return float64(v.u)
	case Float, IndirectFlt:
		return v.f
	}
	return 0
}

// Bool converts like flexbuffers' AsBool: any non-zero scalar is true.
func (v Value) Bool() bool {
	switch v.Type {
	case Int, IndirectInt:
		return v.i != 0
	case Uint, IndirectUint, Bool:
		return v.u != 0
	case Float, IndirectFlt:
		return v.f != 0
	}
	return false
}

// floatToInt truncates toward zero, saturating instead of C++'s undefined behaviour.
func floatToInt(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

// DecodeMap reads a FlexBuffers buffer whose root is a map and returns its entries. Keys that
// occur twice keep their first value.
func DecodeMap(b []byte) (map[string]Value, error) {
	if len(b) < 3 {
		return nil, fmt.Errorf("flexbuffer of %d bytes is too short", len(b))
	}
	rootWidth := int(b[len(b)-1])
	packed := b[len(b)-2]
	if !validWidth(rootWidth) {
		return nil, fmt.Errorf("flexbuffer root byte width %d (want 1, 2, 4 or 8)", rootWidth)
	}
	rootPos := len(b) - 2 - rootWidth
	if rootPos < 0 {
		return nil, fmt.Errorf("flexbuffer root of %d bytes does not fit in %d", rootWidth, len(b))
	}
	typ, width := Type(packed>>2), 1<<(packed&3)
	if typ != Map {
		return nil, fmt.Errorf("flexbuffer root is type %d, want a map (%d)", typ, Map)
	}
	r := reader{b: b}
	mapPos, err := r.indirect(rootPos, rootWidth)
	if err != nil {
		return nil, fmt.Errorf("flexbuffer root map: %w", err)
	}
	// A map is a vector of values preceded by [keys offset, keys byte width, size] and followed
	// by one packed type per value.
	keysField := mapPos - 3*width
	n, err1 := r.uint(mapPos-width, width)
	keysWidth, err2 := r.uint(mapPos-2*width, width)
	keysPos, err3 := r.indirect(keysField, width)
	if err := firstErr(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("flexbuffer map header: %w", err)
	}
	if !validWidth(int(keysWidth)) {
		return nil, fmt.Errorf("flexbuffer map keys byte width %d", keysWidth)
	}
	kw := int(keysWidth)
	if n > uint64(len(b)) || mapPos+int(n)*(width+1) > len(b) {
		return nil, fmt.Errorf("flexbuffer map of %d entries does not fit in %d bytes", n, len(b))
	}
	nk, err := r.uint(keysPos-kw, kw)
	if err != nil {
		return nil, fmt.Errorf("flexbuffer map keys: %w", err)
	}
	if nk != n {
		return nil, fmt.Errorf("flexbuffer map has %d values but %d keys", n, nk)
	}
	if keysPos+int(n)*kw > len(b) {
		return nil, fmt.Errorf("flexbuffer map keys do not fit in %d bytes", len(b))
	}
	out := make(map[string]Value, n)
	types := mapPos + int(n)*width
	for i := 0; i < int(n); i++ {
		kp, err := r.indirect(keysPos+i*kw, kw)
		if err != nil {
			return nil, fmt.Errorf("flexbuffer key %d: %w", i, err)
		}
		key, err := r.cstring(kp)
		if err != nil {
			return nil, fmt.Errorf("flexbuffer key %d: %w", i, err)
		}
		v, err := r.value(mapPos+i*width, width, b[types+i])
		if err != nil {
			return nil, fmt.Errorf("flexbuffer value %q: %w", key, err)
		}
		if _, dup := out[key]; !dup {
			out[key] = v
		}
	}
	return out, nil
}

type reader struct{ b []byte }

func validWidth(w int) bool { return w == 1 || w == 2 || w == 4 || w == 8 }

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// uint reads an unsigned integer of width bytes at pos.
func (r reader) uint(pos, width int) (uint64, error) {
	if pos < 0 || pos+width > len(r.b) || pos+width < pos {
		return 0, fmt.Errorf("read of %d bytes at %d outside the buffer of %d", width, pos, len(r.b))
	}
	p := r.b[pos : pos+width]
	switch width {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.LittleEndian.Uint16(p)), nil
	case 4:
		return uint64(binary.LittleEndian.Uint32(p)), nil
	case 8:
		return binary.LittleEndian.Uint64(p), nil
	}
	return 0, fmt.Errorf("byte width %d", width)
}

// int reads a signed integer of width bytes at pos.
func (r reader) int(pos, width int) (int64, error) {
	u, err := r.uint(pos, width)
	if err != nil {
		return 0, err
	}
	switch width {
	case 1:
		return int64(int8(u)), nil
	case 2:
		return int64(int16(u)), nil
	case 4:
		return int64(int32(u)), nil
	}
	return int64(u), nil
}

// float reads a float of width bytes at pos; as flexbuffers' ReadDouble, widths 1 and 2 are
// read as signed integers.
func (r reader) float(pos, width int) (float64, error) {
	u, err := r.uint(pos, width)
	if err != nil {
		return 0, err
	}
	switch width {
	case 4:
		return float64(math.Float32frombits(uint32(u))), nil
	case 8:
		return math.Float64frombits(u), nil
	}
	i, err := r.int(pos, width)
	return float64(i), err
}

// indirect follows the offset of width bytes stored at pos (it points backwards).
func (r reader) indirect(pos, width int) (int, error) {
	off, err := r.uint(pos, width)
	if err != nil {
		return 0, err
	}
	if off > uint64(pos) {
		return 0, fmt.Errorf("offset %d at %d points before the buffer", off, pos)
	}
	return pos - int(off), nil
}

func (r reader) cstring(pos int) (string, error) {
	if pos < 0 || pos >= len(r.b) {
		return "", fmt.Errorf("string at %d outside the buffer of %d", pos, len(r.b))
	}
	for i := pos; i < len(r.b); i++ {
		if r.b[i] == 0 {
			return string(r.b[pos:i]), nil
		}
	}
	return "", fmt.Errorf("string at %d is not terminated", pos)
}

// value decodes the element stored at pos with its parent's byte width and packed type.
func (r reader) value(pos, parentWidth int, packed byte) (Value, error) {
	typ, width := Type(packed>>2), 1<<(packed&3)
	v := Value{Type: typ}
	var err error
	switch typ {
	case Null:
	case Int:
		v.i, err = r.int(pos, parentWidth)
	case Uint, Bool:
		v.u, err = r.uint(pos, parentWidth)
	case Float:
		v.f, err = r.float(pos, parentWidth)
	case IndirectInt, IndirectUint, IndirectFlt:
		var p int
		if p, err = r.indirect(pos, parentWidth); err != nil {
			break
		}
		switch typ {
		case IndirectInt:
			v.i, err = r.int(p, width)
		case IndirectUint:
			v.u, err = r.uint(p, width)
		default:
			v.f, err = r.float(p, width)
		}
	default:
		if typ > maxType {
			return v, fmt.Errorf("unknown type %d", typ)
		}
		// Strings, vectors, maps, blobs: only their offset is checked.
		_, err = r.indirect(pos, parentWidth)
	}
	return v, err
}

// ---- encoding ----

// Entry is one scalar value of a map to encode: an int64, float64 or bool.
type Entry struct {
	Key   string
	Value any
}

// EncodeMap writes entries as a FlexBuffers map (keys sorted, as FlexBuffers requires) with
// every value at one byte width: 4 bytes (int32, float32) unless an int needs 8, or width is
// set to 1, 2, 4 or 8 (floats of width 1 or 2 are refused: FlexBuffers has none). It is what the
// TFLite converter's flexbuffers::Builder writes for an options map, up to the choice of widths.
func EncodeMap(entries []Entry, width int) ([]byte, error) {
	es := append([]Entry(nil), entries...)
	sort.Slice(es, func(i, j int) bool { return es[i].Key < es[j].Key })
	if width == 0 {
		width = 4
		for _, e := range es {
			if i, ok := e.Value.(int64); ok && (i < math.MinInt32 || i > math.MaxInt32) {
				width = 8
			}
		}
	}
	if !validWidth(width) {
		return nil, fmt.Errorf("byte width %d", width)
	}
	var b []byte
	keyPos := make([]int, len(es))
	for i, e := range es {
		if i > 0 && es[i-1].Key == e.Key {
			return nil, fmt.Errorf("key %q twice", e.Key)
		}
		keyPos[i] = len(b)
		b = append(append(b, e.Key...), 0)
	}
	pad := func() {
		for len(b)%width != 0 {
			b = append(b, 0)
		}
	}
	var overflow error
	// put appends u at the map's width; signed values are checked by the caller's cast.
	put := func(u uint64) {
		if width < 8 && u>>(8*width) != 0 && u>>(8*width-1) != (1<<(64-8*width+1))-1 && overflow == nil {
			overflow = fmt.Errorf("value %d does not fit in %d bytes", int64(u), width)
		}
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], u)
		b = append(b, w[:width]...)
	}
	// Keys vector: size, then an offset per key.
	pad()
	put(uint64(len(es)))
	keysVec := len(b)
	for i := range es {
		put(uint64(len(b) - keyPos[i]))
	}
	// Values vector: keys offset, keys width, size, values, types.
	put(uint64(len(b) - keysVec))
	put(uint64(width))
	put(uint64(len(es)))
	vals := len(b)
	types := make([]byte, len(es))
	for i, e := range es {
		if v, ok := e.Value.(int); ok {
			e.Value = int64(v)
		}
		switch v := e.Value.(type) {
		case int64:
			if width < 8 && (v < -(1<<(8*width-1)) || v >= 1<<(8*width-1)) {
				return nil, fmt.Errorf("key %q: %d does not fit in %d bytes", e.Key, v, width)
			}
			put(uint64(v))
			types[i] = byte(Int) << 2
		case bool:
			u := uint64(0)
			if v {
				u = 1
			}
			put(u)
			types[i] = byte(Bool) << 2
		case float64:
			switch width {
			case 4:
				put(uint64(math.Float32bits(float32(v))))
			case 8:
				put(math.Float64bits(v))
			default:
				return nil, fmt.Errorf("key %q: no %d-byte floats", e.Key, width)
			}
			types[i] = byte(Float) << 2
		default:
			return nil, fmt.Errorf("key %q: value of type %T", e.Key, e.Value)
		}
	}
	b = append(b, types...)
	// Root: offset to the values vector, its packed type, the root's width.
	pad()
	root := len(b)
	put(uint64(root - vals))
	if overflow != nil {
		return nil, overflow
	}
	logw := map[int]byte{1: 0, 2: 1, 4: 2, 8: 3}[width]
	return append(b, byte(Map)<<2|logw, byte(width)), nil
}
