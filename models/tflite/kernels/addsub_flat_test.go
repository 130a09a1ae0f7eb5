package kernels

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// randAddSubScale is a scale for the flat ADD/SUB tests: mostly log-uniform over 2^-24..2^8,
// sometimes one of the extremes.
func randAddSubScale(r *rand.Rand) float32 {
	switch r.IntN(8) {
	case 0:
		return float32(math.Ldexp(1, -24))
	case 1:
		return 256
	case 2:
		return 1
	}
	return float32(math.Exp2(-24 + 32*r.Float64()))
}

// newAddSubFlatCase prepares a random flat int8 or uint8 ADD or SUB, or returns nil when
// Prepare refuses its scales (an output scale too small for the inputs, as TFLite does).
func newAddSubFlatCase(r *rand.Rand, dt tensor.DType, op binOp) *binaryData {
	lo, hi := -128, 127
	if dt == tensor.Uint8 {
		lo, hi = 0, 255
	}
	zp := func() int64 {
		switch r.IntN(4) {
		case 0:
			return int64(lo)
		case 1:
			return int64(hi)
		}
		return int64(lo + r.IntN(hi-lo+1))
	}
	s1, s2 := randAddSubScale(r), randAddSubScale(r)
	if r.IntN(4) == 0 {
		s2 = s1
	}
	so := randAddSubScale(r)
	switch r.IntN(4) {
	case 0: // just above the least output scale Prepare accepts (output multiplier near 1)
		so = 2 * max(s1, s2) / (1 << 20) * (1 + r.Float32()*1e-3)
	case 1: // near the input scales: the common case
		so = max(s1, s2) * (0.5 + r.Float32())
	case 2: // output multiplier near 2^-31: right shifts of 30 and 31
		so = 2 * max(s1, s2) / (1 << 20) * float32(math.Exp2(29+3*r.Float64()))
	}
	q := func(s float32) *tensor.Quant {
		return &tensor.Quant{Scale: []float32{s}, ZeroPoint: []int64{zp()}}
	}
	a, b, out := tensor.New("a", dt, []int{1}, q(s1)), tensor.New("b", dt, []int{1}, q(s2)), tensor.New("o", dt, []int{1}, q(so))
	act := []schema.Activation{schema.ActivationNone, schema.ActivationRelu, schema.ActivationRelu6}[r.IntN(3)]
	d := &binaryData{op: op, bc: Broadcast{N: 1, Flat: true}}
	if err := prepareAddSubQuant(d, a, b, out, act); err != nil {
		return nil
	}
	return d
}

// randAddSubBytes is n input bytes, a quarter of them the int8 and uint8 extremes.
func randAddSubBytes(r *rand.Rand, n int) []byte {
	v := make([]byte, n)
	for i := range v {
		if r.IntN(4) == 0 {
			v[i] = []byte{0, 0x7f, 0x80, 0xff}[r.IntN(4)]
		} else {
			v[i] = byte(r.Uint32())
		}
	}
	return v
}

// checkAddSubFlat runs d's fast forms on x and y against addSubGeneral: the Go form, the SIMD
// form where there is one, and the two split at a random point (as the workers split it).
func checkAddSubFlat(t testing.TB, r *rand.Rand, d *binaryData, dt tensor.DType, x, y []byte) {
	t.Helper()
	if d.flat == nil {
		t.Fatalf("%v %s: no fast form prepared (mult %d shift %d)", dt, binOpNames[d.op], d.outMult, d.outShift)
	}
	want := make([]byte, len(x))
	for i := range x {
		va, vb := int32(int8(x[i])), int32(int8(y[i]))
		if dt == tensor.Uint8 {
			va, vb = int32(x[i]), int32(y[i])
		}
		want[i] = byte(d.addSubGeneral(va, vb, d.op == binSub))
	}
	desc := func() string {
		return fmt.Sprintf("%v %s n=%d in mult %d/%d shift %d/%d off %d/%d, out mult %d shift %d off %d, range %d..%d",
			dt, binOpNames[d.op], len(x), d.in1Mult, d.in2Mult, d.in1Shift, d.in2Shift, d.in1Off, d.in2Off,
			d.outMult, d.outShift, d.outOff, d.qMin, d.qMax)
	}
	got := make([]byte, len(x))
	addSubFlatGo(d.flat, x, y, got)
	if !bytes.Equal(got, want) {
		t.Fatalf("Go form: %s\n got %v\nwant %v\nx %v\ny %v", desc(), got, want, x, y)
	}
	clear(got)
	if haveAddSubSIMD {
		if n := addSubFlatSIMD(d.flat, x, y, got); n > 0 && !bytes.Equal(got[:n], want[:n]) {
			t.Fatalf("SIMD form: %s\n got %v\nwant %v\nx %v\ny %v", desc(), got[:n], want[:n], x[:n], y[:n])
		}
		clear(got)
	}
	cut := r.IntN(len(x) + 1) // the SIMD form unless forced portable, and the Go form's tail
	addSubFlat(d.flat, x[:cut], y[:cut], got[:cut])
	addSubFlat(d.flat, x[cut:], y[cut:], got[cut:])
	if !bytes.Equal(got, want) {
		t.Fatalf("split at %d: %s\n got %v\nwant %v", cut, desc(), got, want)
	}
}

