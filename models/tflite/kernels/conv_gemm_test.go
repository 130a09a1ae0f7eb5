package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Differential tests of the int8 convolution fast paths: the SIMD tile kernels against their
// portable forms, the branch-free requantization against MultiplyByQuantizedMultiplier, and
// whole CONV_2D and DEPTHWISE_CONV_2D nodes on random shapes and parameters, run on both the
// portable and the SIMD path (where the CPU has one), against a direct transcription of
// reference_integer_ops::ConvPerChannel and DepthwiseConvPerChannel. All must agree exactly.

// randShift is a requantization exponent as QuantizeMultiplier gives them for real scales.
func randShift(r *rand.Rand) int { return r.IntN(20) - 16 }

func randMult(r *rand.Rand) int32 { return int32(1<<30 + r.Int64N(1<<30)) }

func TestRequantInt32(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	edge := []int32{0, 1, -1, 2, -2, 1 << 20, -1 << 20, math.MaxInt32, math.MinInt32, math.MaxInt32 / 2, math.MinInt32 / 2}
	for i := 0; i < 200000; i++ {
		x := int32(r.Uint32())
		if i < len(edge)*len(edge) {
			x = edge[i%len(edge)]
		} else if i%2 == 0 {
			x >>= r.IntN(31)
		}
		q := randMult(r)
		if i%97 == 0 {
			q = 0
		}
		shift := randShift(r)
		if i%13 == 0 {
			shift = -31 + r.IntN(62)
			shift = min(shift, 30)
		}
		var left, right uint8
		if shift > 0 {
			left = uint8(shift)
		} else {
			right = uint8(-shift)
		}
		want := MultiplyByQuantizedMultiplier(x, q, shift)
		if got := requantInt32(x, q, left, right); got != want {
			t.Fatalf("requantInt32(%d, %d, shift %d) = %d, want %d", x, q, shift, got, want)
		}
		// The 32-bit machines' form, on every machine.
		if got := requantNarrow(x<<left, q, right); got != want {
			t.Fatalf("requantNarrow(%d, %d, shift %d) = %d, want %d", x, q, shift, got, want)
		}
	}
}

// quantTable is the quantTable of ngroups groups of 8 channels for these biases, multipliers
// and shifts (channels past len(bias) zero), as fillQuantTable writes it at Invoke.
func quantTable(ngroups int, bias, mult []int32, shift []int, outOff, qMin, qMax int32) []int32 {
	rq := newChanQuant(len(bias))
	for c := range bias {
		rq.set(c, bias[c], mult[c], shift[c])
	}
	t := make([]int32, ngroups*quantGroup)
	fillQuantTable(t, rq, outOff, qMin, qMax)
	return t
}

// TestFillQuantTable holds fillQuantTable (its AVX2 groups on amd64) to the Go loop, with
// every shift from -31 to 30, whole groups and tails.
func TestFillQuantTable(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for iter := range 200 {
		n := 1 + r.IntN(100)
		rq := newChanQuant(n)
		for c := range n {
			rq.set(c, int32(r.Uint32()), randMult(r), (c+iter)%62-31)
		}
		groups := (n+7)/8 + r.IntN(3)
		off, lo, hi := int32(r.IntN(256)-128), int32(-128+r.IntN(60)), int32(127-r.IntN(60))
		got, want := make([]int32, groups*quantGroup), make([]int32, groups*quantGroup)
		for i := range got {
			got[i], want[i] = int32(r.Uint32()), int32(r.Uint32()) // stale scratch
		}
		fillQuantTable(got, rq, off, lo, hi)
		fillQuantTableGo(want, rq, 0, off, lo, hi)
		if !slices.Equal(got, want) {
			t.Fatalf("iter %d: %d channels in %d groups: the table differs from the Go loop's", iter, n, groups)
		}
		for c := range n {
			v := want[(c/8)*quantGroup+c%8:]
			s := int(rq.shift[c])
			if v[0] != rq.bias[c] || v[8] != rq.mult[c] || int(v[16])-int(v[24]) != s || v[32] != int32(int64(1)<<v[24]-1) || v[40] != v[32]>>1 || v[48] != off || v[56] != lo || v[64] != hi {
				t.Fatalf("iter %d channel %d (shift %d): lanes %v", iter, c, s, []int32{v[0], v[8], v[16], v[24], v[32], v[40], v[48], v[56], v[64]})
			}
		}
	}
}

