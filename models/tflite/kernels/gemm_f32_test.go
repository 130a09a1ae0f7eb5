package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func randF32s(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = r.Float32()*2 - 1
	}
	return v
}

// TestConvF32MatchesReference runs random float32 convolutions through the GEMM (convF32) and
// the reference loops (convFloat): the sums are taken in the same order, so the results are
// the same bits (a zero may differ in sign only).
func TestConvF32MatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
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
			fMin: float32(math.Inf(-1)), fMax: float32(math.Inf(1))}
		if c.act == 1 {
			g.fMin = 0
		}
		x := randF32s(r, c.n*c.h*c.w*c.inC)
		w := randF32s(r, c.outC*c.fh*c.fw*c.inC)
		var b []float32
		if c.bias != nil {
			b = randF32s(r, c.outC)
		}
		want := make([]float32, c.n*oh*ow*c.outC)
		got := make([]float32, len(want))
		convFloat(g, x, w, b, want)
		var col []float32
		if !g.pointwise() {
			col = make([]float32, g.f32ScratchLen())
		}
		g.convF32(col, x, w, b, got)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%v: output %d = %g, reference %g", c, i, got[i], want[i])
			}
		}
	}
}

// TestFCF32MatchesReference does the same for float32 FULLY_CONNECTED (gemmF32 against
// evalFCFloat), bit for bit.
func TestFCF32MatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 300 {
		d := &fcData{batches: 1 + r.IntN(5), depth: 1 + r.IntN(300), units: 1 + r.IntN(70),
			fMin: float32(math.Inf(-1)), fMax: float32(math.Inf(1))}
		if r.IntN(2) == 0 {
			d.fMin, d.fMax = -1, 1
		}
		x, w := randF32s(r, d.batches*d.depth), randF32s(r, d.units*d.depth)
		var b []float32
		if r.IntN(4) != 0 {
			b = randF32s(r, d.units)
		}
		want := make([]float32, d.batches*d.units)
		got := make([]float32, len(want))
		evalFCFloat(d, x, w, b, want)
		gemmF32(x, d.batches, d.depth, w, b, d.units, got, d.fMin, d.fMax)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("fc %dx%d -> %d: output %d = %g, reference %g", d.batches, d.depth, d.units, i, got[i], want[i])
			}
		}
	}
}

// BenchmarkF32Shapes times the float32 GEMM against the reference loops on a dense
// autoencoder layer and ResNet-8's 3x3 layers.
func BenchmarkF32Shapes(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	d := &fcData{batches: 1, depth: 640, units: 128, fMin: -1e30, fMax: 1e30}
	x, w := randF32s(r, 640), randF32s(r, 640*128)
	y := make([]float32, 128)
	b.Run("fc_640_to_128/reference", func(b *testing.B) {
		for b.Loop() {
			evalFCFloat(d, x, w, nil, y)
		}
	})
	b.Run("fc_640_to_128/gemm", func(b *testing.B) {
		for b.Loop() {
			gemmF32(x, 1, 640, w, nil, 128, y, d.fMin, d.fMax)
		}
	})
	if useF32SIMD(640) {
		b.Run("fc_640_to_128/simd", func(b *testing.B) {
			for b.Loop() {
				gemmF32SIMD(x, 1, 640, w, nil, 128, y, d.fMin, d.fMax)
			}
		})
	}
	{
		g := &convGeom{batches: 1, inH: 28, inW: 28, inC: 96, outH: 28, outW: 28, outC: 96, depthMul: 1, fH: 3, fW: 3,
			strideH: 1, strideW: 1, dilH: 1, dilW: 1, padH: 1, padW: 1, fMin: 0, fMax: 6}
		x, w := randF32s(r, 28*28*96), randF32s(r, 9*96)
		y := make([]float32, 28*28*96)
		b.Run("depthwise_28x28x96_f3x3/reference", func(b *testing.B) {
			for b.Loop() {
				depthwiseFloat(g, x, w, nil, y)
			}
		})
		b.Run("depthwise_28x28x96_f3x3/loops_swapped", func(b *testing.B) {
			for b.Loop() {
				depthwiseF32(g, x, w, nil, y, false)
			}
		})
		if haveF32SIMD {
			b.Run("depthwise_28x28x96_f3x3/simd", func(b *testing.B) {
				g.dwPackF32 = packDWF32(w, nil, 9, 96)
				for b.Loop() {
					depthwiseF32(g, x, w, nil, y, true)
				}
			})
		}
	}
	for _, c := range benchConvShapes[:4] {
		oh, ow := (c.h+c.sh-1)/c.sh, (c.w+c.sw-1)/c.sw
		g := &convGeom{batches: 1, inH: c.h, inW: c.w, inC: c.inC, outH: oh, outW: ow, outC: c.outC,
			fH: c.fh, fW: c.fw, strideH: c.sh, strideW: c.sw, dilH: 1, dilW: 1,
			padH: computePadding(c.sh, 1, c.h, c.fh, oh), padW: computePadding(c.sw, 1, c.w, c.fw, ow), fMin: 0, fMax: 1e30}
		x, w := randF32s(r, c.h*c.w*c.inC), randF32s(r, c.outC*c.fh*c.fw*c.inC)
		y := make([]float32, oh*ow*c.outC)
		col := make([]float32, g.colRowsF32()*c.fh*c.fw*c.inC)
		name := fmt.Sprintf("conv_%dx%dx%d_f%dx%d_s%d_oc%d", c.h, c.w, c.inC, c.fh, c.fw, c.sh, c.outC)
		b.Run(name+"/reference", func(b *testing.B) {
			for b.Loop() {
				convFloat(g, x, w, nil, y)
			}
		})
		b.Run(name+"/gemm", func(b *testing.B) {
			for b.Loop() {
				g.convF32(col, x, w, nil, y)
			}
		})
		if useF32SIMD(c.fh * c.fw * c.inC) {
			gs := *g
			gs.f32simd = true
			b.Run(name+"/simd", func(b *testing.B) {
				for b.Loop() {
					gs.convF32(col, x, w, nil, y)
				}
			})
		}
		if haveF32Tile {
			gt := *g
			gt.f32tile = true
			s := make([]float32, gt.f32ScratchLen())
			b.Run(name+"/tile", func(b *testing.B) {
				for b.Loop() {
					gt.convF32(s, x, w, nil, y)
				}
			})
		}
	}
}

// TestDepthwiseF32MatchesReference holds depthwiseF32 to depthwiseFloat, bit for bit.
func TestDepthwiseF32MatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	done := 0
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
		if c.act == 2 {
			g.fMin, g.fMax = 0, 6
		}
		x := randF32s(r, c.n*c.h*c.w*c.inC)
		w := randF32s(r, c.fh*c.fw*c.outC)
		var b []float32
		if c.bias != nil {
			b = randF32s(r, c.outC)
		}
		want := make([]float32, c.n*oh*ow*c.outC)
		got := make([]float32, len(want))
		depthwiseFloat(g, x, w, b, want)
		depthwiseF32(g, x, w, b, got, false)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%v: output %d = %g, reference %g", c, i, got[i], want[i])
			}
		}
	}
}
