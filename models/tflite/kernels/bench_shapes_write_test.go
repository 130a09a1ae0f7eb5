package kernels

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// TestWriteBenchShapes writes the single-layer int8 models that `make bench-oracle` times
// beside the official runtime into $OUTPOST_BENCH_SHAPES (skipped when it is unset): a dense
// layer of the anomaly-detection autoencoder, a ResNet-8 3x3 convolution and a MobileNet v2
// 3x3 depthwise convolution, with random weights.
func TestWriteBenchShapes(t *testing.T) {
	dir := os.Getenv("OUTPOST_BENCH_SHAPES")
	if dir == "" {
		t.Skip("OUTPOST_BENCH_SHAPES not set")
	}
	r := rand.New(rand.NewPCG(4, 5))
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name+".tflite"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fc := randFCCase(r)
	fc.batches, fc.depth, fc.units, fc.wScale, fc.act = 1, 640, 128, []float32{0.004}, schema.ActivationRelu
	fc.filter = make([]int8, fc.units*fc.depth)
	for i := range fc.filter {
		fc.filter[i] = int8(r.IntN(255) - 127)
	}
	fc.bias = make([]int32, fc.units)
	write("dense_int8_640x128", fc.model(t))
	for _, s := range []struct {
		name string
		c    convCase
	}{
		{"conv_int8_32x32x16_3x3_16", convCase{n: 1, h: 32, w: 32, inC: 16, outC: 16, fh: 3, fw: 3, sh: 1, sw: 1}},
		{"depthwise_int8_56x56x144_3x3", convCase{n: 1, h: 56, w: 56, inC: 144, outC: 144, fh: 3, fw: 3, sh: 1, sw: 1, depthwise: true}},
	} {
		c := s.c
		c.m, c.dh, c.dw, c.inScale, c.outScale, c.inZP, c.outZP = 1, 1, 1, 0.02, 0.05, -3, 5
		c.wScale, c.pad, c.act = []float32{0.005}, schema.PaddingSame, schema.ActivationRelu6
		nw := c.outC * c.fh * c.fw * c.inC
		if c.depthwise {
			nw = c.fh * c.fw * c.outC
		}
		c.filter = make([]int8, nw)
		for i := range c.filter {
			c.filter[i] = int8(r.IntN(255) - 127)
		}
		c.bias = make([]int32, c.outC)
		write(s.name, c.model(t))
	}
}
