// Package tflite loads TensorFlow Lite flatbuffer models and runs them with a pure-Go
// interpreter: Load parses and validates a .tflite file without ever panicking, NewInterpreter
// prepares every operator through an OpResolver and plans one arena, and Invoke runs the graph
// without allocating. Kernels live elsewhere (models/tflite/kernels) and plug in through the
// Kernel interface, the way TFLite Micro's op resolver works. The package logs nothing.
package tflite

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// DefaultMaxBytes bounds the memory one model may claim (constants at Load, constants plus
// arena at NewInterpreter) unless the caller chooses otherwise.
const DefaultMaxBytes = 256 << 20

// Alignment of every tensor in the constant block and the arena, in bytes.
const Alignment = 16

// LoadOption adjusts Load.
type LoadOption func(*loadConfig)

type loadConfig struct{ maxBytes int }

// WithMaxBytes bounds the constant data Load copies out of the file (in bytes).
func WithMaxBytes(n int) LoadOption { return func(c *loadConfig) { c.maxBytes = n } }

// OpInfo identifies an operator code: a builtin op or a custom op, and its version.
type OpInfo struct {
	Builtin schema.BuiltinOperator
	Custom  string // custom op name when Builtin is CUSTOM
	Version int
}

// Name is the builtin name, or "CUSTOM:name" for custom ops. A custom name is the file's own
// bytes, so one that is not a short line of printable text is shown quoted and cut: names go
// into one-line errors and tables.
func (o OpInfo) Name() string {
	if o.Builtin == schema.OpCustom {
		return "CUSTOM:" + printableName(o.Custom)
	}
	return o.Builtin.String()
}

// maxShownName bounds a custom op name in messages (real ones are identifiers of a few dozen bytes).
const maxShownName = 64

func printableName(s string) string {
	clean := len(s) <= maxShownName && utf8.ValidString(s)
	for _, r := range s {
		if !clean || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	if len(s) > maxShownName {
		s = s[:maxShownName]
	}
	return strconv.Quote(s)
}

func (o OpInfo) String() string { return fmt.Sprintf("%s v%d", o.Name(), o.Version) }

// TensorInfo describes a tensor of a subgraph as stored in the file.
type TensorInfo struct {
	Index    int
	Name     string
	Type     schema.TensorType
	DType    tensor.DType
	Shape    []int
	Quant    *tensor.Quant // nil when not quantized
	Buffer   int           // buffer index, 0 for none
	Variable bool
	data     []byte // constant data in the model's aligned constant block; nil if none
	dropped  bool   // a constant whose bytes were given up (Options.DropPacked): data is nil
}

// Constant reports whether the tensor has data in the file (a weight, bias or shape).
func (t *TensorInfo) Constant() bool { return (t.data != nil || t.dropped) && !t.Variable }

// Data returns the constant bytes (read-only; shared by every interpreter of the model), or
// nil once an interpreter made with Options.DropPacked has given them up.
func (t *TensorInfo) Data() []byte { return t.data }

func (t *TensorInfo) label() string { return fmt.Sprintf("tensor %d %q", t.Index, t.Name) }

// Operator is one node of a subgraph.
type Operator struct {
	Index         int
	Op            OpInfo
	Inputs        []int // tensor indices; -1 marks an omitted optional input
	Outputs       []int
	Intermediates []int
	Options       any    // typed builtin options (*FullyConnectedOptions, …) or nil
	CustomOptions []byte // raw custom options (flexbuffer) for custom ops
}

func (o *Operator) label() string { return fmt.Sprintf("op %d (%s)", o.Index, o.Op.Name()) }

// Subgraph is one graph of the model; subgraph 0 is the main graph.
type Subgraph struct {
	Name      string
	Tensors   []TensorInfo
	Inputs    []int
	Outputs   []int
	Operators []Operator
}

// Model is a parsed, validated model. It is immutable and safe to share between interpreters.
type Model struct {
	Version     uint32
	Description string
	Subgraphs   []Subgraph
	opcodes     []OpInfo
	constBytes  int
	dropped     bool // an interpreter with Options.DropPacked gave up packed constants
}

// Ops returns the model's operator codes (its op table), in file order.
func (m *Model) Ops() []OpInfo { return m.opcodes }

// Tensors returns the tensors of the main subgraph.
func (m *Model) Tensors() []TensorInfo { return m.Subgraphs[0].Tensors }

// Operators returns the nodes of the main subgraph in execution order.
func (m *Model) Operators() []Operator { return m.Subgraphs[0].Operators }

// Inputs returns the main subgraph's input tensors in input order.
func (m *Model) Inputs() []TensorInfo { return m.pick(m.Subgraphs[0].Inputs) }

// Outputs returns the main subgraph's output tensors in output order.
func (m *Model) Outputs() []TensorInfo { return m.pick(m.Subgraphs[0].Outputs) }

// ConstBytes is the size of the model's aligned constant block in bytes.
func (m *Model) ConstBytes() int { return m.constBytes }

func (m *Model) pick(idx []int) []TensorInfo {
	out := make([]TensorInfo, len(idx))
	for i, t := range idx {
		out[i] = m.Subgraphs[0].Tensors[t]
	}
	return out
}

// OpNames lists the distinct ops of the main subgraph, e.g. "FULLY_CONNECTED v1, SOFTMAX v1".
func (m *Model) OpNames() string {
	seen := map[OpInfo]bool{}
	var names []string
	for _, o := range m.Operators() {
		if !seen[o.Op] {
			seen[o.Op] = true
			names = append(names, o.Op.String())
		}
	}
	return strings.Join(names, ", ")
}

// Load parses and validates a .tflite flatbuffer. It copies the constant data into an aligned
// block, so data may be reused after Load returns. Every error is one line naming the table,
// tensor or operator at fault; Load never panics, whatever the bytes.
func Load(data []byte, opts ...LoadOption) (m *Model, err error) {
	cfg := loadConfig{maxBytes: DefaultMaxBytes}
	for _, o := range opts {
		o(&cfg)
	}
	defer func() {
		// Belt and braces: a panic here is a bug in the validation above, but a corrupt model
		// must never take the process down.
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("load model: internal error on malformed input: %v", r)
		}
	}()
	m, err = load(data, cfg)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	return m, nil
}

