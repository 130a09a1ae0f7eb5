package kernels

import (
	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
)

// The int8 FULLY_CONNECTED fast path: with constant symmetric weights (filter zero point 0,
// as the converter writes them) the layer is a 1x1, stride-1 CONV_2D over batches pixels of
// depth channels, so it runs on the int8 convolution's GEMM (conv_gemm.go) — the portable
// kernel or the SIMD one, chosen in Prepare — with the input offset folded into the bias. The
// int32 accumulators are reference_integer_ops::FullyConnected's, so the bytes are identical.

// prepareFCGemm sets d.gemm when the fast path applies; otherwise evalFCInt8 runs.
func prepareFCGemm(n *tflite.Node, d *fcData, filter, bias *tensor.Tensor) error {
	if d.filterOff != 0 || !filter.Constant() || (bias != nil && !bias.Constant()) {
		return nil
	}
	g := &convGeom{batches: 1, inH: 1, inW: d.batches, inC: d.depth, outH: 1, outW: d.batches, outC: d.units,
		fH: 1, fW: 1, strideH: 1, strideW: 1, dilH: 1, dilW: 1, inOff: d.inOff, outOff: d.outOff,
		qMin: d.qMin, qMax: d.qMax, mult: make([]int32, d.units), shift: make([]int, d.units)}
	for c := range d.units {
		i := 0
		if len(d.mult) > 1 {
			i = c
		}
		g.mult[c], g.shift[c] = d.mult[i], d.shift[i]
		if s := g.shift[c]; s > 30 || s < -31 {
			// Outside the shifts the GEMM's requantization tables hold: keep the reference.
			return nil
		}
	}
	if err := g.prepareGemm(n, filter.Int8(), bias.Int32()); err != nil {
		return err
	}
	d.gemm = g
	// The GEMM holds its own requantization (gemmInt8.rq): evalFC no longer reads these.
	d.mult, d.shift = nil, nil
	// The GEMM holds the weights packed and the bias folded: evalFC reads neither.
	n.Packed(1)
	n.Packed(2)
	return nil
}
