//go:build arm64 && !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"
)

// Tests of the NEON path beyond the shared differential tests: that it is the one chosen, and
// that the tile kernel agrees with its Go form at the extremes the random layers never reach
// (full-range int16 operands whose sums wrap, shifts from -31 to 30, zero and maximal
// multipliers, accumulators at MinInt32 before the rounding shift).

func TestKernelPathARM64(t *testing.T) {
	defer SetPortable(SetPortable(false))
	want := "portable"
	if cpu.ARM64.HasASIMD {
		want = "neon"
	}
	if got := KernelPath(); got != want {
		t.Errorf("KernelPath() = %q, want %q (HasASIMD %v)", got, want, cpu.ARM64.HasASIMD)
	}
	SetPortable(true)
	if got := KernelPath(); got != "portable" {
		t.Errorf("KernelPath() with SetPortable(true) = %q, want portable", got)
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

func TestGemmRowNEONExtremes(t *testing.T) {
	if !haveSIMD {
		t.Skip("no Advanced SIMD on this CPU")
	}
	r := rand.New(rand.NewPCG(11, 12))
	for iter := 0; iter < 2000; iter++ {
		pairs := 1 + r.IntN(12)
		blocks := 1 + r.IntN(2)
		stride := 2 * pairs
		x := make([]int16, 4*stride)
		for i := range x {
			switch r.IntN(4) {
			case 0:
				x[i] = math.MinInt16
			case 1:
				x[i] = math.MaxInt16
			default:
				x[i] = int16(r.Uint32())
			}
		}
		w := make([]int8, blocks*32*pairs)
		for i := range w {
			switch r.IntN(4) {
			case 0:
				w[i] = math.MinInt8
			case 1:
				w[i] = math.MaxInt8
			default:
				w[i] = int8(r.Uint32())
			}
		}
		q := extremeQuantTable(r, 2*blocks)
		got, want := make([]int8, 4*16*blocks), make([]int8, 4*16*blocks)
		gemmRow4(x, stride, w, pairs, q, got, 16*blocks, blocks)
		gemmRow4x16Go(x, stride, w, pairs, q, want, 16*blocks, blocks)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("iter %d (%d blocks of %d pairs): output %d = %d, portable %d", iter, blocks, pairs, i, got[i], want[i])
			}
		}
	}
}
