package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// sumClose bounds the difference of two float32 sums of the same terms taken in different
// orders: rounding moves a sum by a small multiple of float32's epsilon times the magnitude of
// its terms (mag = Σ|term|), whatever the result's own size after cancellation. 2e-6 × mag is
// about 17 epsilons; real models, whose outputs do not cancel like random ±1 weights, stay
// within docs/tflite.md's 1e-5 relative (the conformance tests check that on every float model).
func sumClose(a, b, mag float32) bool {
	return math.Abs(float64(a)-float64(b)) <= 2e-6*float64(mag)+1e-7
}

func absF32s(v []float32) []float32 {
	if v == nil {
		return nil
	}
	a := make([]float32, len(v))
	for i, x := range v {
		a[i] = float32(math.Abs(float64(x)))
	}
	return a
}

func needF32SIMD(t *testing.T) {
	if !haveF32SIMD {
		t.Skip("no float32 SIMD kernel on this CPU or build")
	}
}

// The SIMD float GEMM stays within the float tolerance of the reference loops on random
// dense layers, and gives each output the same bits whatever the number of rows in the call
// (one fixed order per path: tiles of 2 rows and of 1 row, and the leftover channels' Go
// form, sum alike).
func TestFCF32SIMD(t *testing.T) {
	needF32SIMD(t)
	r := rand.New(rand.NewPCG(21, 22))
	for range 300 {
		d := &fcData{batches: 1 + r.IntN(5), depth: 1 + r.IntN(700), units: 1 + r.IntN(70),
			fMin: float32(math.Inf(-1)), fMax: float32(math.Inf(1))}
		x, w := randF32s(r, d.batches*d.depth), randF32s(r, d.units*d.depth)
		var b []float32
		if r.IntN(4) != 0 {
			b = randF32s(r, d.units)
		}
		want := make([]float32, d.batches*d.units)
		got, mag := make([]float32, len(want)), make([]float32, len(want))
		evalFCFloat(d, x, w, b, want)
		evalFCFloat(d, absF32s(x), absF32s(w), absF32s(b), mag)
		gemmF32SIMD(x, d.batches, d.depth, w, b, d.units, got, d.fMin, d.fMax)
		for i := range want {
			if !sumClose(got[i], want[i], mag[i]) {
				t.Fatalf("fc %dx%d -> %d: output %d = %g, reference %g", d.batches, d.depth, d.units, i, got[i], want[i])
			}
		}
		one := make([]float32, d.units)
		for p := range d.batches {
			gemmF32SIMD(x[p*d.depth:(p+1)*d.depth], 1, d.depth, w, b, d.units, one, d.fMin, d.fMax)
			for o := range one {
				if math.Float32bits(one[o]) != math.Float32bits(got[p*d.units+o]) {
					t.Fatalf("fc %dx%d -> %d: row %d output %d alone %g, in a batch %g", d.batches, d.depth, d.units, p, o, one[o], got[p*d.units+o])
				}
			}
			// A leftover channel (Go form) against the assembly's 4-channel tile.
			if d.units >= 4 && b == nil {
				for o := range 4 {
					s := dotF32Lanes(x[p*d.depth:(p+1)*d.depth], w[o*d.depth:(o+1)*d.depth])
					if math.Float32bits(s) != math.Float32bits(got[p*d.units+o]) {
						t.Errorf("fc depth %d: channel %d Go lanes %g, assembly %g", d.depth, o, s, got[p*d.units+o])
					}
				}
			}
		}
	}
}

// TestConvF32SIMD: the float32 convolution on the SIMD GEMM against the reference loops.
func TestConvF32SIMD(t *testing.T) {
	needF32SIMD(t)
	r := rand.New(rand.NewPCG(23, 24))
	done := 0
	for iter := 0; done < 300 && iter < 3000; iter++ {
		c := randConvCase(r, false)
		oh, ow, ok := c.outSize()
		if !ok {
			continue
		}
		done++
		g := &convGeom{batches: c.n, inH: c.h, inW: c.w, inC: c.inC, outH: oh, outW: ow, outC: c.outC,
			fH: c.fh, fW: c.fw, strideH: c.sh, strideW: c.sw, dilH: c.dh, dilW: c.dw,
			padH: computePadding(c.sh, c.dh, c.h, c.fh, oh), padW: computePadding(c.sw, c.dw, c.w, c.fw, ow),
			fMin: float32(math.Inf(-1)), fMax: float32(math.Inf(1)), f32simd: true}
		x := randF32s(r, c.n*c.h*c.w*c.inC)
		w := randF32s(r, c.outC*c.fh*c.fw*c.inC)
		var b []float32
		if c.bias != nil {
			b = randF32s(r, c.outC)
		}
		want := make([]float32, c.n*oh*ow*c.outC)
		got, mag := make([]float32, len(want)), make([]float32, len(want))
		convFloat(g, x, w, b, want)
		convFloat(g, absF32s(x), absF32s(w), absF32s(b), mag)
		var col []float32
		if !g.pointwise() {
			col = make([]float32, g.f32ScratchLen())
		}
		g.convF32(col, x, w, b, got)
		for i := range want {
			if !sumClose(got[i], want[i], mag[i]) {
				t.Fatalf("%v: output %d = %g, reference %g", c, i, got[i], want[i])
			}
		}
	}
}