// TestAddSubFlatMatchesReference holds the fast flat ADD/SUB (Go form, and the SIMD form
// where the CPU has it) to addSubGeneral over random and extreme scales, zero points and
// activations, int8 and uint8, every length 1..100 and a few long ones, plus every pair of
// bytes.
func TestAddSubFlatMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	cases := 0
	for iter := 0; cases < 400; iter++ {
		dt := []tensor.DType{tensor.Int8, tensor.Uint8}[iter%2]
		op := []binOp{binAdd, binSub}[iter/2%2]
		d := newAddSubFlatCase(r, dt, op)
		if d == nil {
			continue
		}
		cases++
		for n := 1; n <= 100; n++ {
			checkAddSubFlat(t, r, d, dt, randAddSubBytes(r, n), randAddSubBytes(r, n))
		}
		n := 1000 + r.IntN(5000)
		checkAddSubFlat(t, r, d, dt, randAddSubBytes(r, n), randAddSubBytes(r, n))
		if cases%10 == 0 { // every pair of bytes
			x, y := make([]byte, 65536), make([]byte, 65536)
			for i := range x {
				x[i], y[i] = byte(i>>8), byte(i)
			}
			checkAddSubFlat(t, r, d, dt, x, y)
		}
	}
}

// The SIMD form (AVX2, NEON) is the CPU's wherever the int8 kernels have SIMD, unless
// forced portable.
func TestAddSubFlatPortable(t *testing.T) {
	defer SetPortable(SetPortable(false))
	if haveAddSubSIMD != haveSIMD || useAddSubSIMD() != haveSIMD {
		t.Errorf("haveAddSubSIMD %v, useAddSubSIMD() %v on a CPU with haveSIMD %v", haveAddSubSIMD, useAddSubSIMD(), haveSIMD)
	}
	SetPortable(true)
	if useAddSubSIMD() {
		t.Error("SetPortable(true) leaves the SIMD form of flat ADD/SUB on")
	}
}

// Operands the fast forms cannot fold (a left shift, a right shift of 32 or more, a
// multiplier of MinInt32) leave the node on the reference loop.
func TestAddSubFlatFallsBack(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var d *binaryData
	for d == nil {
		d = newAddSubFlatCase(r, tensor.Int8, binAdd)
	}
	if d.flat == nil {
		t.Fatal("no fast form for an ordinary case")
	}
	for _, f := range []func(e *binaryData){
		func(e *binaryData) { e.outMult = math.MinInt32 },
		func(e *binaryData) { e.in1Mult = math.MinInt32 },
		func(e *binaryData) { e.outShift = 1 },
		func(e *binaryData) { e.outShift = -32 },
		func(e *binaryData) { e.in2Shift = -32 },
		func(e *binaryData) { e.in1Shift = 2 },
		func(e *binaryData) { e.lut1 = nil },
	} {
		e := *d
		f(&e)
		if p := prepareAddSubFlat(&e, tensor.Int8); p != nil {
			t.Errorf("fast form prepared for in %d/%d shift %d/%d, out %d shift %d", e.in1Mult, e.in2Mult, e.in1Shift, e.in2Shift, e.outMult, e.outShift)
		}
	}
}

// FuzzAddSubFlat is TestAddSubFlatMatchesReference on one random case of the seeds' choosing.
func FuzzAddSubFlat(f *testing.F) {
	for _, s := range [][2]uint64{{0, 0}, {1, 2}, {3, 4}, {17, 1}, {40, 41}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		r := rand.New(rand.NewPCG(a, b))
		dt := []tensor.DType{tensor.Int8, tensor.Uint8}[a%2]
		op := []binOp{binAdd, binSub}[b%2]
		d := newAddSubFlatCase(r, dt, op)
		if d == nil {
			return
		}
		n := 1 + r.IntN(200)
		checkAddSubFlat(t, r, d, dt, randAddSubBytes(r, n), randAddSubBytes(r, n))
	})
}

