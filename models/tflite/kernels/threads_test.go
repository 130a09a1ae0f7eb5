package kernels

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// newThreaded loads data into an interpreter with the given thread count; the caller closes it.
func newThreaded(t testing.TB, data []byte, threads int) *tflite.Interpreter {
	t.Helper()
	m, err := tflite.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := tflite.NewInterpreter(m, Builtins(), tflite.Options{Threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

// runThreaded loads data and invokes it on input x with the given thread count, returning
// the output bytes.
func runThreaded(t testing.TB, data []byte, x []int8, threads int) []byte {
	t.Helper()
	ip := newThreaded(t, data, threads)
	defer ip.Close()
	copy(ip.Input(0).Int8(), x)
	if err := ip.Invoke(); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(ip.Output(0).Bytes())
}

// checkThreads runs one random layer (chosen by seed) with 1 to 4 threads on both paths and
// fails unless every run gives the same bytes.
func checkThreads(t testing.TB, seed uint64) {
	// Split even the smallest layers, so that every random case runs on the workers.
	defer func(macs, elems int) { minParallelMACs, minParallelElems = macs, elems }(minParallelMACs, minParallelElems)
	minParallelMACs, minParallelElems = 0, 0
	defer func(was int) { minParallelPool = was }(minParallelPool)
	minParallelPool = 0
	checkChannelSplit(t, seed)
	r := rand.New(rand.NewPCG(seed, 99))
	var data []byte
	var x []int8
	switch seed % 5 {
	case 4:
		// An int8 average or max pool.
		c := randPoolCase(r)
		c.dtype, c.inZP, c.outZP = tensor.Int8, int64(int8(c.inZP)), int64(int8(c.outZP))
		var ok bool
		var size int
		if data, size, ok = c.model(t); !ok {
			return
		}
		x = make([]int8, size)
	case 3:
		n := 1 + r.IntN(5000)
		data, x = addSubFlatModel(t, r, schema.TensorTypeInt8, n), make([]int8, n)
	case 0, 1:
		c := randConvCase(r, seed%4 == 1)
		if _, _, ok := c.outSize(); !ok {
			return
		}
		data, x = c.model(t), make([]int8, c.n*c.h*c.w*c.inC)
	default:
		c := randFCCase(r)
		data, x = c.model(t), make([]int8, c.batches*c.depth)
	}
	for i := range x {
		x[i] = int8(r.IntN(256) - 128)
	}
	for _, port := range []bool{true, false} {
		SetPortable(port)
		want := runThreaded(t, data, x, 1)
		for threads := 2; threads <= 4; threads++ {
			if got := runThreaded(t, data, x, threads); !bytes.Equal(got, want) {
				t.Fatalf("seed %d (%s): %d threads give different bytes from 1", seed, KernelPath(), threads)
			}
		}
	}
}

// checkChannelSplit runs one random layer that splits by output-channel ranges (chosen by
// seed: a convolution of 1 to 49 output pixels and 17 to 256 channels, or a FULLY_CONNECTED
// of 1 to 4 rows and 17 to 256 units; every such layer splits by channels on odd seeds/2)
// on every form this CPU runs with 1 to 4 threads, and fails unless every run gives the
// same bytes.
func checkChannelSplit(t testing.TB, seed uint64) {
	defer setInt8Form(setInt8Form(-1))
	defer func(was int) { chanSplitRatio = was }(chanSplitRatio)
	if seed/2%2 == 1 {
		chanSplitRatio = 0
	}
	r := rand.New(rand.NewPCG(seed, 7))
	outC := 17 + r.IntN(240)
	var data []byte
	var x []int8
	var name string
	if seed%2 == 0 {
		c := randConvCase(r, false)
		c.h, c.w, c.inC, c.outC = 1+r.IntN(7), 1+r.IntN(7), 1+r.IntN(48), outC
		c.fh = []int{1, 3}[r.IntN(2)]
		c.fw, c.sh, c.sw, c.dh, c.dw, c.pad = c.fh, 1, 1, 1, 1, schema.PaddingSame
		c.filter = randWeights(r, c.outC*c.fh*c.fw*c.inC)
		resizeChannels(r, c.outC, &c.wScale, &c.bias, 0.02)
		data, x, name = c.model(t), make([]int8, c.n*c.h*c.w*c.inC), c.String()
	} else {
		c := randFCCase(r)
		c.batches, c.units = 1+r.IntN(4), outC
		c.filter = randWeights(r, c.units*c.depth)
		resizeChannels(r, c.units, &c.wScale, &c.bias, 0.01)
		data, x, name = c.model(t), make([]int8, c.batches*c.depth), c.String()
	}
	for i := range x {
		x[i] = int8(r.IntN(256) - 128)
	}
	var want []byte
	for form := range numForms {
		if !haveForm[form] {
			continue
		}
		setInt8Form(form)
		for threads := 1; threads <= 4; threads++ {
			got := runThreaded(t, data, x, threads)
			if want == nil {
				want = got
			} else if !bytes.Equal(got, want) {
				t.Fatalf("seed %d, %s: form %s with %d threads gives different bytes from portable with 1", seed, name, formNames[form], threads)
			}
		}
	}
}

func TestThreadsBitIdentical(t *testing.T) {
	defer SetPortable(portable.Load())
	for seed := range uint64(150) {
		checkThreads(t, seed)
	}
}

func FuzzThreadsBitIdentical(f *testing.F) {
	defer SetPortable(portable.Load())
	for _, s := range []uint64{0, 1, 2, 3, 17, 40, 43, 4, 9} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) { checkThreads(t, seed) })
}

// TestThreadedInvokeAllocatesNothing holds a threaded Invoke to zero allocations.
func TestThreadedInvokeAllocatesNothing(t *testing.T) {
	defer SetPortable(portable.Load())
	c := benchConvShapes[1]
	r := rand.New(rand.NewPCG(1, 2))
	c.m, c.dh, c.dw, c.inScale, c.outScale, c.wScale = 1, 1, 1, 0.02, 0.05, []float32{0.005}
	c.filter = randWeights(r, c.outC*c.fh*c.fw*c.inC)
	data := c.model(t)
	defer func(was int) { minParallelMACs = was }(minParallelMACs)
	minParallelMACs = 0
	for _, port := range []bool{true, false} {
		SetPortable(port)
		m, err := tflite.Load(data)
		if err != nil {
			t.Fatal(err)
		}
		ip, err := tflite.NewInterpreter(m, Builtins(), tflite.Options{Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		if a := testing.AllocsPerRun(50, func() { _ = ip.Invoke() }); a != 0 {
			t.Errorf("%s: %v allocations per threaded Invoke, want 0", KernelPath(), a)
		}
		ip.Close()
	}
}

// BenchmarkThreads times MobileNet v2's heaviest int8 layer shapes (224x224 input: the
// 56x56 expansion 1x1 convolution to 144 channels and the 3x3 depthwise after it), two of
// its 7x7 layers split by output channels (960 to 320, 320 to 1280) and its one-row
// FULLY_CONNECTED (1280 to 1000) with one and two threads. Alone in a loop, a layer keeps its
// weights in both cores' caches, which a whole model's other layers evict: what the channel
// split saves in the model is more than shows here.
func BenchmarkThreads(b *testing.B) {
	defer SetPortable(portable.Load())
	r := rand.New(rand.NewPCG(1, 2))
	bench := func(data []byte, name string) {
		for _, port := range []bool{false, true} {
			SetPortable(port)
			for _, threads := range []int{1, 2} {
				m, err := tflite.Load(data)
				if err != nil {
					b.Fatal(err)
				}
				ip, err := tflite.NewInterpreter(m, Builtins(), tflite.Options{Threads: threads})
				if err != nil {
					b.Fatal(err)
				}
				b.Run(fmt.Sprintf("%s/%s/threads=%d", name, KernelPath(), threads), func(b *testing.B) {
					for b.Loop() {
						if err := ip.Invoke(); err != nil {
							b.Fatal(err)
						}
					}
				})
				ip.Close()
			}
		}
	}
	for _, c := range []convCase{
		{n: 1, h: 56, w: 56, inC: 24, outC: 144, fh: 1, fw: 1, sh: 1, sw: 1},
		{n: 1, h: 56, w: 56, inC: 144, outC: 144, fh: 3, fw: 3, sh: 1, sw: 1, depthwise: true},
		{n: 1, h: 28, w: 28, inC: 32, outC: 192, fh: 1, fw: 1, sh: 1, sw: 1},
		{n: 1, h: 7, w: 7, inC: 960, outC: 320, fh: 1, fw: 1, sh: 1, sw: 1},
		{n: 1, h: 7, w: 7, inC: 320, outC: 1280, fh: 1, fw: 1, sh: 1, sw: 1},
	} {
		c.m, c.dh, c.dw, c.inScale, c.outScale, c.wScale = 1, 1, 1, 0.02, 0.05, []float32{0.005}
		c.pad, c.act = 1, 3
		nw := c.outC * c.fh * c.fw * c.inC
		if c.depthwise {
			nw = c.fh * c.fw * c.outC
		}
		c.filter = randWeights(r, nw)
		bench(c.model(b), fmt.Sprintf("%dx%dx%d_f%dx%d_oc%d_dw%v", c.h, c.w, c.inC, c.fh, c.fw, c.outC, c.depthwise))
	}
	fc := fcCase{batches: 1, depth: 1280, units: 1000, inScale: 0.02, outScale: 0.05, wScale: []float32{0.005}}
	fc.filter = randWeights(r, fc.units*fc.depth)
	bench(fc.model(b), fmt.Sprintf("fc%dx%d_units%d", fc.batches, fc.depth, fc.units))
}

// resizeChannels gives a random case's per-channel weight scales (when it has them, up to
// 0.001+spread) and its bias (when it has one) n channels, after its channel count changed.
func resizeChannels(r *rand.Rand, n int, wScale *[]float32, bias *[]int32, spread float32) {
	if len(*wScale) > 1 {
		*wScale = make([]float32, n)
		for i := range *wScale {
			(*wScale)[i] = 0.001 + r.Float32()*spread
		}
	}
	if *bias != nil {
		*bias = make([]int32, n)
		for i := range *bias {
			(*bias)[i] = int32(r.IntN(40001) - 20000)
		}
	}
}
