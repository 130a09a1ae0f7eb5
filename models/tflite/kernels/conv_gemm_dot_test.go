package kernels

import (
	"math/rand/v2"
	"testing"
)

// randDotTile is a random gemmRowU8 call: offset-byte rows over the whole 0..255 range, int8
// weights over the whole range (-128 too), padded row and output strides.
type dotTile struct {
	x               []byte
	stride, quads   int
	w               []int8
	q               []int32
	yStride, blocks int
}

func randDotTile(r *rand.Rand) dotTile {
	d := dotTile{quads: 1 + r.IntN(80), blocks: 1 + r.IntN(3)}
	d.stride = 4*d.quads + r.IntN(9)
	d.yStride = 16*d.blocks + r.IntN(5)
	d.x = make([]byte, 4*d.stride)
	for i := range d.x {
		d.x[i] = byte(r.IntN(256))
	}
	d.w = make([]int8, d.blocks*64*d.quads)
	for i := range d.w {
		d.w[i] = int8(r.IntN(256) - 128)
	}
	d.q = randQuantTable(r, 2*d.blocks)
	return d
}

// TestGemmRowU8MatchesReference holds the dot-product tile (the CPU's where it has one) to
// the portable kernel, and the portable kernel to plain sums and MultiplyByQuantizedMultiplier.
func TestGemmRowU8MatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for iter := 0; iter < 300; iter++ {
		d := randDotTile(r)
		got, want := make([]int8, 4*d.yStride), make([]int8, 4*d.yStride)
		gemmRowU8(d.x, d.stride, d.w, d.quads, d.q, got, d.yStride, d.blocks)
		gemmRow4x16U8Go(d.x, d.stride, d.w, d.quads, d.q, want, d.yStride, d.blocks)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("iter %d (dot %v %s, %d blocks of %d quads): output %d = %d, portable %d", iter, haveDot, dotName(), d.blocks, d.quads, i, got[i], want[i])
			}
		}
		for row := range 4 {
			for c := range 16 * d.blocks {
				wc, g := d.w[(c/8)*32*d.quads:], d.q[(c/8)*quantGroup:]
				var acc int32
				for i := 0; i < 4*d.quads; i++ {
					acc += int32(d.x[row*d.stride+i]) * int32(wc[(i/4)*32+(c%8)*4+i%4])
				}
				j := c % 8
				shift := int(g[16+j]) - int(g[24+j])
				v := MultiplyByQuantizedMultiplier(acc+g[j], g[8+j], shift) + g[48+j]
				if e := int8(min(max(v, g[56+j]), g[64+j])); want[row*d.yStride+c] != e {
					t.Fatalf("iter %d: portable [%d][%d] = %d, reference %d", iter, row, c, want[row*d.yStride+c], e)
				}
			}
		}
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

// TestDotProductSetting checks that SetDotProduct switches the path only where the CPU has
// the instructions, and that the portable setting wins over it.
func TestDotProductSetting(t *testing.T) {
	defer SetPortable(SetPortable(false))
	defer SetDotProduct(SetDotProduct(true))
	if got := useDot(); got != (haveDot && haveSIMD) {
		t.Errorf("useDot() = %v with the dot product allowed, want %v (haveDot %v)", got, haveDot && haveSIMD, haveDot)
	}
	SetDotProduct(false)
	if useDot() || KernelPath() != map[bool]string{true: simdName, false: "portable"}[haveSIMD] {
		t.Errorf("dot product forbidden: useDot %v, KernelPath %q", useDot(), KernelPath())
	}
	SetDotProduct(true)
	SetPortable(true)
	if useDot() || KernelPath() != "portable" {
		t.Errorf("portable forced: useDot %v, KernelPath %q", useDot(), KernelPath())
	}
}

// FuzzInt8GemmPaths runs random conv and FULLY_CONNECTED layers (odd channel counts and
// depths, tails of the 4-tap quads and 16-channel blocks, every zero point) on every int8
// kernel path of this machine against the reference arithmetic.
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