// randQuantTable is a quantTable of random requantization parameters.
func randQuantTable(r *rand.Rand, groups int) []int32 {
	n := groups * 8
	bias, mult, shift := make([]int32, n), make([]int32, n), make([]int, n)
	for c := range n {
		bias[c] = int32(r.IntN(1<<17)) - 1<<16
		mult[c], shift[c] = randMult(r), randShift(r)
	}
	lo := int32(-128 + r.IntN(60))
	hi := int32(127 - r.IntN(60))
	return quantTable(groups, bias, mult, shift, int32(r.IntN(256)-128), lo, hi)
}

func TestGemmRowMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 300; iter++ {
		pairs := 1 + r.IntN(70)
		blocks := 1 + r.IntN(3)
		stride := 2*pairs + 2*r.IntN(3)
		yStride := 16*blocks + r.IntN(5)
		x := make([]int16, 4*stride)
		for i := range x {
			x[i] = int16(r.IntN(256) - 128)
		}
		w := make([]int8, blocks*32*pairs)
		for i := range w {
			w[i] = int8(r.IntN(256) - 128)
		}
		q := randQuantTable(r, 2*blocks)
		got, want := make([]int8, 4*yStride), make([]int8, 4*yStride)
		gemmRow4(x, stride, w, pairs, q, got, yStride, blocks)
		gemmRow4x16Go(x, stride, w, pairs, q, want, yStride, blocks)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("iter %d (%s, %d blocks of %d pairs): output %d = %d, portable %d", iter, KernelPath(), blocks, pairs, i, got[i], want[i])
			}
		}
		// The portable kernel against plain sums and MultiplyByQuantizedMultiplier.
		for row := range 4 {
			for c := range 16 * blocks {
				wc, g := w[(c/8)*16*pairs:], q[(c/8)*quantGroup:]
				var acc int32
				for i := 0; i < 2*pairs; i++ {
					acc += int32(x[row*stride+i]) * int32(wc[(i/2)*16+(c%8)*2+i%2])
				}
				j := c % 8
				shift := int(g[16+j]) - int(g[24+j])
				v := MultiplyByQuantizedMultiplier(acc+g[j], g[8+j], shift) + g[48+j]
				if e := int8(min(max(v, g[56+j]), g[64+j])); want[row*yStride+c] != e {
					t.Fatalf("iter %d: portable [%d][%d] = %d, reference %d", iter, row, c, want[row*yStride+c], e)
				}
			}
		}
	}
}

func TestWiden(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for n := 0; n < 100; n++ {
		src := make([]int8, n)
		for i := range src {
			src[i] = int8(r.IntN(256) - 128)
		}
		dst := make([]int16, n+1)
		dst[n] = 12345
		widen(dst[:n], src)
		for i, v := range src {
			if dst[i] != int16(v) {
				t.Fatalf("widen %d values: dst[%d] = %d, want %d", n, i, dst[i], v)
			}
		}
		if dst[n] != 12345 {
			t.Fatalf("widen %d values wrote past the end", n)
		}
		d32 := make([]int32, n+1)
		d32[n] = 12345
		widen32(d32[:n], src)
		for i, v := range src {
			if d32[i] != int32(v) {
				t.Fatalf("widen32 %d values: dst[%d] = %d, want %d", n, i, d32[i], v)
			}
		}
		if d32[n] != 12345 {
			t.Fatalf("widen32 %d values wrote past the end", n)
		}
	}
}

func TestDwRowMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for iter := 0; iter < 300; iter++ {
		c := 8 * (1 + r.IntN(12))
		npix := 1 + r.IntN(6)
		var taps [9][]int8
		var steps [9]int
		for i := range taps {
			if r.IntN(4) > 0 {
				steps[i] = c * (1 + r.IntN(2))
			}
			taps[i] = make([]int8, (npix-1)*steps[i]+c+r.IntN(3))
			for j := range taps[i] {
				taps[i][j] = int8(r.IntN(256) - 128)
			}
		}
		w8 := make([]int8, 9*c)
		for i := range w8 {
			w8[i] = int8(r.IntN(256) - 128)
		}
		if iter%10 == 0 { // the extremes, where a wrong sign extension or pairing shows
			for i := range w8 {
				w8[i] = [2]int8{-128, 127}[r.IntN(2)]
			}
			for _, tp := range taps {
				for j := range tp {
					tp[j] = [2]int8{-128, 127}[r.IntN(2)]
				}
			}
		}
		w, wGo := make([]int32, 9*c), make([]int32, 9*c)
		dwPackWeights(w, w8, c)
		widen32Go(wGo, w8)
		checkDwPack(t, w, w8, c)
		q := randQuantTable(r, c/8)
		got, want := make([]int8, npix*c), make([]int8, npix*c)
		dwRow3x3(&taps, &steps, npix, c, w, q, got)
		dwRow3x3x8Go(&taps, &steps, npix, c, wGo, q, want)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("iter %d (%s, %d pixels of %d channels): output %d = %d, portable %d", iter, KernelPath(), npix, c, i, got[i], want[i])
			}
		}
	}
}

// convCase is a random int8 CONV_2D or DEPTHWISE_CONV_2D node.
type convCase struct {
	depthwise              bool
	n, h, w, inC, outC     int
	m                      int // depth multiplier
	fh, fw, sh, sw, dh, dw int
	pad                    schema.Padding
	act                    schema.Activation
	inScale, outScale      float32
	inZP, outZP            int
	wScale                 []float32 // per output channel, or one
	filter                 []int8
	bias                   []int32 // nil: no bias input
}

func randConvCase(r *rand.Rand, depthwise bool) convCase {
	c := convCase{depthwise: depthwise, n: 1 + r.IntN(2), h: 1 + r.IntN(12), w: 1 + r.IntN(12),
		inC: 1 + r.IntN(20), m: 1, fh: 1 + r.IntN(4), fw: 1 + r.IntN(4), sh: 1 + r.IntN(3), sw: 1 + r.IntN(3),
		dh: 1 + r.IntN(2), dw: 1 + r.IntN(2), pad: schema.Padding(r.IntN(2)),
		act:     []schema.Activation{schema.ActivationNone, schema.ActivationRelu, schema.ActivationRelu6}[r.IntN(3)],
		inScale: 0.01 + r.Float32()*0.05, outScale: 0.02 + r.Float32()*0.2, inZP: r.IntN(256) - 128, outZP: r.IntN(256) - 128}
	switch {
	case r.IntN(4) == 0:
		c.fh, c.fw, c.dh, c.dw = 3, 3, 1, 1 // the unrolled and SIMD depthwise kernels
	case r.IntN(4) == 0:
		c.fh, c.fw, c.sh, c.sw = 1, 1, 1, 1 // pointwise: the direct GEMM
	}
	if depthwise {
		c.m = []int{1, 1, 2, 3, 8}[r.IntN(5)]
		if r.IntN(3) == 0 {
			c.inC = 8 * (1 + r.IntN(4))
		}
		c.outC = c.inC * c.m
	} else {
		c.outC = 1 + r.IntN(40)
	}
	nw := c.outC * c.fh * c.fw * c.inC
	if depthwise {
		nw = c.fh * c.fw * c.outC
	}
	c.filter = make([]int8, nw)
	for i := range c.filter {
		c.filter[i] = int8(r.IntN(255) - 127)
	}
	c.wScale = []float32{0.002 + r.Float32()*0.01}
	if r.IntN(2) == 0 {
		c.wScale = make([]float32, c.outC)
		for i := range c.wScale {
			c.wScale[i] = 0.001 + r.Float32()*0.02
		}
	}
	if r.IntN(5) != 0 {
		c.bias = make([]int32, c.outC)
		for i := range c.bias {
			c.bias[i] = int32(r.IntN(40001) - 20000)
		}
	}
	return c
}

