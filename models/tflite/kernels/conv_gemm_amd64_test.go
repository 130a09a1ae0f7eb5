//go:build amd64 && !purego

package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"
)

// TestKernelPathFollowsCPU checks the choice at run time from the CPU's features: on a CPU
// without VNNI (e.g. under qemu-x86_64 -cpu Haswell) the AVX2 form is chosen.
func TestKernelPathFollowsCPU(t *testing.T) {
	defer SetPortable(SetPortable(false))
	defer SetDotProduct(SetDotProduct(true))
	defer setInt8Form(setInt8Form(-1))
	want := "portable"
	switch {
	case cpu.X86.HasAVX2 && cpu.X86.HasAVXVNNI:
		want = "avx2+avxvnni"
	case cpu.X86.HasAVX2 && cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VL:
		want = "avx2+avx512vnni"
	case cpu.X86.HasAVX2:
		want = "avx2"
	}
	if got := KernelPath(); got != want {
		t.Errorf("KernelPath() = %q, want %q (AVX2 %v, AVX-VNNI %v, AVX-512 VNNI %v, VL %v)", got, want,
			cpu.X86.HasAVX2, cpu.X86.HasAVXVNNI, cpu.X86.HasAVX512VNNI, cpu.X86.HasAVX512VL)
	}
	t.Logf("kernel path %s", KernelPath())
}

// BenchmarkGemmTile times one call of each amd64 GEMM tile kernel (4 pixels x 16 channels per
// block) on the same depth: the AVX2 VPMADDWD form and the two VPDPBUSD forms.
func BenchmarkGemmTile(b *testing.B) {
	for _, k := range []int{144, 576} {
		for _, blocks := range []int{1, 4} {
			r := rand.New(rand.NewPCG(1, 2))
			q := randQuantTable(r, 2*blocks)
			x16 := make([]int16, 4*k)
			w16 := make([]int8, blocks*32*(k/2)*2)
			x8 := make([]byte, 4*k)
			w8 := make([]int8, blocks*64*(k/4))
			y := make([]int8, 4*16*blocks)
			b.Run(fmt.Sprintf("k%d_blocks%d/avx2", k, blocks), func(b *testing.B) {
				for b.Loop() {
					gemmRow4AVX2(&x16[0], uintptr(2*k), &w16[0], k/2, &q[0], &y[0], uintptr(16*blocks), blocks)
				}
			})
			for _, f := range []struct {
				name string
				have bool
				fn   func(x *byte, strideBytes uintptr, w *int8, quads int, q *int32, y *int8, yStride uintptr, blocks int)
			}{{"avxvnni", haveAVXVNNI, gemmRow4AVXVNNI}, {"avx512vnni", haveAVX512VNNI, gemmRow4AVX512VNNI}} {
				if !f.have {
					continue
				}
				b.Run(fmt.Sprintf("k%d_blocks%d/%s", k, blocks, f.name), func(b *testing.B) {
					for b.Loop() {
						f.fn(&x8[0], uintptr(k), &w8[0], k/4, &q[0], &y[0], uintptr(16*blocks), blocks)
					}
				})
			}
		}
	}
}
