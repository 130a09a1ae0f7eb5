package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
)

// softmaxQuantComputed is 8-bit SOFTMAX as it was before the exp tables: every exp computed
// by the fixed-point functions, as reference_ops::Softmax does. The looked-up kernel must give
// its bytes exactly.
func softmaxQuantComputed[T int8 | uint8](d *softmaxQuantData, x []T, y8 []int8, y16 []int16, yu8 []uint8) {
	for start := 0; start+d.depth <= len(x); start += d.depth {
		row := x[start : start+d.depth]
		mx := int32(row[0])
		for _, v := range row {
			mx = max(mx, int32(v))
		}
		var sum int32 // Q12.19
		for _, v := range row {
			diff := int32(v) - mx
			if diff >= d.diffMin {
				e := expOnNegativeValues(SaturatingRoundingDoublingHighMul(diff*(int32(1)<<d.leftShift), d.mult), softmaxScaledDiffIntegerBits)
				sum += RoundingDivideByPOT(e, softmaxAccumIntegerBits)
			}
		}
		recip, bitsOverUnit := reciprocal(sum, softmaxAccumIntegerBits)
		for i, v := range row {
			diff := int32(v) - mx
			o := d.outMin
			if diff >= d.diffMin {
				e := expOnNegativeValues(SaturatingRoundingDoublingHighMul(diff*(int32(1)<<d.leftShift), d.mult), softmaxScaledDiffIntegerBits)
				u := RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(recip, e), bitsOverUnit+d.outBitsAdj)
				o = min(max(u+d.outMin, d.outMin), d.outMax)
			}
			switch {
			case yu8 != nil:
				yu8[start+i] = uint8(o)
			case d.outInt16:
				y16[start+i] = int16(o)
			default:
				y8[start+i] = int8(o)
			}
		}
	}
}

// checkSoftmaxLUT prepares an 8-bit SOFTMAX with the given input scale and beta (kind 0: int8
// to int8, 1: int8 to int16, 2: uint8 to uint8) and compares the looked-up kernel with
// softmaxQuantComputed on rows of raw.
func checkSoftmaxLUT(t *testing.T, kind int, inScale, beta float32, depth int, raw []byte) {
	t.Helper()
	if depth <= 0 || len(raw) < depth {
		return
	}
	raw = raw[:len(raw)/depth*depth]
	inDT, outDT, outScale, outZP := tensor.Int8, tensor.Int8, float32(1.0/256), int64(-128)
	switch kind {
	case 1:
		outDT, outScale, outZP = tensor.Int16, 1.0/65536, -32768
	case 2:
		inDT, outDT, outZP = tensor.Uint8, tensor.Uint8, 0
	}
	shape := []int{len(raw) / depth, depth}
	in := tensor.New("in", inDT, shape, &tensor.Quant{Scale: []float32{inScale}, ZeroPoint: []int64{0}})
	out := tensor.New("out", outDT, shape, &tensor.Quant{Scale: []float32{outScale}, ZeroPoint: []int64{outZP}})
	n := &tflite.Node{Inputs: []*tensor.Tensor{in}, Outputs: []*tensor.Tensor{out}}
	if err := prepareSoftmaxInt8(n, beta); err != nil {
		return // a multiplier below one is refused, as by TFLite
	}
	d := n.Data.(*softmaxQuantData)
	switch kind {
	case 0:
		x := int8s(raw, len(raw))
		got, want := make([]int8, len(raw)), make([]int8, len(raw))
		softmaxQuant(d, x, got)
		softmaxQuantComputed(d, x, want, nil, nil)
		if i := firstDiff(got, want); i >= 0 {
			t.Fatalf("int8 scale %g beta %g depth %d: element %d (input %d) is %d, computed %d", inScale, beta, depth, i, x[i], got[i], want[i])
		}
	case 1:
		x := int8s(raw, len(raw))
		got, want := make([]int16, len(raw)), make([]int16, len(raw))
		softmaxQuant(d, x, got)
		softmaxQuantComputed(d, x, nil, want, nil)
		if i := firstDiff(got, want); i >= 0 {
			t.Fatalf("int8->int16 scale %g beta %g depth %d: element %d (input %d) is %d, computed %d", inScale, beta, depth, i, x[i], got[i], want[i])
		}
	case 2:
		got, want := make([]uint8, len(raw)), make([]uint8, len(raw))
		softmaxQuant(d, raw, got)
		softmaxQuantComputed(d, raw, nil, nil, want)
		if i := firstDiff(got, want); i >= 0 {
			t.Fatalf("uint8 scale %g beta %g depth %d: element %d (input %d) is %d, computed %d", inScale, beta, depth, i, raw[i], got[i], want[i])
		}
	}
}