func load(data []byte, cfg loadConfig) (*Model, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("file too short (%d bytes)", len(data))
	}
	if id := string(data[4:8]); id != schema.FileIdentifier {
		return nil, fmt.Errorf("file identifier %q, want %q (not a TFLite model)", id, schema.FileIdentifier)
	}
	root, err := tableAt(data, leU32(data))
	if err != nil {
		return nil, fmt.Errorf("model table: %w", err)
	}
	m := &Model{}
	if m.Version, err = root.u32(schema.ModelVersion, 0); err != nil {
		return nil, fmt.Errorf("model version: %w", err)
	}
	if m.Version != schema.Version {
		return nil, fmt.Errorf("schema version %d, want %d", m.Version, schema.Version)
	}
	if m.Description, err = root.str(schema.ModelDescription); err != nil {
		return nil, fmt.Errorf("model description: %w", err)
	}
	if err := m.parseOpcodes(root); err != nil {
		return nil, err
	}
	buffers, err := parseBuffers(data, root)
	if err != nil {
		return nil, err
	}
	sgs, err := root.tables(schema.ModelSubgraphs)
	if err != nil {
		return nil, fmt.Errorf("subgraphs: %w", err)
	}
	if len(sgs) == 0 {
		return nil, fmt.Errorf("model has no subgraphs")
	}
	// Constants of all subgraphs share one aligned block; size it first to bound memory.
	m.Subgraphs = make([]Subgraph, len(sgs))
	for i, st := range sgs {
		if err := m.parseSubgraph(i, st, buffers, len(sgs)); err != nil {
			return nil, fmt.Errorf("subgraph %d: %w", i, err)
		}
	}
	if err := m.copyConstants(buffers, cfg.maxBytes); err != nil {
		return nil, err
	}
	return m, nil
}

