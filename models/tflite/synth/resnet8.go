package synth

import (
	"fmt"
	"math/rand/v2"

	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// ResNet8Int8 writes the MLPerf Tiny image-classification network (ResNet-8 on 32×32×3: a
// 3×3 stem of 16 filters, three residual stacks of 16, 32 and 64 filters, the last two
// strided with 1×1 shortcut convolutions, average pool, dense 10, softmax) in full int8 with
// weights drawn from seed.
func ResNet8Int8(seed uint64) ([]byte, error) {
	m := write.NewModel(fmt.Sprintf("synthetic ResNet-8 int8, seed %d", seed))
	b := &builder{sg: m.Subgraph(), r: rand.New(rand.NewPCG(seed, 0x7265736e6574))}
	in := b.activation("input", 32, 32, 3, 2.0/255, 0)
	x := b.conv(in, 16, 3, 1, true)
	for i, c := range []int{16, 32, 64} {
		s := 1
		if i > 0 {
			s = 2
		}
		y := b.conv(x, c, 3, s, true)
		y = b.conv(y, c, 3, 1, false)
		short := x
		if s != 1 {
			short = b.conv(x, c, 1, s, false)
		}
		sum := b.out(y.h, y.w, c, true)
		b.sg.AddOp(schema.OpAdd, 2, []int32{short.idx, y.idx}, []int32{sum.idx}, write.AddOptions(schema.ActivationRelu6))
		x = sum
	}
	b.sg.SetInputs(in.idx)
	return b.head(m, x, 10)
}
