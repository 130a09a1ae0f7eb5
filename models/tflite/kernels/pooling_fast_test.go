package kernels

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// poolCase is a random quantized AVERAGE_POOL_2D or MAX_POOL_2D.
type poolCase struct {
	dtype             tensor.DType
	max               bool
	n, h, w, c        int
	fh, fw, sh, sw    int
	same              bool
	act               schema.Activation
	inScale, outScale float32
	inZP, outZP       int64
	extremes          bool // inputs only at the ends of their range (lanes near full)
}

func randPoolCase(r *rand.Rand) poolCase {
	c := poolCase{
		dtype: []tensor.DType{tensor.Int8, tensor.Int8, tensor.Uint8, tensor.Int16}[r.IntN(4)],
		max:   r.IntN(3) == 0,
		n:     1 + r.IntN(2), h: 1 + r.IntN(12), w: 1 + r.IntN(12),
		c:  1 + r.IntN(40),
		sh: 1 + r.IntN(3), sw: 1 + r.IntN(3),
		same: r.IntN(2) == 0,
		act:  []schema.Activation{schema.ActivationNone, schema.ActivationRelu, schema.ActivationRelu6, schema.ActivationReluN1To1}[r.IntN(4)],
	}
	switch r.IntN(4) {
	case 0: // wide channel runs, cut into parts by channels when the rows are few
		c.c = 1 + r.IntN(700)
	case 1: // a global pool, as at the end of MobileNet
		c.h, c.w = 1+r.IntN(9), 1+r.IntN(9)
		c.c = 8 * (1 + r.IntN(200))
	case 2: // a global pool of more than 256 taps
		c.h, c.w, c.c = 17+r.IntN(10), 16+r.IntN(10), 1+r.IntN(48)
	}
	c.fh, c.fw = 1+r.IntN(c.h), 1+r.IntN(c.w)
	if r.IntN(4) == 0 {
		c.fh, c.fw, c.sh, c.sw, c.same = c.h, c.w, 1, 1, false
	}
	c.extremes = r.IntN(4) == 0
	c.inScale, c.outScale = 0.01+r.Float32()/10, 0.01+r.Float32()/10
	if c.max {
		c.outScale = c.inScale
	}
	switch c.dtype {
	case tensor.Int8:
		c.inZP, c.outZP = int64(r.IntN(256)-128), int64(r.IntN(256)-128)
	case tensor.Uint8:
		c.inZP, c.outZP = int64(r.IntN(256)), int64(r.IntN(256))
	}
	if c.max {
		c.outZP = c.inZP
	}
	return c
}

// outSize is c's padding and output height and width (not positive when the window does
// not fit).
func (c poolCase) outSize() (pad schema.Padding, oh, ow int) {
	pad = schema.PaddingValid
	if c.same {
		pad = schema.PaddingSame
	}
	return pad, computeOutSize(pad, c.h, c.fh, c.sh, 1), computeOutSize(pad, c.w, c.fw, c.sw, 1)
}

// prepare builds the node and runs preparePool; the input holds random values.
func (c poolCase) prepare(t testing.TB, r *rand.Rand) (*tflite.Node, bool) {
	pad, oh, ow := c.outSize()
	if oh <= 0 || ow <= 0 {
		return nil, false
	}
	in := tensor.New("in", c.dtype, []int{c.n, c.h, c.w, c.c}, &tensor.Quant{Scale: []float32{c.inScale}, ZeroPoint: []int64{c.inZP}})
	out := tensor.New("out", c.dtype, []int{c.n, oh, ow, c.c}, &tensor.Quant{Scale: []float32{c.outScale}, ZeroPoint: []int64{c.outZP}})
	raw := make([]byte, in.ByteSize())
	for i := range raw {
		raw[i] = byte(r.IntN(256))
	}
	if c.extremes {
		// int8 127 or -128, uint8 255 or 0 (mostly the top), int16 of 0x7f and 0x80 bytes.
		hi := byte(0x7f)
		if c.dtype == tensor.Uint8 {
			hi = 0xff
		}
		for i := range raw {
			raw[i] = hi
			if r.IntN(8) == 0 {
				raw[i] = hi + 1
			}
		}
	}
	in.SetData(raw)
	out.SetData(make([]byte, out.ByteSize()))
	n := &tflite.Node{Inputs: []*tensor.Tensor{in}, Outputs: []*tensor.Tensor{out},
		Options: &tflite.Pool2DOptions{Padding: pad, StrideW: c.sw, StrideH: c.sh, FilterWidth: c.fw, FilterHeight: c.fh, Activation: c.act}}
	kind := poolAvg
	if c.max {
		kind = poolMax
	}
	if err := preparePool(n, kind); err != nil {
		t.Fatalf("%+v: %v", c, err)
	}
	return n, true
}

