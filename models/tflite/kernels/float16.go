package kernels

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
)

// float16 weights: the converter's float16 optimization stores weights as IEEE half floats
// and inserts DEQUANTIZE float16→float32 in front of the ops that use them. Every half value
// is exactly representable in float32, so the conversion is exact (dequantize.cc's
// reference path).

type dequantizeF16 struct{}

func (dequantizeF16) hybrid() {}

func isFloat16Input(n *tflite.Node) bool { return hasTypes(n, 0, tensor.Float16) }

func prepareDequantizeF16(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	if out.DType() != tensor.Float32 {
		return fmt.Errorf("float16 input %q, output %q is %s, want float32", in.Name(), out.Name(), out.DType())
	}
	if in.NumElements() != out.NumElements() {
		return fmt.Errorf("input has %d elements, output %d", in.NumElements(), out.NumElements())
	}
	n.Data = dequantizeF16{}
	return nil
}

func evalDequantizeF16(n *tflite.Node) error {
	b, y := n.Input(0).Bytes(), n.Output(0).Float32()
	for i := range y {
		y[i] = halfToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return nil
}

// halfToFloat32 converts IEEE 754 binary16 bits to float32 exactly (subnormals, infinities
// and NaN payloads included).
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalise
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (frac&0x3ff)<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}