func (c convCase) String() string {
	kind := "conv"
	if c.depthwise {
		kind = fmt.Sprintf("depthwise m=%d", c.m)
	}
	return fmt.Sprintf("%s in %dx%dx%dx%d out C %d filter %dx%d stride %dx%d dilation %dx%d padding %d act %d, %d scales, bias %v",
		kind, c.n, c.h, c.w, c.inC, c.outC, c.fh, c.fw, c.sh, c.sw, c.dh, c.dw, c.pad, c.act, len(c.wScale), c.bias != nil)
}

// outSize is TFLite's ComputeOutSize; ok is false for a filter larger than the input.
func (c convCase) outSize() (oh, ow int, ok bool) {
	oh = computeOutSize(c.pad, c.h, c.fh, c.sh, c.dh)
	ow = computeOutSize(c.pad, c.w, c.fw, c.sw, c.dw)
	return oh, ow, oh > 0 && ow > 0
}

func (c convCase) model(t testing.TB) []byte {
	t.Helper()
	oh, ow, _ := c.outSize()
	m := write.NewModel("outpost conv differential test")
	sg := m.Subgraph()
	i8 := func(scale float32, zp int) *write.Quant {
		return &write.Quant{Scale: []float32{scale}, ZeroPoint: []int64{int64(zp)}}
	}
	in := sg.AddTensor(write.Tensor{Name: "in", Type: schema.TensorTypeInt8, Shape: []int32{int32(c.n), int32(c.h), int32(c.w), int32(c.inC)}, Quant: i8(c.inScale, c.inZP)})
	fshape := []int32{int32(c.outC), int32(c.fh), int32(c.fw), int32(c.inC)}
	dim := int32(0)
	if c.depthwise {
		fshape, dim = []int32{1, int32(c.fh), int32(c.fw), int32(c.outC)}, 3
	}
	fdata := make([]byte, len(c.filter))
	for i, v := range c.filter {
		fdata[i] = byte(v)
	}
	f := sg.AddTensor(write.Tensor{Name: "filter", Type: schema.TensorTypeInt8, Shape: fshape, Data: fdata,
		Quant: &write.Quant{Scale: c.wScale, ZeroPoint: make([]int64, len(c.wScale)), Dim: dim}})
	b := int32(-1)
	if c.bias != nil {
		bdata := make([]byte, 4*len(c.bias))
		for i, v := range c.bias {
			binary.LittleEndian.PutUint32(bdata[4*i:], uint32(v))
		}
		b = sg.AddTensor(write.Tensor{Name: "bias", Type: schema.TensorTypeInt32, Shape: []int32{int32(c.outC)}, Data: bdata})
	}
	out := sg.AddTensor(write.Tensor{Name: "out", Type: schema.TensorTypeInt8, Shape: []int32{int32(c.n), int32(oh), int32(ow), int32(c.outC)}, Quant: i8(c.outScale, c.outZP)})
	if c.depthwise {
		sg.AddOp(schema.OpDepthwiseConv2D, 3, []int32{in, f, b}, []int32{out}, write.DepthwiseConv2DOptions{Padding: c.pad,
			StrideW: int32(c.sw), StrideH: int32(c.sh), DepthMultiplier: int32(c.m), DilationW: int32(c.dw), DilationH: int32(c.dh), Activation: c.act})
	} else {
		sg.AddOp(schema.OpConv2D, 3, []int32{in, f, b}, []int32{out}, write.Conv2DOptions{Padding: c.pad,
			StrideW: int32(c.sw), StrideH: int32(c.sh), DilationW: int32(c.dw), DilationH: int32(c.dh), Activation: c.act})
	}
	sg.SetInputs(in)
	sg.SetOutputs(out)
	data, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// reference is reference_integer_ops::ConvPerChannel / DepthwiseConvPerChannel written out
// plainly: acc = Σ over taps inside the input of w * (x + input_offset), + bias,
// MultiplyByQuantizedMultiplier with the channel's multiplier, + output offset, clamp.
func (c convCase) reference(x []int8, lo, hi int32) []int8 {
	oh, ow, _ := c.outSize()
	padH := computePadding(c.sh, c.dh, c.h, c.fh, oh)
	padW := computePadding(c.sw, c.dw, c.w, c.fw, ow)
	y := make([]int8, c.n*oh*ow*c.outC)
	for b := 0; b < c.n; b++ {
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				for oc := 0; oc < c.outC; oc++ {
					var acc int32
					for fy := 0; fy < c.fh; fy++ {
						for fx := 0; fx < c.fw; fx++ {
							iy, ix := oy*c.sh-padH+fy*c.dh, ox*c.sw-padW+fx*c.dw
							if iy < 0 || iy >= c.h || ix < 0 || ix >= c.w {
								continue
							}
							px := ((b*c.h+iy)*c.w + ix) * c.inC
							if c.depthwise {
								acc += int32(c.filter[(fy*c.fw+fx)*c.outC+oc]) * (int32(x[px+oc/c.m]) - int32(c.inZP))
								continue
							}
							for ic := 0; ic < c.inC; ic++ {
								acc += int32(c.filter[((oc*c.fh+fy)*c.fw+fx)*c.inC+ic]) * (int32(x[px+ic]) - int32(c.inZP))
							}
						}
					}
					if c.bias != nil {
						acc += c.bias[oc]
					}
					ws := c.wScale[0]
					if len(c.wScale) > 1 {
						ws = c.wScale[oc]
					}
					mult, shift := QuantizeMultiplier(float64(c.inScale) * float64(ws) / float64(c.outScale))
					v := MultiplyByQuantizedMultiplier(acc, mult, shift) + int32(c.outZP)
					y[((b*oh+oy)*ow+ox)*c.outC+oc] = int8(min(max(v, lo), hi))
				}
			}
		}
	}
	return y
}