func firstDiff[T comparable](a, b []T) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestSoftmaxLUT: the exp tables give the computed kernel's bytes over random input scales
// (from differences that never reach diffMin to ones that mostly fall below it), betas, row
// lengths and inputs, spread or clustered near the row maximum.
func TestSoftmaxLUT(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for iter := range 600 {
		inScale := float32(math.Pow(2, -12+14*r.Float64()))
		beta := float32(math.Pow(2, -3+6*r.Float64()))
		if iter%5 == 0 {
			beta = 1
		}
		depth := 1 + r.IntN(1100)
		raw := make([]byte, depth*(1+r.IntN(3)))
		spread := []int{256, 64, 8, 1}[r.IntN(4)]
		base := r.IntN(256)
		for i := range raw {
			raw[i] = byte(base + r.IntN(spread))
		}
		checkSoftmaxLUT(t, iter%3, inScale, beta, depth, raw)
	}
	// Every difference 0..255 in one row.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, s := range []float32{1.0 / 4096, 0.01, 0.1, 0.5, 4} {
		for kind := range 3 {
			checkSoftmaxLUT(t, kind, s, 1, 256, slices.Clone(all))
		}
	}
	// A row long enough near its maximum for the int32 sum of exps to wrap, as the
	// reference's does.
	long := make([]byte, 5000)
	for i := range long {
		long[i] = byte(100 + i%2)
	}
	for kind := range 3 {
		checkSoftmaxLUT(t, kind, 0.001, 1, len(long), long)
	}
}

func FuzzSoftmaxLUT(f *testing.F) {
	f.Add(uint8(0), float32(0.1), float32(1), uint16(10), []byte{1, 2, 3, 250, 0, 128, 127, 5, 6, 7})
	f.Add(uint8(1), float32(0.02), float32(2), uint16(4), []byte{0, 255, 128, 127, 1, 1, 1, 1})
	f.Add(uint8(2), float32(0.5), float32(0.5), uint16(3), []byte{0, 255, 17, 200, 201, 202})
	f.Fuzz(func(t *testing.T, kind uint8, inScale, beta float32, depth uint16, raw []byte) {
		if !(inScale > 0 && inScale < 1e6) || !(beta > 0 && beta < 1e6) {
			return
		}
		checkSoftmaxLUT(t, int(kind%3), inScale, beta, int(depth), raw)
	})
}

// BenchmarkSoftmaxInt8 times MobileNet's classifier softmax: one row of 1000 int8 logits.
func BenchmarkSoftmaxInt8(b *testing.B) {
	shape := []int{1, 1000}
	in := tensor.New("in", tensor.Int8, shape, &tensor.Quant{Scale: []float32{0.1}, ZeroPoint: []int64{0}})
	out := tensor.New("out", tensor.Int8, shape, &tensor.Quant{Scale: []float32{1.0 / 256}, ZeroPoint: []int64{-128}})
	n := &tflite.Node{Inputs: []*tensor.Tensor{in}, Outputs: []*tensor.Tensor{out}}
	if err := prepareSoftmaxInt8(n, 1); err != nil {
		b.Fatal(err)
	}
	d := n.Data.(*softmaxQuantData)
	r := rand.New(rand.NewPCG(1, 2))
	x, y := make([]int8, 1000), make([]int8, 1000)
	for i := range x {
		x[i] = int8(r.IntN(256) - 128)
	}
	for b.Loop() {
		softmaxQuant(d, x, y)
	}
}
