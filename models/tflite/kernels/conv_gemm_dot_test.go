package kernels

import (
	"math/rand/v2"
	"testing"
)

// shortCases is the number of random layers a differential test runs: fewer with -short
// (under qemu, where TestKernelsUnderQemu repeats them on three CPU models).
func shortCases(n, short int) int {
	if testing.Short() {
		return short
	}
	return n
}

// dotForms are the dot-product forms, every one of which runs on every machine (on its Go
// kernel where the CPU lacks the instruction).
var dotForms = []int{formAVXVNNI, formAVX512VNNI, formSDOT, formI8MM}

// dotTile is a random gemmRowDot call for form: byte rows over the whole 0..255 range (read
// as offset or signed bytes by the form), int8 weights over the whole range (-128 too),
// padded row and output strides.
type dotTile struct {
	form            int
	x               []byte
	stride, kd      int
	w               []int8
	q               []int32
	yStride, blocks int
}

func randDotTile(r *rand.Rand, form int) dotTile {
	d := dotTile{form: form, kd: dotPad(form) * (1 + r.IntN(320/dotPad(form))), blocks: 1 + r.IntN(3)}
	d.stride = d.kd + r.IntN(9)
	d.yStride = 16*d.blocks + r.IntN(5)
	d.x = make([]byte, 4*d.stride)
	for i := range d.x {
		d.x[i] = byte(r.IntN(256))
	}
	d.w = make([]int8, d.blocks*16*d.kd)
	for i := range d.w {
		d.w[i] = int8(r.IntN(256) - 128)
	}
	d.q = randQuantTable(r, 2*d.blocks)
	return d
}

// TestDotKernelsMatchPortable holds every dot-product form's tile to plain sums and
// MultiplyByQuantizedMultiplier on its Go kernel, and the form's assembly (where the CPU has
// it; the path chooses one form, so this covers the others) to the Go kernel.
func TestDotKernelsMatchPortable(t *testing.T) {
	for _, f := range dotForms {
		t.Run(formNames[f], func(t *testing.T) {
			r := rand.New(rand.NewPCG(11, uint64(f)))
			for iter := 0; iter < 300; iter++ {
				d := randDotTile(r, f)
				got, want := make([]int8, 4*d.yStride), make([]int8, 4*d.yStride)
				gemmRowDot(f, d.x, d.stride, d.w, d.kd, d.q, got, d.yStride, d.blocks)
				gemmRow4x16DotGo(f, d.x, d.stride, d.w, d.kd, d.q, want, d.yStride, d.blocks)
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("iter %d (assembly %v, %d blocks of %d taps): output %d = %d, Go kernel %d",
							iter, haveForm[f], d.blocks, d.kd, i, got[i], want[i])
					}
				}
				for row := range 4 {
					for c := range 16 * d.blocks {
						wc, g := d.w[(c/16)*16*d.kd:], d.q[(c/8)*quantGroup:]
						var acc int32
						for i := 0; i < d.kd; i++ {
							x := int32(int8(d.x[row*d.stride+i]))
							if unsignedTaps(f) {
								x = int32(d.x[row*d.stride+i])
							}
							acc += x * int32(wc[dotIndex(f, d.kd, c%16, i)])
						}
						j := c % 8
						shift := int(g[16+j]) - int(g[24+j])
						v := MultiplyByQuantizedMultiplier(acc+g[j], g[8+j], shift) + g[48+j]
						if e := int8(min(max(v, g[56+j]), g[64+j])); want[row*d.yStride+c] != e {
							t.Fatalf("iter %d: Go kernel [%d][%d] = %d, reference %d", iter, row, c, want[row*d.yStride+c], e)
						}
					}
				}
			}
		})
	}
}

// TestDotIndexIsAPermutation checks that every form's packing puts the 16*kd weights of a
// block at distinct offsets inside it.
func TestDotIndexIsAPermutation(t *testing.T) {
	for _, f := range dotForms {
		for _, kd := range []int{8, 16, 24, 72} {
			seen := make([]bool, 16*kd)
			for c := range 16 {
				for i := range kd {
					o := dotIndex(f, kd, c, i)
					if o < 0 || o >= len(seen) || seen[o] {
						t.Fatalf("%s, kd %d: channel %d tap %d at %d, outside the block or taken", formNames[f], kd, c, i, o)
					}
					seen[o] = true
				}
			}
		}
	}
}