func TestConvInt8PathsMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	done := 0
	cases := shortCases(400, 60)
	for iter := 0; done < cases && iter < 4000; iter++ {
		if checkConvPaths(t, r, iter%2 == 1) {
			done++
		}
	}
	if done < cases {
		t.Fatalf("only %d valid random cases", done)
	}
}

// checkConvPaths runs one random conv (or depthwise) layer on every int8 form (forForms) and
// compares every byte with the reference; false when the random shape is invalid.
func checkConvPaths(t *testing.T, r *rand.Rand, depthwise bool) bool {
	t.Helper()
	c := randConvCase(r, depthwise)
	if _, _, ok := c.outSize(); !ok {
		return false
	}
	data := c.model(t)
	x := make([]int8, c.n*c.h*c.w*c.inC)
	for i := range x {
		x[i] = int8(r.IntN(256) - 128)
	}
	forForms(!depthwise, func(path string) {
		m, err := tflite.Load(data)
		if err != nil {
			t.Fatalf("%v: load: %v", c, err)
		}
		ip, err := tflite.NewInterpreter(m, Builtins(), tflite.Options{})
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		copy(ip.Input(0).Int8(), x)
		if err := ip.Invoke(); err != nil {
			t.Fatalf("%v (%s): invoke: %v", c, path, err)
		}
		lo, hi, err := quantActivationRange(c.act, ip.Output(0))
		if err != nil {
			t.Fatal(err)
		}
		want := c.reference(x, lo, hi)
		got := ip.Output(0).Int8()
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%v (%s): output %d = %d, reference %d", c, path, i, got[i], want[i])
			}
		}
	})
	return true
}

