package kernels_test

import (
	"strconv"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// The harness every op-family test of this package shares: tensor descriptions, the one-op
// model builder, deterministic constant data, and the loop over models that must be refused.
// The op-family files keep their own thin builders (opModel, smModel, cvModel, sqOpModel)
// because each writes its own model description into the committed golden .tflite files,
// which must stay byte-identical.

// ts describes one tensor of a test model: a model input when data is nil, else a constant.
type ts struct {
	typ   schema.TensorType
	shape []int32
	q     *write.Quant
	data  []byte
}

func f32(shape ...int32) ts      { return ts{typ: schema.TensorTypeFloat32, shape: shape} }
func i32(shape ...int32) ts      { return ts{typ: schema.TensorTypeInt32, shape: shape} }
func i64(shape ...int32) ts      { return ts{typ: schema.TensorTypeInt64, shape: shape} }
func boolT(shape ...int32) ts    { return ts{typ: schema.TensorTypeBool, shape: shape} }
func i16Plain(shape ...int32) ts { return ts{typ: schema.TensorTypeInt16, shape: shape} }

// i8 is an int8 tensor with one scale and zero point.
func i8(scale float32, zp int64, shape ...int32) ts {
	return ts{typ: schema.TensorTypeInt8, shape: shape, q: &write.Quant{Scale: []float32{scale}, ZeroPoint: []int64{zp}}}
}

// i16 is a symmetric (zero point 0) int16 tensor.
func i16(scale float32, shape ...int32) ts {
	return ts{typ: schema.TensorTypeInt16, shape: shape, q: &write.Quant{Scale: []float32{scale}, ZeroPoint: []int64{0}}}
}

// konst makes t a constant holding raw.
func (t ts) konst(raw []byte) ts { t.data = raw; return t }

// withF32 makes t a constant holding vals.
func (t ts) withF32(vals ...float32) ts { return t.konst(write.Float32s(vals)) }

// withI8 makes t a constant holding vals.
func (t ts) withI8(vals ...int8) ts { return t.konst(write.Int8s(vals)) }

// constI32 is a constant int32 tensor (shape nil: a vector of the values).
func constI32(vals []int32, shape ...int32) ts {
	if shape == nil {
		shape = []int32{int32(len(vals))}
	}
	return ts{typ: schema.TensorTypeInt32, shape: shape, data: write.Int32s(vals)}
}

// constI64 is a constant int64 tensor (shape nil: a vector of the values).
func constI64(vals []int64, shape ...int32) ts {
	if shape == nil {
		shape = []int32{int32(len(vals))}
	}
	return ts{typ: schema.TensorTypeInt64, shape: shape, data: write.Int64s(vals)}
}

// tensor is t as the writer's tensor named name.
func (t ts) tensor(name string) write.Tensor {
	return write.Tensor{Name: name, Type: t.typ, Shape: t.shape, Quant: t.q, Data: t.data}
}

// omitted stands for an optional op input that is left out (tensor index -1).
var omitted = write.Tensor{Name: "-"}

// named turns descriptions into tensors named prefix0, prefix1, …; those for which omit
// (may be nil) is true become omitted.
func named(prefix string, d []ts, omit func(ts) bool) []write.Tensor {
	out := make([]write.Tensor, len(d))
	for i, t := range d {
		if omit != nil && omit(t) {
			out[i] = omitted
			continue
		}
		out[i] = t.tensor(prefix + strconv.Itoa(i))
	}
	return out
}

// oneOpModel builds a model of one op, its description desc+op: ins feed the op in order
// (omitted ones as -1), and those neither constant nor variable are the model's inputs; outs
// are the op's outputs and the model's.
func oneOpModel(desc string, op schema.BuiltinOperator, version int32, opts write.Options, ins, outs []write.Tensor) func() ([]byte, error) {
	return func() ([]byte, error) {
		m := write.NewModel(desc + op.String())
		sg := m.Subgraph()
		var inIdx, modelIn, outIdx []int32
		for _, t := range ins {
			if t.Name == omitted.Name {
				inIdx = append(inIdx, -1)
				continue
			}
			idx := sg.AddTensor(t)
			inIdx = append(inIdx, idx)
			if t.Data == nil && !t.Variable {
				modelIn = append(modelIn, idx)
			}
		}
		for _, t := range outs {
			outIdx = append(outIdx, sg.AddTensor(t))
		}
		sg.AddOp(op, version, inIdx, outIdx, opts)
		sg.SetInputs(modelIn...)
		sg.SetOutputs(outIdx...)
		return m.Bytes()
	}
}

// xorshift is a fixed xorshift32 generator for constant test data, so models are stable.
type xorshift uint32

func (r *xorshift) next() uint32 {
	x := uint32(*r)
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	*r = xorshift(x)
	return x
}

// f32s is n float32 values uniform in [-scale, scale), as buffer bytes.
func (r *xorshift) f32s(n int, scale float32) []byte {
	v := make([]float32, n)
	for i := range v {
		v[i] = scale * (float32(r.next()>>8)/float32(1<<24)*2 - 1)
	}
	return write.Float32s(v)
}

// i8s is n int8 values over the whole range, as buffer bytes.
func (r *xorshift) i8s(n int) []byte {
	v := make([]int8, n)
	for i := range v {
		v[i] = int8(r.next() >> 24)
	}
	return write.Int8s(v)
}

// i16s is n int16 values in [-lim, lim], as buffer bytes.
func (r *xorshift) i16s(n int, lim int) []byte {
	v := make([]int16, n)
	for i := range v {
		v[i] = int16(int(r.next()%uint32(2*lim+1)) - lim)
	}
	return write.Int16s(v)
}

// i32s is n int32 values in [-lim, lim], as buffer bytes.
func (r *xorshift) i32s(n int, lim int) []byte {
	v := make([]int32, n)
	for i := range v {
		v[i] = int32(int(r.next()%uint32(2*lim+1)) - lim)
	}
	return write.Int32s(v)
}

// opInterpreter builds an interpreter with every builtin kernel for the model build writes.
func opInterpreter(t *testing.T, build func() ([]byte, error)) *tflite.Interpreter {
	t.Helper()
	return oracletest.BuildInterpreter(t, build, kernels.Builtins())
}

// rejectCase is a model that Load or NewInterpreter must refuse with an error containing want.
type rejectCase struct {
	name  string
	build func() ([]byte, error)
	want  string
}

// runRejects checks every case as a subtest (oracletest.Rejects: one line naming the problem,
// never a panic).
func runRejects(t *testing.T, cases []rejectCase) {
	t.Helper()
	r := kernels.Builtins()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oracletest.Rejects(t, tc.build, r, tc.want)
		})
	}
}