// BenchmarkAddSubFlat times flat int8 ADD on MobileNet v2's residual shapes: the reference
// loop (addSubGeneral per element), the looked-up form that preceded the fast ones
// (addSubLUT), the branch-free Go form and the SIMD form (where there is one).
func BenchmarkAddSubFlat(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var d *binaryData
	for d == nil || d.flat == nil {
		d = newAddSubFlatCase(r, tensor.Int8, binAdd)
	}
	for _, s := range [][3]int{{56, 56, 24}, {28, 28, 32}, {14, 14, 64}, {14, 14, 96}, {7, 7, 160}} {
		n := s[0] * s[1] * s[2]
		x, y, z := randAddSubBytes(r, n), randAddSubBytes(r, n), make([]byte, n)
		xi, yi, zi := int8s(x, n), int8s(y, n), int8s(z, n)
		forms := []struct {
			name string
			run  func()
		}{
			{"reference", func() {
				for i := range zi {
					zi[i] = int8(d.addSubGeneral(int32(xi[i]), int32(yi[i]), false))
				}
			}},
			{"lut", func() { addSubLUT(d, xi, yi, zi, false) }},
			{"go", func() { addSubFlatGo(d.flat, x, y, z) }},
		}
		if useAddSubSIMD() {
			forms = append(forms, struct {
				name string
				run  func()
			}{"simd", func() { addSubFlat(d.flat, x, y, z) }})
		}
		for _, f := range forms {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", s[0], s[1], s[2], f.name), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					f.run()
				}
			})
		}
	}
}

// addSubFlatModel is a flat int8 or uint8 ADD or SUB of n elements: the input plus (or minus)
// a random constant, with random scales, zero points and activation.
func addSubFlatModel(t testing.TB, r *rand.Rand, typ schema.TensorType, n int) []byte {
	t.Helper()
	q := func() *write.Quant {
		zp := int64(r.IntN(256))
		if typ == schema.TensorTypeInt8 {
			zp -= 128
		}
		return &write.Quant{Scale: []float32{0.005 + r.Float32()/10}, ZeroPoint: []int64{zp}}
	}
	m := write.NewModel("outpost flat add test")
	sg := m.Subgraph()
	shape := []int32{1, int32(n)}
	in := sg.AddTensor(write.Tensor{Name: "in", Type: typ, Shape: shape, Quant: q()})
	k := sg.AddTensor(write.Tensor{Name: "k", Type: typ, Shape: shape, Data: randAddSubBytes(r, n), Quant: q()})
	out := sg.AddTensor(write.Tensor{Name: "out", Type: typ, Shape: shape, Quant: q()})
	act := []schema.Activation{schema.ActivationNone, schema.ActivationRelu, schema.ActivationRelu6}[r.IntN(3)]
	if r.IntN(2) == 0 {
		sg.AddOp(schema.OpAdd, 1, []int32{in, k}, []int32{out}, write.AddOptions(act))
	} else {
		sg.AddOp(schema.OpSub, 1, []int32{in, k}, []int32{out}, write.SubOptions(act))
	}
	sg.SetInputs(in)
	sg.SetOutputs(out)
	data, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A flat int8 or uint8 ADD/SUB gives the same bytes on 1 to 4 threads, SIMD or portable, and
// a threaded Invoke allocates nothing (checkThreads covers int8 ADD/SUB in the same way;
// this adds uint8, which now splits across workers too).
func TestAddSubFlatThreads(t *testing.T) {
	defer SetPortable(portable.Load())
	defer func(elems int) { minParallelElems = elems }(minParallelElems)
	minParallelElems = 0
	r := rand.New(rand.NewPCG(9, 10))
	for iter := range 24 {
		typ := []schema.TensorType{schema.TensorTypeInt8, schema.TensorTypeUint8}[iter%2]
		n := 1 + r.IntN(5000)
		data, x := addSubFlatModel(t, r, typ, n), randAddSubBytes(r, n)
		var first []byte
		for _, port := range []bool{true, false} {
			SetPortable(port)
			for threads := 1; threads <= 4; threads++ {
				ip := newThreaded(t, data, threads)
				copy(ip.Input(0).Bytes(), x)
				if err := ip.Invoke(); err != nil {
					t.Fatal(err)
				}
				got := bytes.Clone(ip.Output(0).Bytes())
				if first == nil {
					first = got
				} else if !bytes.Equal(got, first) {
					t.Fatalf("%v n=%d: portable %v, %d threads differ from portable, 1 thread", typ, n, port, threads)
				}
				if threads == 2 && iter < 4 {
					if a := testing.AllocsPerRun(20, func() { _ = ip.Invoke() }); a != 0 {
						t.Errorf("%v: %v allocations per threaded Invoke, want 0", typ, a)
					}
				}
				ip.Close()
			}
		}
	}
}