func leU32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func (m *Model) parseOpcodes(root table) error {
	codes, err := root.tables(schema.ModelOperatorCodes)
	if err != nil {
		return fmt.Errorf("operator codes: %w", err)
	}
	m.opcodes = make([]OpInfo, len(codes))
	for i, c := range codes {
		dep, err1 := c.i8(schema.OperatorCodeDeprecatedBuiltinCode, 0)
		code, err2 := c.i32(schema.OperatorCodeBuiltinCode, 0)
		ver, err3 := c.i32(schema.OperatorCodeVersion, 1)
		custom, err4 := c.str(schema.OperatorCodeCustomCode)
		if err := firstErr(err1, err2, err3, err4); err != nil {
			return fmt.Errorf("operator code %d: %w", i, err)
		}
		// Schema rule: the real code is the larger of the deprecated int8 field and the int32
		// field (old files only fill the first, new ones set it to 127 for codes above 126).
		op := max(int32(dep), code)
		if op < 0 {
			return fmt.Errorf("operator code %d: negative builtin code %d", i, op)
		}
		if ver < 1 {
			return fmt.Errorf("operator code %d (%s): version %d < 1", i, schema.BuiltinOperator(op), ver)
		}
		m.opcodes[i] = OpInfo{Builtin: schema.BuiltinOperator(op), Custom: custom, Version: int(ver)}
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// parseBuffers returns each buffer's bytes inside data (nil when empty).
func parseBuffers(data []byte, root table) ([][]byte, error) {
	bts, err := root.tables(schema.ModelBuffers)
	if err != nil {
		return nil, fmt.Errorf("buffers: %w", err)
	}
	out := make([][]byte, len(bts))
	for i, b := range bts {
		d, err := b.bytes(schema.BufferData)
		if err != nil {
			return nil, fmt.Errorf("buffer %d: %w", i, err)
		}
		off, err1 := b.u64(schema.BufferOffset, 0)
		size, err2 := b.u64(schema.BufferSize, 0)
		if err := firstErr(err1, err2); err != nil {
			return nil, fmt.Errorf("buffer %d: %w", i, err)
		}
		// Models over 2 GB keep buffer data after the flatbuffer, addressed from the file
		// start; offset 1 is the converter's "no data" placeholder.
		if off > 1 {
			if !inRange(data, off, size) {
				return nil, fmt.Errorf("buffer %d: offset %d size %d beyond file of %d bytes", i, off, size, len(data))
			}
			d = data[off : off+size]
		}
		if len(d) > 0 {
			out[i] = d
		}
	}
	return out, nil
}

func (m *Model) parseSubgraph(si int, st table, buffers [][]byte, nsub int) error {
	sg := &m.Subgraphs[si]
	var err error
	if sg.Name, err = st.str(schema.SubGraphName); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	tts, err := st.tables(schema.SubGraphTensors)
	if err != nil {
		return fmt.Errorf("tensors: %w", err)
	}
	sg.Tensors = make([]TensorInfo, len(tts))
	for i, tt := range tts {
		if err := parseTensor(&sg.Tensors[i], i, tt, buffers); err != nil {
			return err
		}
	}
	n := len(sg.Tensors)
	ins, err1 := st.int32s(schema.SubGraphInputs)
	outs, err2 := st.int32s(schema.SubGraphOutputs)
	if err := firstErr(err1, err2); err != nil {
		return fmt.Errorf("inputs/outputs: %w", err)
	}
	if sg.Inputs, err = indices(ins, n, false); err != nil {
		return fmt.Errorf("inputs: %w", err)
	}
	if sg.Outputs, err = indices(outs, n, false); err != nil {
		return fmt.Errorf("outputs: %w", err)
	}
	ots, err := st.tables(schema.SubGraphOperators)
	if err != nil {
		return fmt.Errorf("operators: %w", err)
	}
	sg.Operators = make([]Operator, len(ots))
	for i, ot := range ots {
		if err := m.parseOperator(&sg.Operators[i], i, ot, n, nsub); err != nil {
			return err
		}
	}
	return sg.checkDataflow()
}

func indices(v []int32, n int, optional bool) ([]int, error) {
	out := make([]int, len(v))
	for i, x := range v {
		if x == -1 && optional {
			out[i] = -1
			continue
		}
		if x < 0 || int(x) >= n {
			return nil, fmt.Errorf("tensor index %d out of range [0,%d)", x, n)
		}
		out[i] = int(x)
	}
	return out, nil
}

var dtypes = map[schema.TensorType]tensor.DType{
	schema.TensorTypeFloat32: tensor.Float32, schema.TensorTypeFloat16: tensor.Float16,
	schema.TensorTypeInt32: tensor.Int32, schema.TensorTypeUint8: tensor.Uint8,
	schema.TensorTypeInt64: tensor.Int64, schema.TensorTypeString: tensor.String,
	schema.TensorTypeBool: tensor.Bool, schema.TensorTypeInt16: tensor.Int16,
	schema.TensorTypeComplex64: tensor.Complex64, schema.TensorTypeInt8: tensor.Int8,
	schema.TensorTypeFloat64: tensor.Float64, schema.TensorTypeComplex128: tensor.Complex128,
	schema.TensorTypeUint64: tensor.Uint64, schema.TensorTypeResource: tensor.Resource,
	schema.TensorTypeVariant: tensor.Variant, schema.TensorTypeUint32: tensor.Uint32,
	schema.TensorTypeUint16: tensor.Uint16, schema.TensorTypeInt4: tensor.Int4,
}

func parseTensor(ti *TensorInfo, i int, tt table, buffers [][]byte) error {
	ti.Index = i
	var err error
	if ti.Name, err = tt.str(schema.TensorName); err != nil {
		return fmt.Errorf("tensor %d: name: %w", i, err)
	}
	typ, err1 := tt.i8(schema.TensorType_, 0)
	buf, err2 := tt.u32(schema.TensorBuffer, 0)
	shape, err3 := tt.int32s(schema.TensorShape)
	variable, err4 := tt.boolean(schema.TensorIsVariable)
	sparse, _, err5 := tt.ref(schema.TensorSparsity)
	if err := firstErr(err1, err2, err3, err4, err5); err != nil {
		return fmt.Errorf("%s: %w", ti.label(), err)
	}
	ti.Type = schema.TensorType(typ)
	dt, ok := dtypes[ti.Type]
	if !ok {
		return fmt.Errorf("%s: unknown tensor type %d", ti.label(), typ)
	}
	ti.DType, ti.Variable = dt, variable
	if sparse != 0 {
		return fmt.Errorf("%s: sparse tensors are not supported", ti.label())
	}
	ti.Shape = make([]int, len(shape))
	for d, v := range shape {
		if v < 0 {
			return fmt.Errorf("%s: dimension %d is %d (dynamic shapes are not supported)", ti.label(), d, v)
		}
		ti.Shape[d] = int(v)
	}
	if tensor.NumElements(ti.Shape) < 0 {
		return fmt.Errorf("%s: shape %v overflows", ti.label(), ti.Shape)
	}
	if int64(buf) >= int64(len(buffers)) {
		return fmt.Errorf("%s: buffer index %d out of range [0,%d)", ti.label(), buf, len(buffers))
	}
	ti.Buffer = int(buf)
	if d := buffers[buf]; d != nil {
		if want := tensor.ByteSize(dt, ti.Shape); want >= 0 && want != len(d) {
			return fmt.Errorf("%s: %s%v needs %d bytes, buffer %d holds %d", ti.label(), dt, ti.Shape, want, buf, len(d))
		} else if want < 0 && dt != tensor.String {
			return fmt.Errorf("%s: constant data of type %s is not supported", ti.label(), dt)
		}
		ti.data = d // re-pointed into the aligned block by copyConstants
	}
	qt, ok, err := tt.sub(schema.TensorQuantization)
	if err != nil {
		return fmt.Errorf("%s: quantization: %w", ti.label(), err)
	}
	if ok {
		if ti.Quant, err = parseQuant(qt, ti); err != nil {
			return fmt.Errorf("%s: quantization: %w", ti.label(), err)
		}
	}
	return nil
}

func parseQuant(qt table, ti *TensorInfo) (*tensor.Quant, error) {
	scale, err1 := qt.float32s(schema.QuantScale)
	zp, err2 := parseZeroPoints(qt)
	qd, err3 := qt.i32(schema.QuantQuantizedDimension, 0)
	dtype, err4 := qt.u8(schema.QuantDetailsType, 0)
	if err := firstErr(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	if dtype != 0 {
		return nil, fmt.Errorf("custom quantization details (type %d) are not supported", dtype)
	}
	if len(scale) == 0 && len(zp) == 0 {
		return nil, nil // min/max only: not quantized for inference
	}
	if len(zp) != len(scale) {
		return nil, fmt.Errorf("%d scales but %d zero points", len(scale), len(zp))
	}
	if qd < 0 {
		return nil, fmt.Errorf("quantized_dimension %d is negative", qd)
	}
	dim := int(qd)
	if len(scale) > 1 {
		rank := len(ti.Shape)
		if dim >= rank {
			// TFLite Micro accepts rank-1 per-channel tensors whose quantized_dimension points
			// past the rank (person_detect's biases say 3); the only axis is the channel axis.
			if rank != 1 {
				return nil, fmt.Errorf("quantized_dimension %d out of range for rank %d", qd, rank)
			}
			dim = 0
		}
		if ti.Shape[dim] != len(scale) {
			return nil, fmt.Errorf("%d per-channel scales for dimension %d of size %d", len(scale), dim, ti.Shape[dim])
		}
	} else {
		dim = 0
	}
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	switch ti.DType {
	case tensor.Int8:
		lo, hi = math.MinInt8, math.MaxInt8
	case tensor.Uint8:
		lo, hi = 0, math.MaxUint8
	case tensor.Int16:
		lo, hi = math.MinInt16, math.MaxInt16
	case tensor.Int4:
		lo, hi = -8, 7
	case tensor.Int32:
		lo, hi = math.MinInt32, math.MaxInt32
	}
	for i, s := range scale {
		if s == 0 || s < 0 || math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			return nil, fmt.Errorf("scale[%d] is %v (must be finite and positive)", i, s)
		}
		if zp[i] < lo || zp[i] > hi {
			return nil, fmt.Errorf("zero_point[%d] %d out of range [%d,%d] for %s", i, zp[i], lo, hi, ti.DType)
		}
	}
	return &tensor.Quant{Scale: scale, ZeroPoint: zp, Dim: dim}, nil
}

// zeroPoints backs the all-zero per-channel zero points of parsed tensors (parseZeroPoints).
var zeroPoints [8192]int64

// parseZeroPoints is the quantization's zero_point vector. Per-channel weights are symmetric:
// their zero points, 8 bytes a channel as parsed, are all 0, and they share the read-only
// zeroPoints instead, without an allocation that would be start-up garbage beside the
// interpreter's own (nothing writes a Quant's slices).
func parseZeroPoints(qt table) ([]int64, error) {
	s, n, err := qt.vector(schema.QuantZeroPoint, 8)
	if err == nil && n > 1 && n <= uint32(len(zeroPoints)) && !slices.ContainsFunc(qt.t.Bytes[s:s+8*n], func(b byte) bool { return b != 0 }) {
		return zeroPoints[:n:n], nil
	}
	return qt.int64s(schema.QuantZeroPoint)
}

func (m *Model) parseOperator(op *Operator, i int, ot table, ntensors, nsub int) error {
	op.Index = i
	idx, err := ot.u32(schema.OperatorOpcodeIndex, 0)
	if err != nil {
		return fmt.Errorf("op %d: %w", i, err)
	}
	if int64(idx) >= int64(len(m.opcodes)) {
		return fmt.Errorf("op %d: opcode index %d out of range [0,%d)", i, idx, len(m.opcodes))
	}
	op.Op = m.opcodes[idx]
	ins, err1 := ot.int32s(schema.OperatorInputs)
	outs, err2 := ot.int32s(schema.OperatorOutputs)
	inter, err3 := ot.int32s(schema.OperatorIntermediates)
	if err := firstErr(err1, err2, err3); err != nil {
		return fmt.Errorf("%s: %w", op.label(), err)
	}
	if op.Inputs, err = indices(ins, ntensors, true); err != nil {
		return fmt.Errorf("%s: input: %w", op.label(), err)
	}
	if op.Outputs, err = indices(outs, ntensors, false); err != nil {
		return fmt.Errorf("%s: output: %w", op.label(), err)
	}
	if op.Intermediates, err = indices(inter, ntensors, false); err != nil {
		return fmt.Errorf("%s: intermediate: %w", op.label(), err)
	}
	for _, o := range op.Outputs {
		for _, in := range op.Inputs {
			if in == o {
				return fmt.Errorf("%s: output tensor %d is also an input", op.label(), o)
			}
		}
	}
	if op.CustomOptions, err = ot.bytes(schema.OperatorCustomOptions); err != nil {
		return fmt.Errorf("%s: custom options: %w", op.label(), err)
	}
	typ, err := ot.u8(schema.OperatorBuiltinOptionsType, 0)
	if err != nil {
		return fmt.Errorf("%s: options type: %w", op.label(), err)
	}
	if typ != 0 {
		ost, ok, err := ot.sub(schema.OperatorBuiltinOptions)
		if err != nil {
			return fmt.Errorf("%s: options: %w", op.label(), err)
		}
		if ok {
			if op.Options, err = parseOptions(schema.BuiltinOptions(typ), ost, nsub); err != nil {
				return fmt.Errorf("%s: options: %w", op.label(), err)
			}
		}
	}
	return nil
}

// checkDataflow verifies that no op writes a constant or a tensor that a graph input or an
// earlier op already wrote, and that every graph output gets a value. Reading a tensor nobody
// writes is allowed, as in TFLite (Vela's scratch tensors are such inputs); it reads zeros.
func (sg *Subgraph) checkDataflow() error {
	written := make([]bool, len(sg.Tensors))
	for _, i := range sg.Inputs {
		written[i] = true
	}
	for _, op := range sg.Operators {
		for _, o := range op.Outputs {
			t := &sg.Tensors[o]
			if t.Constant() {
				return fmt.Errorf("%s: output %s is a constant", op.label(), t.label())
			}
			if written[o] && !t.Variable {
				return fmt.Errorf("%s: output %s is written twice (or is a graph input)", op.label(), t.label())
			}
			written[o] = true
		}
	}
	for _, o := range sg.Outputs {
		t := &sg.Tensors[o]
		if !written[o] && !t.Constant() && !t.Variable {
			return fmt.Errorf("output %s is never written", t.label())
		}
	}
	return nil
}

// copyConstants moves every constant into one aligned block, sharing blocks between tensors
// that use the same buffer.
func (m *Model) copyConstants(buffers [][]byte, maxBytes int) error {
	offsets := make(map[int]int)
	total := 0
	for si := range m.Subgraphs {
		for ti := range m.Subgraphs[si].Tensors {
			t := &m.Subgraphs[si].Tensors[ti]
			if t.data == nil {
				continue
			}
			if _, ok := offsets[t.Buffer]; ok {
				continue
			}
			offsets[t.Buffer] = total
			total += alignUp(len(t.data))
			if total > maxBytes {
				return fmt.Errorf("constants need more than the memory cap of %d bytes (at subgraph %d %s)", maxBytes, si, t.label())
			}
		}
	}
	// Big buffers (weights, mostly) get allocations of their own, so that the garbage
	// collector can free one when an interpreter drops it (Options.DropPacked); the small
	// ones share a block.
	small := 0
	for b := range offsets {
		if len(buffers[b]) < ownBlockBytes {
			offsets[b] = small
			small += alignUp(len(buffers[b]))
		}
	}
	block := alignedBytes(small)
	own := make(map[int][]byte)
	for b := range offsets {
		if len(buffers[b]) >= ownBlockBytes {
			own[b] = alignedBytes(len(buffers[b]))
			copy(own[b], buffers[b])
		} else {
			copy(block[offsets[b]:], buffers[b])
		}
	}
	for si := range m.Subgraphs {
		for ti := range m.Subgraphs[si].Tensors {
			t := &m.Subgraphs[si].Tensors[ti]
			if t.data == nil {
				continue
			}
			if o, ok := own[t.Buffer]; ok {
				t.data = o[:len(t.data):len(t.data)]
				continue
			}
			off := offsets[t.Buffer]
			t.data = block[off : off+len(t.data) : off+len(t.data)]
		}
	}
	m.constBytes = total
	return nil
}

// ownBlockBytes is the size from which a constant buffer gets an allocation of its own. Biases
// and depthwise weights are mostly under 16 KiB: with a bigger threshold the shared block
// outlived them under DropPacked (200 KB of dead bytes in a MobileNet v2), pinned by the few
// constants (shapes) that stay.
const ownBlockBytes = 256

func alignUp(n int) int { return (n + Alignment - 1) &^ (Alignment - 1) }
