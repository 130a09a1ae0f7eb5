package kernels

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// The int8 GEMM's forms against the reference loops: every form this build has (the portable
// one, the int16 one where there is SIMD, and the SDOT and SMMLA forms, on their assembly
// where the CPU has the instruction and on their Go kernels elsewhere), forced in turn at
// Prepare, on random CONV_2D and FULLY_CONNECTED layers whose shapes reach odd channel counts,
// taps past the last multiple of 8 and 16, partial tiles of pixels and of channels.

func int8Forms() []int {
	forms := []int{formPortable}
	if haveSIMD {
		forms = append(forms, formWiden)
	}
	return append(forms, formSDOT, formI8MM)
}

// invokeInt8 runs model data on input x with the int8 GEMM form f forced at Prepare.
func invokeInt8(t *testing.T, data []byte, x []int8, f int) *tflite.Interpreter {
	t.Helper()
	defer setInt8Form(setInt8Form(f))
	m, err := tflite.Load(data)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	ip, err := tflite.NewInterpreter(m, Builtins(), tflite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	copy(ip.Input(0).Int8(), x)
	if err := ip.Invoke(); err != nil {
		t.Fatalf("form %s: invoke: %v", formNames[f], err)
	}
	return ip
}

// formCases is the number of random layers per test: fewer in -short runs (under qemu, where
// TestKernelsUnderQemu repeats them on three CPU models).
func formCases() int {
	if testing.Short() {
		return 50
	}
	return 150
}

func TestConvInt8FormsMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	done, cases := 0, formCases()
	for iter := 0; done < cases && iter < 2000; iter++ {
		c := randConvCase(r, false)
		if _, _, ok := c.outSize(); !ok {
			continue
		}
		done++
		data := c.model(t)
		x := make([]int8, c.n*c.h*c.w*c.inC)
		for i := range x {
			x[i] = int8(r.IntN(256) - 128)
		}
		var want []int8
		for _, f := range int8Forms() {
			ip := invokeInt8(t, data, x, f)
			if want == nil {
				lo, hi, err := quantActivationRange(c.act, ip.Output(0))
				if err != nil {
					t.Fatal(err)
				}
				want = c.reference(x, lo, hi)
			}
			got := ip.Output(0).Int8()
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%v (%s): output %d = %d, reference %d", c, formNames[f], i, got[i], want[i])
				}
			}
		}
	}
	if done < cases {
		t.Fatalf("only %d valid random cases", done)
	}
}

func TestFCInt8FormsMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	for range formCases() {
		c := randFCCase(r)
		data := c.model(t)
		x := make([]int8, c.batches*c.depth)
		for i := range x {
			x[i] = int8(r.IntN(256) - 128)
		}
		var want []int8
		for _, f := range int8Forms() {
			ip := invokeInt8(t, data, x, f)
			if want == nil {
				lo, hi, err := quantActivationRange(c.act, ip.Output(0))
				if err != nil {
					t.Fatal(err)
				}
				want = c.reference(x, lo, hi)
			}
			got := ip.Output(0).Int8()
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%v (%s): output %d = %d, reference %d", c, formNames[f], i, got[i], want[i])
				}
			}
		}
	}
}

// TestGemmRowDotExtremes holds the dot kernels to their Go form where random layers never go:
// every operand at -128 or 127 (the largest products, and the one pair SDOT and SMMLA must
// not saturate: -128 * -128), long rows whose sums wrap past int32, and requantization at the
// edges of its domain (extremeQuantTable: shifts -31..30, zero and maximal multipliers).
func TestGemmRowDotExtremes(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	for _, f := range []int{formSDOT, formI8MM} {
		if !(f == formSDOT && haveSDOT || f == formI8MM && haveI8MM) {
			continue // no assembly for it here: the Go form would be compared with itself
		}
		for iter := range 400 {
			k8 := 8 * (1 + r.IntN(24))
			if iter == 0 {
				k8 = 8 * 17000 // 136,000 taps of ±128²: the int32 sum wraps
			}
			blocks := 1 + r.IntN(2)
			stride := k8 + 8*r.IntN(2)
			x := make([]int8, 4*stride)
			w := make([]int8, blocks*16*k8)
			for _, v := range [][]int8{x, w} {
				for i := range v {
					switch r.IntN(4) {
					case 0:
						v[i] = -128
					case 1:
						v[i] = 127
					default:
						v[i] = int8(r.Uint32())
					}
				}
				if iter == 0 {
					for i := range v {
						v[i] = -128
					}
				}
			}
			q := extremeQuantTable(r, 2*blocks)
			yStride := 16*blocks + r.IntN(3)
			got, want := make([]int8, 4*yStride), make([]int8, 4*yStride)
			gemmRow4Dot(f, x, stride, w, k8, q, got, yStride, blocks)
			gemmRow4x16DotGo(f, x, stride, w, k8, q, want, yStride, blocks)
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s iter %d (%d blocks of %d taps): output %d = %d, Go form %d", formNames[f], iter, blocks, k8, i, got[i], want[i])
				}
			}
		}
	}
}

// FuzzInt8Forms runs one random CONV_2D or FULLY_CONNECTED layer (chosen by seed) on every int8 GEMM form against the reference loops.
func FuzzInt8Forms(f *testing.F) {
	for _, s := range []uint64{0, 1, 5, 12, 33} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		r := rand.New(rand.NewPCG(seed, 77))
		var data []byte
		var x []int8
		var reference func(x []int8, lo, hi int32) []int8
		var act schema.Activation
		if seed%2 == 0 {
			c := randConvCase(r, false)
			if _, _, ok := c.outSize(); !ok {
				return
			}
			data, x, reference, act = c.model(t), make([]int8, c.n*c.h*c.w*c.inC), c.reference, c.act
		} else {
			c := randFCCase(r)
			data, x, reference, act = c.model(t), make([]int8, c.batches*c.depth), c.reference, c.act
		}
		for i := range x {
			x[i] = int8(r.IntN(256) - 128)
		}
		var want []int8
		for _, f := range int8Forms() {
			ip := invokeInt8(t, data, x, f)
			if want == nil {
				lo, hi, err := quantActivationRange(act, ip.Output(0))
				if err != nil {
					t.Fatal(err)
				}
				want = reference(x, lo, hi)
			}
			if got := ip.Output(0).Int8(); !slices.Equal(got, want) {
				t.Fatalf("seed %d (%s): output differs from the reference", seed, formNames[f])
			}
		}
	})
}
