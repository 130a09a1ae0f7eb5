package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// benchConvShapes are int8 convolution layers of the shapes that run slowest relative to the
// official runtime: ResNet-8's (MLPerf Tiny image classification) 3x3 layers on 32x32 inputs
// with few channels and its strided 1x1 shortcuts, MobileNet-style pointwise layers, and
// MobileNet's first layer (3x3, stride 2, over RGB: 27 taps, where building the rows of taps
// costs as much as multiplying them).
var benchConvShapes = []convCase{
	{n: 1, h: 224, w: 224, inC: 3, outC: 32, fh: 3, fw: 3, sh: 2, sw: 2},
	{n: 1, h: 32, w: 32, inC: 3, outC: 16, fh: 3, fw: 3, sh: 1, sw: 1},
	{n: 1, h: 32, w: 32, inC: 16, outC: 16, fh: 3, fw: 3, sh: 1, sw: 1},
	{n: 1, h: 32, w: 32, inC: 16, outC: 32, fh: 3, fw: 3, sh: 2, sw: 2},
	{n: 1, h: 16, w: 16, inC: 32, outC: 32, fh: 3, fw: 3, sh: 1, sw: 1},
	{n: 1, h: 32, w: 32, inC: 16, outC: 32, fh: 1, fw: 1, sh: 2, sw: 2},
	{n: 1, h: 8, w: 8, inC: 64, outC: 64, fh: 3, fw: 3, sh: 1, sw: 1},
	{n: 1, h: 14, w: 14, inC: 96, outC: 24, fh: 1, fw: 1, sh: 1, sw: 1},
}

// forNativeForms runs f once per int8 GEMM form this CPU runs in assembly (and the portable
// one, pure Go by design) with that form forced, restoring the settings afterwards.
func forNativeForms(f func(name string)) {
	defer SetPortable(portable.Load())
	defer setInt8Form(setInt8Form(-1))
	for form := range numForms {
		if haveForm[form] {
			SetPortable(form == formPortable)
			setInt8Form(form)
			f(formNames[form])
		}
	}
}

func BenchmarkConvShapes(b *testing.B) {
	for _, c := range benchConvShapes {
		r := rand.New(rand.NewPCG(1, 2))
		c.m, c.dh, c.dw, c.pad, c.act = 1, 1, 1, schema.PaddingSame, schema.ActivationRelu
		c.inScale, c.outScale, c.inZP, c.outZP = 0.02, 0.05, -3, 5
		c.filter = randWeights(r, c.outC*c.fh*c.fw*c.inC)
		c.wScale = []float32{0.005}
		c.bias = make([]int32, c.outC)
		data := c.model(b)
		forNativeForms(func(path string) {
			name := fmt.Sprintf("%dx%dx%d_f%dx%d_s%d_oc%d/%s", c.h, c.w, c.inC, c.fh, c.fw, c.sh, c.outC, path)
			m, err := tflite.Load(data)
			if err != nil {
				b.Fatal(err)
			}
			ip, err := tflite.NewInterpreter(m, Builtins(), tflite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					if err := ip.Invoke(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkFCShapes times int8 FULLY_CONNECTED layers of the MLPerf Tiny anomaly-detection
// autoencoder (640 inputs, 128-unit layers) on every path.
func BenchmarkFCShapes(b *testing.B) {
	for _, s := range [][3]int{{1, 640, 128}, {1, 128, 128}, {1, 128, 640}, {4, 256, 64}} {
		r := rand.New(rand.NewPCG(1, 2))
		c := randFCCase(r)
		c.batches, c.depth, c.units, c.bias = s[0], s[1], s[2], nil
		c.filter = make([]int8, c.units*c.depth)
		c.wScale = []float32{0.004}
		data := c.model(b)
		forNativeForms(func(path string) {
			m, err := tflite.Load(data)
			if err != nil {
				b.Fatal(err)
			}
			ip, err := tflite.NewInterpreter(m, Builtins(), tflite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%dx%d_to_%d/%s", c.batches, c.depth, c.units, path), func(b *testing.B) {
				for b.Loop() {
					if err := ip.Invoke(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
