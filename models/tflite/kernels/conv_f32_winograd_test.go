package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestConvF32Winograd holds the Winograd form of float32 3x3 CONV_2D (conv_f32_winograd.go)
// within the float tolerance of the reference loops on random layers (SAME and VALID
// padding, odd and even output sizes, so partial tiles on both edges, chunks of tiles, with
// and without bias and activation), and checks that the image followed by a copy of itself
// (2 batches) gives each output the same bits.
func TestConvF32Winograd(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 62))
	worst, done := 0.0, 0
	for i := range 200 {
		h, w := 2+r.IntN(14), 2+r.IntN(14)
		inC, outC := 4+r.IntN(40), 4+r.IntN(40)
		if i%10 == 0 {
			inC, outC = 64+r.IntN(200), 4+r.IntN(8) // long sums, and more than one chunk
		}
		pad := 1
		if r.IntN(3) == 0 {
			pad = 0
		}
		oh, ow := h, w
		if pad == 0 {
			oh, ow = h-2, w-2
		}
		g := &convGeom{batches: 1 + r.IntN(2), inH: h, inW: w, inC: inC, outH: oh, outW: ow, outC: outC,
			fH: 3, fW: 3, strideH: 1, strideW: 1, dilH: 1, dilW: 1, padH: pad, padW: pad,
			fMin: float32(math.Inf(-1)), fMax: float32(math.Inf(1))}
		if !g.winogradF32OK() {
			continue
		}
		g.f32wino = true
		done++
		if r.IntN(3) == 0 {
			g.fMin, g.fMax = 0, 6
		}
		name := fmt.Sprintf("%dx%dx%d pad %d ->%d x%d", h, w, inC, pad, outC, g.batches)
		x := randF32s(r, g.batches*h*w*inC)
		wt := randF32s(r, outC*9*inC)
		var b []float32
		if r.IntN(2) == 0 {
			b = randF32s(r, outC)
		}
		want := make([]float32, g.batches*oh*ow*outC)
		got, mag := make([]float32, len(want)), make([]float32, len(want))
		convFloat(g, x, wt, b, want)
		mg := *g // the magnitude unclamped
		mg.fMin, mg.fMax = float32(math.Inf(-1)), float32(math.Inf(1))
		convFloat(&mg, absF32s(x), absF32s(wt), absF32s(b), mag)
		g.convF32(make([]float32, g.f32ScratchLen()), x, wt, b, got)
		for i := range want {
			d := math.Abs(float64(got[i]) - float64(want[i]))
			worst = max(worst, d/float64(mag[i]))
			if !sumClose(got[i], want[i], mag[i]) {
				t.Fatalf("%s: output %d = %g, reference %g (magnitude %g)", name, i, got[i], want[i], mag[i])
			}
		}
		g2 := *g
		g2.batches = 2 * g.batches
		got2 := make([]float32, 2*len(want))
		g2.convF32(make([]float32, g2.f32ScratchLen()), append(append([]float32(nil), x...), x...), wt, b, got2)
		for i := range got2 {
			if math.Float32bits(got2[i]) != math.Float32bits(got[i%len(got)]) {
				t.Fatalf("%s: output %d = %g in a batch of 2, %g alone", name, i, got2[i], got[i%len(got)])
			}
		}
	}
	if done < 100 {
		t.Errorf("only %d of 200 layers took the Winograd form", done)
	}
	t.Logf("%d layers, largest |diff| / Σ|x·w|: %.3g", done, worst)
}

// BenchmarkConvF32Winograd: the ResNet-8 3x3 layer of scripts/bench-oracle-shapes
// (32x32x16 -> 16, SAME) on the portable path's direct GEMM and on the Winograd form.
func BenchmarkConvF32Winograd(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	g := &convGeom{batches: 1, inH: 32, inW: 32, inC: 16, outH: 32, outW: 32, outC: 16,
		fH: 3, fW: 3, strideH: 1, strideW: 1, dilH: 1, dilW: 1, padH: 1, padW: 1, fMin: 0, fMax: 1e30}
	x, w, bias := randF32s(r, 32*32*16), randF32s(r, 16*9*16), randF32s(r, 16)
	y := make([]float32, 32*32*16)
	for _, wino := range []bool{false, true} {
		g.f32wino = wino
		s := make([]float32, g.f32ScratchLen())
		b.Run(fmt.Sprintf("winograd=%v", wino), func(b *testing.B) {
			for b.Loop() {
				g.convF32(s, x, w, bias, y)
			}
		})
	}
}
