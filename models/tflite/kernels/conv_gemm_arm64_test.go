//go:build arm64 && !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"golang.org/x/sys/cpu"
)

// Tests of the NEON path beyond the shared differential tests: that it is the one chosen, and
// that the tile kernel agrees with its Go form at the extremes the random layers never reach
// (full-range int16 operands whose sums wrap, shifts from -31 to 30, zero and maximal
// multipliers, accumulators at MinInt32 before the rounding shift).

func TestKernelPathARM64(t *testing.T) {
	defer SetPortable(SetPortable(false))
	defer SetDotProduct(SetDotProduct(true))
	defer setInt8Form(setInt8Form(-1))
	want := "portable"
	switch {
	case !cpu.ARM64.HasASIMD:
	case cpu.ARM64.HasI8MM:
		want = "neon-i8mm"
	case cpu.ARM64.HasASIMDDP:
		want = "neon-dotprod"
	default:
		want = "neon"
	}
	if got := KernelPath(); got != want {
		t.Errorf("KernelPath() = %q, want %q (HasASIMD %v, HasASIMDDP %v, HasI8MM %v)", got, want,
			cpu.ARM64.HasASIMD, cpu.ARM64.HasASIMDDP, cpu.ARM64.HasI8MM)
	}
	// TestKernelsUnderQemu names the path the emulated CPU model must give.
	if w := os.Getenv("OUTPOST_WANT_KERNEL_PATH"); w != "" && KernelPath() != w {
		t.Errorf("KernelPath() = %q on this CPU model, want %q", KernelPath(), w)
	}
	if cpu.ARM64.HasASIMD && !haveF32SIMD {
		t.Error("no float32 NEON kernels on an Advanced SIMD CPU")
	}
	SetDotProduct(false)
	if got, want := KernelPath(), map[bool]string{true: "neon", false: "portable"}[cpu.ARM64.HasASIMD]; got != want {
		t.Errorf("KernelPath() with SetDotProduct(false) = %q, want %q", got, want)
	}
	SetPortable(true)
	if got := KernelPath(); got != "portable" {
		t.Errorf("KernelPath() with SetPortable(true) = %q, want portable", got)
	}
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
