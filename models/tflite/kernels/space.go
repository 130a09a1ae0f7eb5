package kernels

import (
	"encoding/binary"
	"fmt"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// SPACE_TO_BATCH_ND, BATCH_TO_SPACE_ND, SPACE_TO_DEPTH and DEPTH_TO_SPACE on NHWC tensors
// (reference_ops of the same names). A 3-D input [batch, spatial, depth] is treated as
// [batch, spatial, 1, depth] with a block width of 1, as the reference kernels extend it.

func init() {
	register(func(r *Resolver) {
		r.AddBuiltin(schema.OpSpaceToBatchNd, 1, 4, tflite.KernelFuncs{PrepareFn: prepareSpaceBatch, EvalFn: evalSpaceToBatch})
		r.AddBuiltin(schema.OpBatchToSpaceNd, 1, 4, tflite.KernelFuncs{PrepareFn: prepareSpaceBatch, EvalFn: evalBatchToSpace})
		r.AddBuiltin(schema.OpSpaceToDepth, 1, 2, tflite.KernelFuncs{PrepareFn: prepareDepthSpace, EvalFn: evalMove})
		r.AddBuiltin(schema.OpDepthToSpace, 1, 2, tflite.KernelFuncs{PrepareFn: prepareDepthSpace, EvalFn: evalMove})
	})
}

type spaceBatchData struct {
	es        int
	pad       [8]byte // SPACE_TO_BATCH_ND's fill: the output zero point (0 for float)
	in, out   [4]int  // NHWC, 3-D inputs extended with W=1
	bh, bw    int
	top, left int // paddings (space to batch) or crops (batch to space)
}

func prepareSpaceBatch(n *tflite.Node) error {
	if err := n.CheckIO(3, 3, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	toBatch := n.Op.Builtin == schema.OpSpaceToBatchNd
	if in.Rank() != 3 && in.Rank() != 4 {
		return fmt.Errorf("input %q has rank %d, want 3 or 4", in.Name(), in.Rank())
	}
	es, err := elemBytes(in)
	if err != nil {
		return err
	}
	if err := sameType(in, out); err != nil {
		return err
	}
	spatial := in.Rank() - 2
	block, err := constInts(n.Input(1), "block_shape")
	if err != nil {
		return err
	}
	what := "crops"
	if toBatch {
		what = "paddings"
	}
	pads, err := constInts(n.Input(2), what)
	if err != nil {
		return err
	}
	if len(block) != spatial || len(pads) != 2*spatial {
		return fmt.Errorf("block_shape %v and %s %v do not fit %d spatial dimensions", block, what, pads, spatial)
	}
	for i, b := range block {
		if b < 1 {
			return fmt.Errorf("block_shape %v: entry %d is %d, want ≥ 1", block, i, b)
		}
	}
	for _, p := range pads {
		if p < 0 {
			return fmt.Errorf("%s %v: negative entry", what, pads)
		}
	}
	d := &spaceBatchData{es: es, bh: block[0], bw: 1, top: pads[0]}
	copy(d.in[:], in.Shape())
	if spatial == 2 {
		d.bw, d.left = block[1], pads[2]
	} else {
		d.in[2], d.in[3] = 1, in.Dim(2)
	}
	var bottom, right int
	bottom = pads[1]
	if spatial == 2 {
		right = pads[3]
	}
	blocks := d.bh * d.bw
	if toBatch {
		h, w := d.in[1]+d.top+bottom, d.in[2]+d.left+right
		if h%d.bh != 0 || w%d.bw != 0 {
			return fmt.Errorf("padded spatial shape %dx%d is not a multiple of block %v", h, w, block)
		}
		d.out = [4]int{d.in[0] * blocks, h / d.bh, w / d.bw, d.in[3]}
		if q := out.Quant(); q != nil && len(q.ZeroPoint) > 0 && in.DType() != tensor.Float32 {
			// reference SpaceToBatchND pads with params.output_offset, the output zero point.
			binary.LittleEndian.PutUint64(d.pad[:], uint64(q.ZeroPoint[0]))
		}
	} else {
		if d.in[0]%blocks != 0 {
			return fmt.Errorf("batch %d is not a multiple of the block size %d", d.in[0], blocks)
		}
		h, w := d.in[1]*d.bh-d.top-bottom, d.in[2]*d.bw-d.left-right
		if h < 0 || w < 0 {
			return fmt.Errorf("crops %v exceed the spatial shape", pads)
		}
		d.out = [4]int{d.in[0] / blocks, h, w, d.in[3]}
	}
	if tensor.NumElements(d.out[:]) < 0 {
		return fmt.Errorf("output shape %v overflows", d.out)
	}
	shape := d.out[:]
	if spatial == 1 {
		shape = []int{d.out[0], d.out[1], d.out[3]}
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	n.Data = d
	return nil
}

func evalSpaceToBatch(n *tflite.Node) error {
	d := n.Data.(*spaceBatchData)
	src, dst := n.Input(0).Bytes(), n.Output(0).Bytes()
	depth := d.out[3] * d.es
	for ob := 0; ob < d.out[0]; ob++ {
		ib := ob % d.in[0]
		shiftW := (ob / d.in[0]) % d.bw
		shiftH := ob / d.in[0] / d.bw
		for oh := 0; oh < d.out[1]; oh++ {
			ih := oh*d.bh + shiftH - d.top
			for ow := 0; ow < d.out[2]; ow++ {
				iw := ow*d.bw + shiftW - d.left
				o := ((ob*d.out[1]+oh)*d.out[2] + ow) * depth
				if ih < 0 || ih >= d.in[1] || iw < 0 || iw >= d.in[2] {
					fillPattern(dst[o:o+depth], d.pad[:d.es])
					continue
				}
				i := ((ib*d.in[1]+ih)*d.in[2] + iw) * depth
				copy(dst[o:o+depth], src[i:i+depth])
			}
		}
	}
	return nil
}

func evalBatchToSpace(n *tflite.Node) error {
	d := n.Data.(*spaceBatchData)
	src, dst := n.Input(0).Bytes(), n.Output(0).Bytes()
	depth := d.in[3] * d.es
	for ib := 0; ib < d.in[0]; ib++ {
		ob := ib % d.out[0]
		spatial := ib / d.out[0]
		offH, offW := spatial/d.bw, spatial%d.bw
		for ih := 0; ih < d.in[1]; ih++ {
			oh := ih*d.bh + offH - d.top
			if oh < 0 || oh >= d.out[1] {
				continue
			}
			for iw := 0; iw < d.in[2]; iw++ {
				ow := iw*d.bw + offW - d.left
				if ow < 0 || ow >= d.out[2] {
					continue
				}
				i := ((ib*d.in[1]+ih)*d.in[2] + iw) * depth
				o := ((ob*d.out[1]+oh)*d.out[2] + ow) * depth
				copy(dst[o:o+depth], src[i:i+depth])
			}
		}
	}
	return nil
}

// prepareDepthSpace expresses both ops as one 6-D strided copy in output order.
func prepareDepthSpace(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return err
	}
	in, out := n.Input(0), n.Output(0)
	opts, _ := n.Options.(*tflite.BlockSizeOptions)
	if opts == nil || opts.BlockSize < 1 {
		return fmt.Errorf("block_size must be ≥ 1")
	}
	bs := opts.BlockSize
	if in.Rank() != 4 {
		return fmt.Errorf("input %q has rank %d, want 4 (NHWC)", in.Name(), in.Rank())
	}
	es, err := elemBytes(in)
	if err != nil {
		return err
	}
	if err := sameType(in, out); err != nil {
		return err
	}
	b, h, w, c := in.Dim(0), in.Dim(1), in.Dim(2), in.Dim(3)
	var shape []int
	var blk moveBlock
	if n.Op.Builtin == schema.OpSpaceToDepth {
		if h%bs != 0 || w%bs != 0 {
			return fmt.Errorf("input %q: height %d and width %d must be multiples of block_size %d", in.Name(), h, w, bs)
		}
		shape = []int{b, h / bs, w / bs, c * bs * bs}
		// Output (b, oh, ow, (bh*bs+bw)*c + k) = input (b, oh*bs+bh, ow*bs+bw, k).
		blk = moveBlock{dims: []int{b, h / bs, w / bs, bs, bs, c}, srcStride: []int{h * w * c, bs * w * c, bs * c, w * c, c, 1}}
	} else {
		if c%(bs*bs) != 0 {
			return fmt.Errorf("input %q: depth %d must be a multiple of block_size² %d", in.Name(), c, bs*bs)
		}
		oc := c / (bs * bs)
		shape = []int{b, h * bs, w * bs, oc}
		// Output (b, ih*bs+bh, iw*bs+bw, k) = input (b, ih, iw, (bh*bs+bw)*oc + k).
		blk = moveBlock{dims: []int{b, h, bs, w, bs, oc}, srcStride: []int{h * w * c, w * c, bs * oc, c, oc, 1}}
	}
	if tensor.NumElements(shape) < 0 {
		return fmt.Errorf("output shape %v overflows", shape)
	}
	if err := setOutShape(out, shape); err != nil {
		return err
	}
	blk.dstStride = stridesOf(blk.dims)
	n.Data = &moveData{es: es, block: blk}
	return nil
}