// TestConvF32Tile holds the broadcast tile form of float32 CONV_2D (conv_f32.go) within the
// float tolerance of the reference loops on random layers (pointwise and im2col, strides,
// dilations, partial tiles of rows and channels, with and without bias and activation), and
// checks that the same layer run on the image followed by a copy of itself (2 batches) gives
// each output the same bits: for pointwise layers, whose pixels of all batches form one run
// of rows, that moves the tile boundaries and the partial last tile.
func TestConvF32Tile(t *testing.T) {
	if !haveF32Tile {
		t.Skip("no float32 convolution tile on this CPU or build")
	}
	r := rand.New(rand.NewPCG(41, 42))
	done := 0
	for iter := 0; done < 300 && iter < 3000; iter++ {
		c := randConvCase(r, false)
		oh, ow, ok := c.outSize()
		if !ok {
			continue
		}
		done++
		g := &convGeom{batches: c.n, inH: c.h, inW: c.w, inC: c.inC, outH: oh, outW: ow, outC: c.outC,
			fH: c.fh, fW: c.fw, strideH: c.sh, strideW: c.sw, dilH: c.dh, dilW: c.dw,
			padH: computePadding(c.sh, c.dh, c.h, c.fh, oh), padW: computePadding(c.sw, c.dw, c.w, c.fw, ow),
			fMin: float32(math.Inf(-1)), fMax: float32(math.Inf(1)), f32tile: true}
		if c.act == 1 {
			g.fMin, g.fMax = 0, 6
		}
		x := randF32s(r, c.n*c.h*c.w*c.inC)
		w := randF32s(r, c.outC*c.fh*c.fw*c.inC)
		var b []float32
		if c.bias != nil {
			b = randF32s(r, c.outC)
		}
		want := make([]float32, c.n*oh*ow*c.outC)
		got, mag := make([]float32, len(want)), make([]float32, len(want))
		convFloat(g, x, w, b, want)
		convFloat(g, absF32s(x), absF32s(w), absF32s(b), mag)
		g.convF32(make([]float32, g.f32ScratchLen()), x, w, b, got)
		for i := range want {
			if !sumClose(got[i], want[i], mag[i]) {
				t.Fatalf("%v: output %d = %g, reference %g", c, i, got[i], want[i])
			}
		}
		g2 := *g
		g2.batches = 2 * c.n
		got2 := make([]float32, 2*len(want))
		g2.convF32(make([]float32, g2.f32ScratchLen()), append(append([]float32(nil), x...), x...), w, b, got2)
		for i := range got2 {
			if math.Float32bits(got2[i]) != math.Float32bits(got[i%len(got)]) {
				t.Fatalf("%v: output %d = %g in a batch of 2, %g alone", c, i, got2[i], got[i%len(got)])
			}
		}
	}
}

// TestDepthwiseF32SIMD: the fused depthwise forms (per tap over the channels, and the pixel
// kernel for interior pixels when the weights are packed) against the reference loops.
func TestDepthwiseF32SIMD(t *testing.T) {
	needF32SIMD(t)
	r := rand.New(rand.NewPCG(25, 26))
	done, packed := 0, 0
	defer func() {
		if !portable.Load() && packed < 20 {
			t.Errorf("only %d of %d layers took the pixel kernel", packed, done)
		}
	}()
	for iter := 0; done < 300 && iter < 3000; iter++ {
		c := randConvCase(r, true)
		oh, ow, ok := c.outSize()
		if !ok {
			continue
		}
		done++
		g := &convGeom{batches: c.n, inH: c.h, inW: c.w, inC: c.inC, outH: oh, outW: ow, outC: c.outC, depthMul: c.m,
			fH: c.fh, fW: c.fw, strideH: c.sh, strideW: c.sw, dilH: c.dh, dilW: c.dw,
			padH: computePadding(c.sh, c.dh, c.h, c.fh, oh), padW: computePadding(c.sw, c.dw, c.w, c.fw, ow),
			fMin: float32(math.Inf(-1)), fMax: float32(math.Inf(1))}
		x := randF32s(r, c.n*c.h*c.w*c.inC)
		w := randF32s(r, c.fh*c.fw*c.outC)
		var b []float32
		if c.bias != nil {
			b = randF32s(r, c.outC)
		}
		want := make([]float32, c.n*oh*ow*c.outC)
		got, mag := make([]float32, len(want)), make([]float32, len(want))
		depthwiseFloat(g, x, w, b, want)
		depthwiseFloat(g, absF32s(x), absF32s(w), absF32s(b), mag)
		simd := useF32SIMDDepthwise(c.outC, c.m)
		if simd && c.outC%8 == 0 && c.fh*c.fw <= maxDWTaps {
			g.dwPackF32 = packDWF32(w, b, c.fh*c.fw, c.outC)
			packed++
		}
		depthwiseF32(g, x, w, b, got, simd)
		for i := range want {
			if !sumClose(got[i], want[i], mag[i]) {
				t.Fatalf("%v: output %d = %g, reference %g", c, i, got[i], want[i])
			}
		}
	}
}
