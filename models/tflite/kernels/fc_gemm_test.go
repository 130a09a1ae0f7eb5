package kernels

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// fcCase is one random int8 FULLY_CONNECTED layer.
type fcCase struct {
	batches, depth, units int
	inZP, outZP           int
	inScale, outScale     float32
	wScale                []float32
	filter                []int8
	bias                  []int32
	act                   schema.Activation
}

func randFCCase(r *rand.Rand) fcCase {
	c := fcCase{batches: 1 + r.IntN(6), depth: 1 + r.IntN(300), units: 1 + r.IntN(70),
		inZP: r.IntN(256) - 128, outZP: r.IntN(256) - 128,
		inScale: 0.01 + r.Float32()*0.05, outScale: 0.05 + r.Float32()*0.5,
		act: []schema.Activation{schema.ActivationNone, schema.ActivationRelu, schema.ActivationRelu6}[r.IntN(3)]}
	if r.IntN(3) == 0 {
		c.batches = 1 // the common sensor-model shape
	}
	c.filter = randWeights(r, c.units*c.depth)
	c.wScale = []float32{0.001 + r.Float32()*0.01}
	if r.IntN(2) == 0 {
		c.wScale = make([]float32, c.units)
		for i := range c.wScale {
			c.wScale[i] = 0.001 + r.Float32()*0.01
		}
	}
	if r.IntN(5) != 0 {
		c.bias = make([]int32, c.units)
		for i := range c.bias {
			c.bias[i] = int32(r.IntN(40001) - 20000)
		}
	}
	return c
}

func (c fcCase) String() string {
	return fmt.Sprintf("fc %dx%d -> %d, %d scales, bias %v, act %d", c.batches, c.depth, c.units, len(c.wScale), c.bias != nil, c.act)
}

func (c fcCase) model(t testing.TB) []byte {
	t.Helper()
	m := write.NewModel("outpost fully-connected differential test")
	sg := m.Subgraph()
	q := func(scale float32, zp int) *write.Quant {
		return &write.Quant{Scale: []float32{scale}, ZeroPoint: []int64{int64(zp)}}
	}
	in := sg.AddTensor(write.Tensor{Name: "in", Type: schema.TensorTypeInt8, Shape: []int32{int32(c.batches), int32(c.depth)}, Quant: q(c.inScale, c.inZP)})
	f := sg.AddTensor(write.Tensor{Name: "filter", Type: schema.TensorTypeInt8, Shape: []int32{int32(c.units), int32(c.depth)},
		Data: write.Int8s(c.filter), Quant: &write.Quant{Scale: c.wScale, ZeroPoint: make([]int64, len(c.wScale))}})
	b := int32(-1)
	if c.bias != nil {
		bdata := make([]byte, 4*len(c.bias))
		for i, v := range c.bias {
			binary.LittleEndian.PutUint32(bdata[4*i:], uint32(v))
		}
		b = sg.AddTensor(write.Tensor{Name: "bias", Type: schema.TensorTypeInt32, Shape: []int32{int32(c.units)}, Data: bdata})
	}
	out := sg.AddTensor(write.Tensor{Name: "out", Type: schema.TensorTypeInt8, Shape: []int32{int32(c.batches), int32(c.units)}, Quant: q(c.outScale, c.outZP)})
	sg.AddOp(schema.OpFullyConnected, 4, []int32{in, f, b}, []int32{out}, write.FullyConnectedOptions{Activation: c.act})
	sg.SetInputs(in)
	sg.SetOutputs(out)
	data, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestFCInt8PathsMatchReference runs random int8 FULLY_CONNECTED layers on every int8 GEMM
// form (forForms) and compares every byte with the reference loop.
func TestFCInt8PathsMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 14))
	for range shortCases(300, 50) {
		checkFCPaths(t, r)
	}
}

// checkFCPaths runs one random FULLY_CONNECTED layer on every int8 GEMM form (forForms) and
// compares every byte with the reference.
func checkFCPaths(t *testing.T, r *rand.Rand) {
	t.Helper()
	c := randFCCase(r)
	data := c.model(t)
	x := make([]int8, c.batches*c.depth)
	for i := range x {
		x[i] = int8(r.IntN(256) - 128)
	}
	forForms(true, func(path string) {
		m, err := tflite.Load(data)
		if err != nil {
			t.Fatalf("%v: load: %v", c, err)
		}
		ip, err := tflite.NewInterpreter(m, Builtins(), tflite.Options{})
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		copy(ip.Input(0).Int8(), x)
		if err := ip.Invoke(); err != nil {
			t.Fatalf("%v (%s): invoke: %v", c, path, err)
		}
		lo, hi, err := quantActivationRange(c.act, ip.Output(0))
		if err != nil {
			t.Fatal(err)
		}
		want := c.reference(x, lo, hi)
		got := ip.Output(0).Int8()
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%v (%s): output %d = %d, reference %d", c, path, i, got[i], want[i])
			}
		}
	})
}

// reference is reference_integer_ops::FullyConnected written out plainly.
func (c fcCase) reference(x []int8, lo, hi int32) []int8 {
	y := make([]int8, c.batches*c.units)
	for b := range c.batches {
		for o := range c.units {
			var acc int32
			for k := range c.depth {
				acc += int32(c.filter[o*c.depth+k]) * (int32(x[b*c.depth+k]) - int32(c.inZP))
			}
			if c.bias != nil {
				acc += c.bias[o]
			}
			ws := c.wScale[0]
			if len(c.wScale) > 1 {
				ws = c.wScale[o]
			}
			mult, shift := QuantizeMultiplier(float64(c.inScale*ws) / float64(c.outScale))
			v := MultiplyByQuantizedMultiplier(acc, mult, shift) + int32(c.outZP)
			y[b*c.units+o] = int8(min(max(v, lo), hi))
		}
	}
	return y
}

// randWeights returns n random int8 weights in [-127, 127], as the converter writes them.
func randWeights(r *rand.Rand, n int) []int8 {
	w := make([]int8, n)
	for i := range w {
		w[i] = int8(r.IntN(255) - 127)
	}
	return w
}