// TestGemmRowDotExtremes holds the dot-product assembly to its Go kernel where random layers
// never go: every operand at its extremes (the largest products, and the one pair SDOT and
// SMMLA must not saturate: -128 * -128), long rows whose sums wrap past int32, and
// requantization at the edges of its domain (extremeQuantTable: shifts -31..30, zero and
// maximal multipliers).
func TestGemmRowDotExtremes(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	ran := false
	for _, f := range dotForms {
		if !haveForm[f] {
			continue // no assembly for it here: the Go kernel would be compared with itself
		}
		ran = true
		for iter := range 400 {
			kd := 8 * (1 + r.IntN(24))
			if iter == 0 {
				kd = 8 * 17000 // 136,000 taps of ±128²: the int32 sum wraps
			}
			blocks := 1 + r.IntN(2)
			stride := kd + 8*r.IntN(2)
			x := make([]byte, 4*stride)
			w := make([]int8, blocks*16*kd)
			// Extreme taps: bytes 0x80 and 0x7f are -128 and 127 as signed taps, 0 and 255 as
			// offset ones; 0x00 and 0xff the other way round.
			for i := range x {
				x[i] = []byte{0x80, 0x7f, 0x00, 0xff, byte(r.Uint32())}[r.IntN(5)]
			}
			for i := range w {
				w[i] = []int8{-128, 127, int8(r.Uint32())}[r.IntN(3)]
			}
			if iter == 0 {
				lo := byte(0x80)
				if unsignedTaps(f) {
					lo = 0xff // 255 * -128, the largest VPDPBUSD product
				}
				for i := range x {
					x[i] = lo
				}
				for i := range w {
					w[i] = -128
				}
			}
			q := extremeQuantTable(r, 2*blocks)
			yStride := 16*blocks + r.IntN(3)
			got, want := make([]int8, 4*yStride), make([]int8, 4*yStride)
			gemmRowDot(f, x, stride, w, kd, q, got, yStride, blocks)
			gemmRow4x16DotGo(f, x, stride, w, kd, q, want, yStride, blocks)
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s iter %d (%d blocks of %d taps): output %d = %d, Go kernel %d", formNames[f], iter, blocks, kd, i, got[i], want[i])
				}
			}
		}
	}
	if !ran {
		t.Skip("no dot-product instructions on this CPU")
	}
}

// TestFlipBytes checks the +128 offset on every byte value and on lengths around the 8- and
// 32-byte steps.
func TestFlipBytes(t *testing.T) {
	src := make([]int8, 256+45)
	for i := range src {
		src[i] = int8(i)
	}
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 71, 256, 269, 301} {
		dst := make([]byte, n+1)
		dst[n] = 0xAA
		flipBytes(dst[:n], src[:n])
		for i := range n {
			if want := byte(int(src[i]) + 128); dst[i] != want {
				t.Fatalf("n %d: byte %d (%d) = %d, want %d", n, i, src[i], dst[i], want)
			}
		}
		if dst[n] != 0xAA {
			t.Fatalf("n %d: wrote past the end", n)
		}
	}
}

// TestDotProductSetting checks the choice of form: a dot-product form exactly where the CPU
// has one, the int16 form when SetDotProduct(false), the portable one when SetPortable wins
// over both, and a forced form over all of them.
func TestDotProductSetting(t *testing.T) {
	defer SetPortable(SetPortable(false))
	defer SetDotProduct(SetDotProduct(true))
	defer setInt8Form(setInt8Form(-1))
	anyDot := false
	for _, f := range dotForms {
		anyDot = anyDot || haveForm[f]
	}
	if got := isDot(int8Form()); got != (anyDot && haveSIMD) {
		t.Errorf("KernelPath() = %q with the dot product allowed, want a dot-product form: %v", KernelPath(), anyDot && haveSIMD)
	}
	SetDotProduct(false)
	if want := map[bool]string{true: simdName, false: "portable"}[haveSIMD]; KernelPath() != want {
		t.Errorf("dot product forbidden: KernelPath %q, want %q", KernelPath(), want)
	}
	SetDotProduct(true)
	SetPortable(true)
	if KernelPath() != "portable" {
		t.Errorf("portable forced: KernelPath %q", KernelPath())
	}
	setInt8Form(formSDOT)
	if KernelPath() != "neon-dotprod" {
		t.Errorf("SDOT form forced: KernelPath %q", KernelPath())
	}
}

// FuzzInt8GemmPaths runs random conv and FULLY_CONNECTED layers (odd channel counts and
// depths, tails of the 4- and 8-tap groups and 16-channel blocks, every zero point) on every
// int8 GEMM form (forForms: the CPU's in assembly, the rest on their Go kernels) against the
// reference arithmetic.
func FuzzInt8GemmPaths(f *testing.F) {
	for _, s := range [][2]uint64{{0, 0}, {1, 2}, {7, 8}, {3, 14}, {99, 5}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		r := rand.New(rand.NewPCG(a, b))
		checkConvPaths(t, r, false)
		checkFCPaths(t, r)
	})
}