// forForms runs f once per int8 GEMM form with that form forced at Prepare (and SetPortable
// on for the portable one, so the other layers take their pure-Go kernels too), restoring the
// settings afterwards: every form this CPU runs in assembly, and the others on their Go
// kernels, so each form's packing and driver are tested on every machine. The portable form
// runs with both of its kernels (pairMACs): the int8 weights widened to int64 pairs of 64-bit
// machines and the int8 loops of 32-bit ones. Without gemm (a layer that never takes the GEMM: depthwise) only the
// portable and SIMD settings differ.
func forForms(gemm bool, f func(name string)) {
	defer SetPortable(portable.Load())
	defer setInt8Form(setInt8Form(-1))
	defer func(was bool) { pairMACs = was }(pairMACs)
	for form := range numForms {
		if !gemm && form > formWiden {
			break
		}
		SetPortable(form == formPortable)
		setInt8Form(form)
		name := formNames[form]
		if !haveForm[form] {
			name += " (Go kernel)"
		}
		if form == formPortable && gemm {
			for _, pairs := range []bool{true, false} {
				pairMACs = pairs
				f(name + map[bool]string{true: " (widened to int64 pairs)", false: " (int8)"}[pairs])
			}
			continue
		}
		f(name)
	}
}

// extremeQuantTable is a quantTable whose lanes cover the edges of requantInt32's domain.
func extremeQuantTable(r *rand.Rand, groups int) []int32 {
	n := groups * 8
	bias, mult, shift := make([]int32, n), make([]int32, n), make([]int, n)
	biases := []int32{0, math.MaxInt32, math.MinInt32, 1 << 30, -1 << 30}
	mults := []int32{0, 1, math.MaxInt32, 1 << 30}
	for c := range n {
		bias[c] = int32(r.Uint32())
		if r.IntN(3) == 0 {
			bias[c] = biases[r.IntN(len(biases))]
		}
		// QuantizeMultiplier never gives a negative multiplier, so SQRDMULH cannot saturate.
		mult[c] = int32(r.Uint32() >> 1)
		if r.IntN(3) == 0 {
			mult[c] = mults[r.IntN(len(mults))]
		}
		shift[c] = r.IntN(62) - 31
	}
	lo := int32(-128 + r.IntN(3))
	hi := int32(127 - r.IntN(3))
	return quantTable(groups, bias, mult, shift, int32(r.IntN(256)-128), lo, hi)
}

// TestSplitChunks: the chunks of a layer's output pixels cover them once, in order, in whole
// tiles, none over the scratch splitChunks sizes; with several workers there are at least
// partsPerWorker a worker (as the tiles allow), a multiple of the workers, and two chunks
// differ by a tile at most.
func TestSplitChunks(t *testing.T) {
	for _, c := range []struct{ per, limit, workers, tile int }{
		{196, 1000, 2, 4}, {49, 1000, 2, 4}, {12544, 512, 2, 4}, {1, 1000, 2, 4}, {7, 1000, 4, 4},
		{3136, 400, 3, 4}, {196, 1000, 1, 4}, {12544, 512, 1, 4}, {101, 10, 2, 2}, {5, 1, 1, 2},
		{0, 100, 2, 4},
	} {
		chunks, rows := splitChunks(c.per, c.limit, c.workers, c.tile)
		gm := &gemmInt8{chunks: chunks, tile: c.tile}
		tiles := (c.per + c.tile - 1) / c.tile
		if most := max(c.tile, (min(c.per, c.limit)+c.tile-1)/c.tile*c.tile); rows > most {
			t.Errorf("%+v: chunks of up to %d pixels, want at most %d", c, rows, most)
		}
		if c.workers > 1 && tiles > 0 && chunks != tiles && (chunks%c.workers != 0 || chunks < c.workers*partsPerWorker) {
			t.Errorf("%+v: %d chunks for %d workers", c, chunks, c.workers)
		}
		next, least, most := 0, c.per, 0
		for i := range chunks {
			p0, n := gm.chunk(i, c.per)
			if p0 != next || n < 1 || n > rows || p0%c.tile != 0 {
				t.Fatalf("%+v: chunk %d is [%d,%d), want it to start at %d, hold 1 to %d pixels, in whole tiles", c, i, p0, p0+n, next, rows)
			}
			next, least, most = p0+n, min(least, n), max(most, n)
		}
		if next != c.per {
			t.Errorf("%+v: the chunks cover [0,%d), want [0,%d)", c, next, c.per)
		}
		if chunks > 1 && most-least > c.tile && next%c.tile == 0 {
			t.Errorf("%+v: chunks of %d to %d pixels, want them to differ by a tile at most", c, least, most)
		}
	}
}
