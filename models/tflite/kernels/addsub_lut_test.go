package kernels

import (
	"math/rand/v2"
	"testing"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// The looked-up rescaling of int8/uint8 ADD and SUB gives addSubGeneral's integers for every
// pair of input bytes, over random scales, zero points and activations.
func TestAddSubLUTExhaustive(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for iter := range 40 {
		dt := tensor.Int8
		lo, hi := -128, 127
		if iter%2 == 1 {
			dt, lo, hi = tensor.Uint8, 0, 255
		}
		q := func() *tensor.Quant {
			return &tensor.Quant{Scale: []float32{0.001 + r.Float32()*0.2}, ZeroPoint: []int64{int64(lo + r.IntN(hi-lo+1))}}
		}
		a, b, out := tensor.New("a", dt, []int{256}, q()), tensor.New("b", dt, []int{256}, q()), tensor.New("o", dt, []int{256}, q())
		act := []schema.Activation{schema.ActivationNone, schema.ActivationRelu, schema.ActivationRelu6}[r.IntN(3)]
		d := &binaryData{op: binAdd, bc: Broadcast{N: 256, Flat: true}}
		if err := prepareAddSubQuant(d, a, b, out, act); err != nil {
			continue // an output scale too small for the inputs is refused, as by TFLite
		}
		if d.lut1 == nil {
			t.Fatal("no lookup tables for", dt)
		}
		for _, sub := range []bool{false, true} {
			x, y, z := make([]int8, 256), make([]int8, 256), make([]int8, 256)
			for i := range 256 {
				for j := range 256 {
					x[j], y[j] = int8(uint8(i)), int8(uint8(j))
				}
				addSubLUT(d, x, y, z, sub)
				for j := range 256 {
					va, vb := int32(x[j]), int32(y[j])
					if dt == tensor.Uint8 {
						va, vb = int32(uint8(x[j])), int32(uint8(y[j]))
					}
					want := d.addSubGeneral(va, vb, sub)
					got := int32(z[j])
					if dt == tensor.Uint8 {
						got = int32(uint8(z[j]))
					}
					if got != want {
						t.Fatalf("%v sub %v: bytes %d, %d give %d, reference %d", dt, sub, i, j, got, want)
					}
				}
			}
		}
	}
}
