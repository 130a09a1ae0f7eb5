package tflite

import (
	"fmt"

	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Field slots of the builtin options tables (schema.fbs, schema version 3). They live here and
// not in package schema because only the reader needs them; the writer adds what it emits.
const (
	conv2DPadding, conv2DStrideW, conv2DStrideH, conv2DActivation, conv2DDilationW, conv2DDilationH = 0, 1, 2, 3, 4, 5

	dwPadding, dwStrideW, dwStrideH, dwDepthMultiplier, dwActivation, dwDilationW, dwDilationH = 0, 1, 2, 3, 4, 5, 6

	poolPadding, poolStrideW, poolStrideH, poolFilterW, poolFilterH, poolActivation = 0, 1, 2, 3, 4, 5

	fcActivation, fcWeightsFormat, fcKeepNumDims, fcAsymmetricQuantizeInputs = 0, 1, 2, 3

	softmaxBeta = 0

	concatAxis, concatActivation = 0, 1

	addActivation, addPotScaleInt16 = 0, 1
	subActivation, subPotScaleInt16 = 0, 1
	mulActivation                   = 0

	reshapeNewShape = 0

	ssBeginMask, ssEndMask, ssEllipsisMask, ssNewAxisMask, ssShrinkAxisMask, ssOffset = 0, 1, 2, 3, 4, 5

	leakyReluAlpha = 0

	tconvPadding, tconvStrideW, tconvStrideH, tconvActivation = 0, 1, 2, 3

	svdfRank, svdfActivation, svdfAsymmetricQuantizeInputs = 0, 1, 2

	lstmActivation, lstmCellClip, lstmProjClip, lstmTimeMajor, lstmAsymmetricQuantizeInputs, lstmDiagonalRecurrent = 0, 1, 2, 3, 4, 5

	ifThen, ifElse       = 0, 1
	whileCond, whileBody = 0, 1
	callOnceInit         = 0
)

// Typed builtin options. Operator.Options holds a pointer to one of these, or nil when the op
// has none (or its options type is not parsed yet; add it here and in parseOptions).
type (
	Conv2DOptions struct {
		Padding              schema.Padding
		StrideW, StrideH     int
		Activation           schema.Activation
		DilationW, DilationH int
	}
	DepthwiseConv2DOptions struct {
		Padding              schema.Padding
		StrideW, StrideH     int
		DepthMultiplier      int
		Activation           schema.Activation
		DilationW, DilationH int
	}
	Pool2DOptions struct {
		Padding                   schema.Padding
		StrideW, StrideH          int
		FilterWidth, FilterHeight int
		Activation                schema.Activation
	}
	FullyConnectedOptions struct {
		Activation               schema.Activation
		WeightsFormat            int8 // 0 DEFAULT; 1 SHUFFLED4x16INT8 (not supported by the reference kernels)
		KeepNumDims              bool
		AsymmetricQuantizeInputs bool
	}
	SoftmaxOptions       struct{ Beta float32 }
	ConcatenationOptions struct {
		Axis       int
		Activation schema.Activation
	}
	AddOptions struct {
		Activation    schema.Activation
		PotScaleInt16 bool
	}
	SubOptions struct {
		Activation    schema.Activation
		PotScaleInt16 bool
	}
	MulOptions     struct{ Activation schema.Activation }
	ReshapeOptions struct {
		// NewShape is the target shape; nil when the option is absent (then the second input
		// or the output tensor's shape decides).
		NewShape []int
	}
	StridedSliceOptions struct {
		BeginMask, EndMask, EllipsisMask, NewAxisMask, ShrinkAxisMask int32
		Offset                                                        bool
	}
	LeakyReluOptions     struct{ Alpha float32 }
	TransposeConvOptions struct {
		Padding          schema.Padding
		StrideW, StrideH int
		Activation       schema.Activation
	}
	SVDFOptions struct {
		Rank                     int
		Activation               schema.Activation
		AsymmetricQuantizeInputs bool
	}
	UnidirectionalSequenceLSTMOptions struct {
		Activation               schema.Activation
		CellClip, ProjClip       float32
		TimeMajor                bool
		AsymmetricQuantizeInputs bool
		DiagonalRecurrentTensors bool
	}
	IfOptions       struct{ Then, Else int }
	WhileOptions    struct{ Cond, Body int }
	CallOnceOptions struct{ Init int }
)

// optReader accumulates the first error so option parsers stay flat.
type optReader struct {
	t   table
	err error
}

func (r *optReader) i32(slot int, def int32) int {
	v, err := r.t.i32(slot, def)
	r.keep(err)
	return int(v)
}

func (r *optReader) i8(slot int) int8 {
	v, err := r.t.i8(slot, 0)
	r.keep(err)
	return v
}

func (r *optReader) boolean(slot int, def bool) bool {
	d := uint8(0)
	if def {
		d = 1
	}
	v, err := r.t.u8(slot, d)
	r.keep(err)
	return v != 0
}

func (r *optReader) f32(slot int, def float32) float32 {
	v, err := r.t.f32(slot, def)
	r.keep(err)
	return v
}

func (r *optReader) act(slot int) schema.Activation {
	a := schema.Activation(r.i8(slot))
	if a < schema.ActivationNone || a > schema.ActivationSignBit {
		r.keep(fmt.Errorf("unknown fused activation %d", a))
	}
	return a
}

func (r *optReader) pad(slot int) schema.Padding {
	p := schema.Padding(r.i8(slot))
	if p != schema.PaddingSame && p != schema.PaddingValid {
		r.keep(fmt.Errorf("unknown padding %d", p))
	}
	return p
}

func (r *optReader) keep(err error) {
	if r.err == nil {
		r.err = err
	}
}

// subgraph validates a subgraph reference.
func (r *optReader) subgraph(slot int, nsub int) int {
	v := r.i32(slot, 0)
	if v < 0 || v >= nsub {
		r.keep(fmt.Errorf("subgraph index %d out of range [0,%d)", v, nsub))
	}
	return v
}

func parseOptions(typ schema.BuiltinOptions, t table, nsub int) (any, error) {
	r := &optReader{t: t}
	var o any
	switch typ {
	case schema.BuiltinOptionsConv2D:
		o = &Conv2DOptions{Padding: r.pad(conv2DPadding), StrideW: r.i32(conv2DStrideW, 0), StrideH: r.i32(conv2DStrideH, 0),
			Activation: r.act(conv2DActivation), DilationW: r.i32(conv2DDilationW, 1), DilationH: r.i32(conv2DDilationH, 1)}
	case schema.BuiltinOptionsDepthwiseConv2D:
		o = &DepthwiseConv2DOptions{Padding: r.pad(dwPadding), StrideW: r.i32(dwStrideW, 0), StrideH: r.i32(dwStrideH, 0),
			DepthMultiplier: r.i32(dwDepthMultiplier, 0), Activation: r.act(dwActivation),
			DilationW: r.i32(dwDilationW, 1), DilationH: r.i32(dwDilationH, 1)}
	case schema.BuiltinOptionsPool2D:
		o = &Pool2DOptions{Padding: r.pad(poolPadding), StrideW: r.i32(poolStrideW, 0), StrideH: r.i32(poolStrideH, 0),
			FilterWidth: r.i32(poolFilterW, 0), FilterHeight: r.i32(poolFilterH, 0), Activation: r.act(poolActivation)}
	case schema.BuiltinOptionsFullyConnected:
		o = &FullyConnectedOptions{Activation: r.act(fcActivation), WeightsFormat: r.i8(fcWeightsFormat),
			KeepNumDims: r.boolean(fcKeepNumDims, false), AsymmetricQuantizeInputs: r.boolean(fcAsymmetricQuantizeInputs, false)}
	case schema.BuiltinOptionsSoftmax:
		o = &SoftmaxOptions{Beta: r.f32(softmaxBeta, 0)}
	case schema.BuiltinOptionsConcatenation:
		o = &ConcatenationOptions{Axis: r.i32(concatAxis, 0), Activation: r.act(concatActivation)}
	case schema.BuiltinOptionsAdd:
		o = &AddOptions{Activation: r.act(addActivation), PotScaleInt16: r.boolean(addPotScaleInt16, true)}
	case schema.BuiltinOptionsSub:
		o = &SubOptions{Activation: r.act(subActivation), PotScaleInt16: r.boolean(subPotScaleInt16, true)}
	case schema.BuiltinOptionsMul:
		o = &MulOptions{Activation: r.act(mulActivation)}
	case schema.BuiltinOptionsReshape:
		ro := &ReshapeOptions{}
		if _, present, err := t.ref(reshapeNewShape); err != nil {
			r.keep(err)
		} else if present {
			v, err := t.int32s(reshapeNewShape)
			r.keep(err)
			ro.NewShape = make([]int, len(v))
			for i, d := range v {
				ro.NewShape[i] = int(d)
			}
		}
		o = ro
	case schema.BuiltinOptionsStridedSlice:
		o = &StridedSliceOptions{BeginMask: int32(r.i32(ssBeginMask, 0)), EndMask: int32(r.i32(ssEndMask, 0)),
			EllipsisMask: int32(r.i32(ssEllipsisMask, 0)), NewAxisMask: int32(r.i32(ssNewAxisMask, 0)),
			ShrinkAxisMask: int32(r.i32(ssShrinkAxisMask, 0)), Offset: r.boolean(ssOffset, false)}
	case schema.BuiltinOptionsLeakyRelu:
		o = &LeakyReluOptions{Alpha: r.f32(leakyReluAlpha, 0)}
	case schema.BuiltinOptionsTransposeConv:
		o = &TransposeConvOptions{Padding: r.pad(tconvPadding), StrideW: r.i32(tconvStrideW, 0), StrideH: r.i32(tconvStrideH, 0),
			Activation: r.act(tconvActivation)}
	case schema.BuiltinOptionsSVDF:
		o = &SVDFOptions{Rank: r.i32(svdfRank, 0), Activation: r.act(svdfActivation),
			AsymmetricQuantizeInputs: r.boolean(svdfAsymmetricQuantizeInputs, false)}
	case schema.BuiltinOptionsUnidirectionalSequenceLSTM:
		o = &UnidirectionalSequenceLSTMOptions{Activation: r.act(lstmActivation), CellClip: r.f32(lstmCellClip, 0),
			ProjClip: r.f32(lstmProjClip, 0), TimeMajor: r.boolean(lstmTimeMajor, false),
			AsymmetricQuantizeInputs: r.boolean(lstmAsymmetricQuantizeInputs, false),
			DiagonalRecurrentTensors: r.boolean(lstmDiagonalRecurrent, false)}
	case schema.BuiltinOptionsIf:
		o = &IfOptions{Then: r.subgraph(ifThen, nsub), Else: r.subgraph(ifElse, nsub)}
	case schema.BuiltinOptionsWhile:
		o = &WhileOptions{Cond: r.subgraph(whileCond, nsub), Body: r.subgraph(whileBody, nsub)}
	case schema.BuiltinOptionsCallOnce:
		o = &CallOnceOptions{Init: r.subgraph(callOnceInit, nsub)}
	default:
		parse := optionParsers[typ]
		if parse == nil {
			return nil, nil
		}
		o = parse(r)
	}
	if r.err != nil {
		return nil, r.err
	}
	return o, nil
}

// optionParsers holds option parsers that op-family blocks below register in their init, so a
// family adds its options without touching the switch above (several families append here).
var optionParsers = map[schema.BuiltinOptions]func(r *optReader) any{}

// ---- Shape, data movement, reductions and lookups (PAD … L2_NORMALIZATION) ----

// MirrorPadMode is MirrorPadOptions.mode: REFLECT excludes the edge, SYMMETRIC repeats it.
type MirrorPadMode int8

const (
	MirrorPadReflect   MirrorPadMode = 0
	MirrorPadSymmetric MirrorPadMode = 1
)

type (
	MirrorPadOptions struct{ Mode MirrorPadMode }
	PackOptions      struct{ ValuesCount, Axis int }
	UnpackOptions    struct{ Num, Axis int }
	// SplitOptions is SPLIT's and SPLIT_V's num_splits.
	SplitOptions   struct{ NumSplits int }
	SqueezeOptions struct{ Dims []int } // empty: squeeze every size-1 dimension
	GatherOptions  struct{ Axis, BatchDims int }
	// ShapeOptions.OutType is SHAPE's output type (INT32 or INT64).
	ShapeOptions struct{ OutType schema.TensorType }
	// BlockSizeOptions is SPACE_TO_DEPTH's and DEPTH_TO_SPACE's block_size.
	BlockSizeOptions struct{ BlockSize int }
	// ResizeOptions is RESIZE_BILINEAR's and RESIZE_NEAREST_NEIGHBOR's options.
	ResizeOptions struct{ AlignCorners, HalfPixelCenters bool }
	// ArgOptions is ARG_MAX's and ARG_MIN's output_type (INT32 or INT64).
	ArgOptions     struct{ OutputType schema.TensorType }
	CumsumOptions  struct{ Exclusive, Reverse bool }
	ReducerOptions struct{ KeepDims bool }
	L2NormOptions  struct{ Activation schema.Activation }
)

func init() {
	blockSize := func(r *optReader) any { return &BlockSizeOptions{BlockSize: r.i32(0, 0)} }
	argOpts := func(r *optReader) any { return &ArgOptions{OutputType: schema.TensorType(r.i8(0))} }
	split := func(r *optReader) any { return &SplitOptions{NumSplits: r.i32(0, 0)} }
	for typ, parse := range map[schema.BuiltinOptions]func(r *optReader) any{
		schema.BuiltinOptionsMirrorPad: func(r *optReader) any { return &MirrorPadOptions{Mode: MirrorPadMode(r.i8(0))} },
		schema.BuiltinOptionsPack:      func(r *optReader) any { return &PackOptions{ValuesCount: r.i32(0, 0), Axis: r.i32(1, 0)} },
		schema.BuiltinOptionsUnpack:    func(r *optReader) any { return &UnpackOptions{Num: r.i32(0, 0), Axis: r.i32(1, 0)} },
		schema.BuiltinOptionsSplit:     split,
		schema.BuiltinOptionsSplitV:    split,
		schema.BuiltinOptionsSqueeze: func(r *optReader) any {
			o := &SqueezeOptions{}
			if _, present, err := r.t.ref(0); err != nil {
				r.keep(err)
			} else if present {
				v, err := r.t.int32s(0)
				r.keep(err)
				for _, d := range v {
					o.Dims = append(o.Dims, int(d))
				}
			}
			return o
		},
		schema.BuiltinOptionsGather:       func(r *optReader) any { return &GatherOptions{Axis: r.i32(0, 0), BatchDims: r.i32(1, 0)} },
		schema.BuiltinOptionsShape:        func(r *optReader) any { return &ShapeOptions{OutType: schema.TensorType(r.i8(0))} },
		schema.BuiltinOptionsSpaceToDepth: blockSize,
		schema.BuiltinOptionsDepthToSpace: blockSize,
		// ResizeBilinearOptions slots 0 and 1 are the deprecated new_height/new_width.
		schema.BuiltinOptionsResizeBilinear: func(r *optReader) any {
			return &ResizeOptions{AlignCorners: r.boolean(2, false), HalfPixelCenters: r.boolean(3, false)}
		},
		schema.BuiltinOptionsResizeNearestNeighbor: func(r *optReader) any {
			return &ResizeOptions{AlignCorners: r.boolean(0, false), HalfPixelCenters: r.boolean(1, false)}
		},
		schema.BuiltinOptionsArgMax: argOpts,
		schema.BuiltinOptionsArgMin: argOpts,
		schema.BuiltinOptionsCumsum: func(r *optReader) any {
			return &CumsumOptions{Exclusive: r.boolean(0, false), Reverse: r.boolean(1, false)}
		},
		schema.BuiltinOptionsReducer: func(r *optReader) any { return &ReducerOptions{KeepDims: r.boolean(0, false)} },
		schema.BuiltinOptionsL2Norm:  func(r *optReader) any { return &L2NormOptions{Activation: r.act(0)} },
	} {
		optionParsers[typ] = parse
	}
}

// ---- Elementwise arithmetic, comparison and activations (DIV, CAST) ----

type (
	DivOptions  struct{ Activation schema.Activation }
	CastOptions struct{ In, Out schema.TensorType } // informational; the tensors' types decide
)

func init() {
	optionParsers[schema.BuiltinOptionsDiv] = func(r *optReader) any { return &DivOptions{Activation: r.act(0)} }
	optionParsers[schema.BuiltinOptionsCast] = func(r *optReader) any {
		return &CastOptions{In: schema.TensorType(r.i8(0)), Out: schema.TensorType(r.i8(1))}
	}
}

// ---- Sequence, matrix, control flow and resources (BATCH_MATMUL, VAR_HANDLE) ----

type (
	// BatchMatMulOptions: adj_x/adj_y transpose the last two dimensions of lhs/rhs.
	BatchMatMulOptions struct{ AdjX, AdjY, AsymmetricQuantizeInputs bool }
	// VarHandleOptions names a resource variable; handles with equal names share it.
	VarHandleOptions struct{ Container, SharedName string }
)

func init() {
	optionParsers[schema.BuiltinOptionsBatchMatMul] = func(r *optReader) any {
		return &BatchMatMulOptions{AdjX: r.boolean(0, false), AdjY: r.boolean(1, false), AsymmetricQuantizeInputs: r.boolean(2, false)}
	}
	optionParsers[schema.BuiltinOptionsVarHandle] = func(r *optReader) any {
		c, err1 := r.t.str(0)
		s, err2 := r.t.str(1)
		r.keep(err1)
		r.keep(err2)
		return &VarHandleOptions{Container: c, SharedName: s}
	}
}