// TestPoolQuantParts: the quantized pooling in parts (poolJob) gives poolLoop's bytes, with
// the parts taken in any order by any worker.
func TestPoolQuantParts(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	fast := 0
	for range 1500 {
		c := randPoolCase(r)
		n, ok := c.prepare(t, r)
		if !ok {
			continue
		}
		d := n.Data.(*poolData)
		if !d.fast {
			continue
		}
		fast++
		in, out := n.Input(0), n.Output(0)
		if err := d.poolLoop(in, out); err != nil {
			t.Fatal(err)
		}
		want := bytes.Clone(out.Bytes())
		clear(out.Bytes())
		const workers = 3
		size := poolScratchBytes(d.chunk)
		j := poolJob{d: d, in: in, out: out, scratch: make([][]byte, workers)}
		for w := range j.scratch {
			j.scratch[w] = make([]byte, size)
			for i := range j.scratch[w] {
				j.scratch[w][i] = byte(r.IntN(256)) // scratch is not cleared between Invokes
			}
		}
		parts := d.batches * d.outH * d.chunks
		for _, p := range r.Perm(parts) {
			j.RunPart(r.IntN(workers), p)
		}
		if got := out.Bytes(); !bytes.Equal(got, want) {
			t.Fatalf("%+v (chunk %d x %d): parts give different bytes from the loop", c, d.chunk, d.chunks)
		}
	}
	if fast < 1000 {
		t.Fatalf("only %d cases took the parts", fast)
	}
}

// BenchmarkPoolInt8Global times MobileNet v2's global average pool: 7x7x1280 int8.
func BenchmarkPoolInt8Global(b *testing.B) {
	c := poolCase{dtype: tensor.Int8, n: 1, h: 7, w: 7, c: 1280, fh: 7, fw: 7, sh: 1, sw: 1, inScale: 0.02, outScale: 0.02}
	n, _ := c.prepare(b, rand.New(rand.NewPCG(1, 2)))
	d := n.Data.(*poolData)
	b.Run("loop", func(b *testing.B) {
		for b.Loop() {
			_ = d.poolLoop(n.Input(0), n.Output(0))
		}
	})
	b.Run("parts", func(b *testing.B) {
		j := poolJob{d: d, in: n.Input(0), out: n.Output(0), scratch: [][]byte{make([]byte, poolScratchBytes(d.chunk))}}
		for b.Loop() {
			for p := range d.chunks {
				j.RunPart(0, p)
			}
		}
	})
}

// model is c as a one-op model (int8 or uint8 tensors) for the threaded tests.
func (c poolCase) model(t testing.TB) ([]byte, int, bool) {
	t.Helper()
	pad, oh, ow := c.outSize()
	if oh <= 0 || ow <= 0 {
		return nil, 0, false
	}
	typ := schema.TensorTypeInt8
	if c.dtype == tensor.Uint8 {
		typ = schema.TensorTypeUint8
	}
	q := func(s float32, zp int64) *write.Quant {
		return &write.Quant{Scale: []float32{s}, ZeroPoint: []int64{zp}}
	}
	m := write.NewModel("outpost threaded pool test")
	sg := m.Subgraph()
	in := sg.AddTensor(write.Tensor{Name: "in", Type: typ, Shape: []int32{int32(c.n), int32(c.h), int32(c.w), int32(c.c)}, Quant: q(c.inScale, c.inZP)})
	out := sg.AddTensor(write.Tensor{Name: "out", Type: typ, Shape: []int32{int32(c.n), int32(oh), int32(ow), int32(c.c)}, Quant: q(c.outScale, c.outZP)})
	op := schema.OpAveragePool2D
	if c.max {
		op = schema.OpMaxPool2D
	}
	sg.AddOp(op, 2, []int32{in}, []int32{out}, write.Pool2DOptions{Padding: pad, StrideW: int32(c.sw), StrideH: int32(c.sh),
		FilterWidth: int32(c.fw), FilterHeight: int32(c.fh), Activation: c.act})
	sg.SetInputs(in)
	sg.SetOutputs(out)
	data, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data, c.n * c.h * c.w * c.c, true
}

// TestThreadedPoolAllocatesNothing holds a split global average pool's Invoke to zero
// allocations.
func TestThreadedPoolAllocatesNothing(t *testing.T) {
	c := poolCase{dtype: tensor.Int8, n: 1, h: 7, w: 7, c: 1280, fh: 7, fw: 7, sh: 1, sw: 1, inScale: 0.02, outScale: 0.02}
	data, _, _ := c.model(t)
	m, err := tflite.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := tflite.NewInterpreter(m, Builtins(), tflite.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ip.Close()
	if a := testing.AllocsPerRun(50, func() { _ = ip.Invoke() }); a != 0 {
		t.Errorf("%v allocations per threaded Invoke, want 0", a)
	}
}
