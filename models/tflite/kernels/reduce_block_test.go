package kernels

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// prepareReduceCase prepares a quantized MEAN or SUM of a random input of shape over axes;
// keep is KeepDims.
func prepareReduceCase(t testing.TB, r *rand.Rand, op schema.BuiltinOperator, dt tensor.DType, shape, axes []int, keep, extremes bool) *tflite.Node {
	t.Helper()
	zp := func() int64 {
		switch dt {
		case tensor.Int8:
			return int64(r.IntN(256) - 128)
		case tensor.Uint8:
			return int64(r.IntN(256))
		}
		return 0
	}
	in := tensor.New("in", dt, shape, &tensor.Quant{Scale: []float32{0.01 + r.Float32()/10}, ZeroPoint: []int64{zp()}})
	raw := make([]byte, in.ByteSize())
	for i := range raw {
		raw[i] = byte(r.IntN(256))
		if extremes {
			raw[i] = 0x7f + byte(r.IntN(64)/63) // 0x7f mostly, 0x80 now and then
			if dt == tensor.Uint8 {
				raw[i] = 0xff - byte(r.IntN(64)/63)*0xff
			}
		}
	}
	in.SetData(raw)
	ax := tensor.New("axis", tensor.Int32, []int{len(axes)}, nil)
	ab := make([]byte, 4*len(axes))
	for i, a := range axes {
		binary.LittleEndian.PutUint32(ab[4*i:], uint32(int32(a)))
	}
	ax.SetData(ab)
	ax.SetConstant(true)
	out := tensor.New("out", dt, nil, &tensor.Quant{Scale: []float32{0.01 + r.Float32()/10}, ZeroPoint: []int64{zp()}})
	n := &tflite.Node{Op: tflite.OpInfo{Builtin: op}, Inputs: []*tensor.Tensor{in, ax}, Outputs: []*tensor.Tensor{out},
		Options: &tflite.ReducerOptions{KeepDims: keep}}
	if err := prepareReduce(n); err != nil {
		t.Fatalf("%v %v axes %v: %v", dt, shape, axes, err)
	}
	out.SetData(make([]byte, out.ByteSize()))
	return n
}

// TestReduceSumBlock: quantized MEAN and SUM over one run of dimensions (reduceSumBlock) give
// the odometer walk's bytes.
func TestReduceSumBlock(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	blocks := 0
	for iter := range 800 {
		rank := 1 + r.IntN(4)
		shape := make([]int, rank)
		for i := range shape {
			shape[i] = 1 + r.IntN(6)
			if r.IntN(5) == 0 {
				shape[i] = 1
			}
		}
		switch r.IntN(4) {
		case 0: // MobileNet's global average pool, spatial sizes to beyond 256 taps
			shape = []int{1 + r.IntN(2), 1 + r.IntN(20), 1 + r.IntN(20), 1 + r.IntN(1500)}
			rank = 4
		case 1: // wide inner rows
			shape[rank-1] = 1 + r.IntN(2100)
		}
		var axes []int
		for i := range rank {
			if r.IntN(2) == 0 {
				axes = append(axes, i-rank*r.IntN(2)) // negative axes too
			}
		}
		if rank == 4 && iter%2 == 0 {
			axes = [][]int{{1, 2}, {-3, -2}}[r.IntN(2)]
		}
		dt := []tensor.DType{tensor.Int8, tensor.Int8, tensor.Uint8, tensor.Int16}[r.IntN(4)]
		op := schema.OpMean
		if dt != tensor.Uint8 && r.IntN(3) == 0 {
			op = schema.OpSum
		}
		n := prepareReduceCase(t, r, op, dt, shape, axes, r.IntN(2) == 0, r.IntN(4) == 0)
		d := n.Data.(*reduceData)
		if !d.block {
			continue
		}
		blocks++
		if err := evalReduce(n); err != nil {
			t.Fatal(err)
		}
		got := bytes.Clone(n.Output(0).Bytes())
		d.block = false
		if err := evalReduce(n); err != nil {
			t.Fatal(err)
		}
		if want := n.Output(0).Bytes(); !bytes.Equal(got, want) {
			t.Fatalf("%v %v %v axes %v: rows give different bytes from the odometer", op, dt, shape, axes)
		}
	}
	if blocks < 400 {
		t.Fatalf("only %d of the cases reduce one run of dimensions", blocks)
	}
}

// BenchmarkMeanInt8Global times the global average pool of a converted MobileNet v2: MEAN of
// 1x7x7x1280 int8 over axes 1 and 2.
func BenchmarkMeanInt8Global(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	n := prepareReduceCase(b, r, schema.OpMean, tensor.Int8, []int{1, 7, 7, 1280}, []int{1, 2}, true, false)
	d := n.Data.(*reduceData)
	for _, block := range []bool{false, true} {
		name := "odometer"
		if block {
			name = "rows"
		}
		b.Run(name, func(b *testing.B) {
			d.block = block
			for b.Loop() {
				_ = evalReduce(n)
			}
		})
	}
}
