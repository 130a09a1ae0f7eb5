// Written from the facts of TFLite's schema.fbs (tensorflow/lite/schema/schema.fbs, schema version 3).

// Package schema holds the enums and table field slots of the TensorFlow Lite flatbuffer format
// (schema version 3). Reader and writer both use these numbers, so they live in one place.
package schema

// TensorType is the element type of a tensor (schema enum TensorType : byte).
type TensorType int8

const (
	TensorTypeFloat32    TensorType = 0
	TensorTypeFloat16    TensorType = 1
	TensorTypeInt32      TensorType = 2
	TensorTypeUint8      TensorType = 3
	TensorTypeInt64      TensorType = 4
	TensorTypeString     TensorType = 5
	TensorTypeBool       TensorType = 6
	TensorTypeInt16      TensorType = 7
	TensorTypeComplex64  TensorType = 8
	TensorTypeInt8       TensorType = 9
	TensorTypeFloat64    TensorType = 10
	TensorTypeComplex128 TensorType = 11
	TensorTypeUint64     TensorType = 12
	TensorTypeResource   TensorType = 13
	TensorTypeVariant    TensorType = 14
	TensorTypeUint32     TensorType = 15
	TensorTypeUint16     TensorType = 16
	TensorTypeInt4       TensorType = 17
)

var tensorTypeNames = [...]string{"FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL", "INT16", "COMPLEX64", "INT8", "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE", "VARIANT", "UINT32", "UINT16", "INT4"}

// String returns the schema name of t, e.g. "FLOAT32", or "TensorType(N)" when unknown.
func (t TensorType) String() string {
	if t >= 0 && int(t) < len(tensorTypeNames) {
		return tensorTypeNames[t]
	}
	return "TensorType(" + itoa(int(t)) + ")"
}

// BuiltinOperator identifies a builtin op (schema enum BuiltinOperator : int32).
type BuiltinOperator int32

const (
	OpAdd                          BuiltinOperator = 0
	OpAveragePool2D                BuiltinOperator = 1
	OpConcatenation                BuiltinOperator = 2
	OpConv2D                       BuiltinOperator = 3
	OpDepthwiseConv2D              BuiltinOperator = 4
	OpDepthToSpace                 BuiltinOperator = 5
	OpDequantize                   BuiltinOperator = 6
	OpEmbeddingLookup              BuiltinOperator = 7
	OpFloor                        BuiltinOperator = 8
	OpFullyConnected               BuiltinOperator = 9
	OpHashtableLookup              BuiltinOperator = 10
	OpL2Normalization              BuiltinOperator = 11
	OpL2Pool2D                     BuiltinOperator = 12
	OpLocalResponseNormalization   BuiltinOperator = 13
	OpLogistic                     BuiltinOperator = 14
	OpLshProjection                BuiltinOperator = 15
	OpLstm                         BuiltinOperator = 16
	OpMaxPool2D                    BuiltinOperator = 17
	OpMul                          BuiltinOperator = 18
	OpRelu                         BuiltinOperator = 19
	OpReluN1To1                    BuiltinOperator = 20
	OpRelu6                        BuiltinOperator = 21
	OpReshape                      BuiltinOperator = 22
	OpResizeBilinear               BuiltinOperator = 23
	OpRnn                          BuiltinOperator = 24
	OpSoftmax                      BuiltinOperator = 25
	OpSpaceToDepth                 BuiltinOperator = 26
	OpSvdf                         BuiltinOperator = 27
	OpTanh                         BuiltinOperator = 28
	OpConcatEmbeddings             BuiltinOperator = 29
	OpSkipGram                     BuiltinOperator = 30
	OpCall                         BuiltinOperator = 31
	OpCustom                       BuiltinOperator = 32
	OpEmbeddingLookupSparse        BuiltinOperator = 33
	OpPad                          BuiltinOperator = 34
	OpUnidirectionalSequenceRnn    BuiltinOperator = 35
	OpGather                       BuiltinOperator = 36
	OpBatchToSpaceNd               BuiltinOperator = 37
	OpSpaceToBatchNd               BuiltinOperator = 38
	OpTranspose                    BuiltinOperator = 39
	OpMean                         BuiltinOperator = 40
	OpSub                          BuiltinOperator = 41
	OpDiv                          BuiltinOperator = 42
	OpSqueeze                      BuiltinOperator = 43
	OpUnidirectionalSequenceLstm   BuiltinOperator = 44
	OpStridedSlice                 BuiltinOperator = 45
	OpBidirectionalSequenceRnn     BuiltinOperator = 46
	OpExp                          BuiltinOperator = 47
	OpTopkV2                       BuiltinOperator = 48
	OpSplit                        BuiltinOperator = 49
	OpLogSoftmax                   BuiltinOperator = 50
	OpDelegate                     BuiltinOperator = 51
	OpBidirectionalSequenceLstm    BuiltinOperator = 52
	OpCast                         BuiltinOperator = 53
	OpPrelu                        BuiltinOperator = 54
	OpMaximum                      BuiltinOperator = 55
	OpArgMax                       BuiltinOperator = 56
	OpMinimum                      BuiltinOperator = 57
	OpLess                         BuiltinOperator = 58
	OpNeg                          BuiltinOperator = 59
	OpPadv2                        BuiltinOperator = 60
	OpGreater                      BuiltinOperator = 61
	OpGreaterEqual                 BuiltinOperator = 62
	OpLessEqual                    BuiltinOperator = 63
	OpSelect                       BuiltinOperator = 64
	OpSlice                        BuiltinOperator = 65
	OpSin                          BuiltinOperator = 66
	OpTransposeConv                BuiltinOperator = 67
	OpSparseToDense                BuiltinOperator = 68
	OpTile                         BuiltinOperator = 69
	OpExpandDims                   BuiltinOperator = 70
	OpEqual                        BuiltinOperator = 71
	OpNotEqual                     BuiltinOperator = 72
	OpLog                          BuiltinOperator = 73
	OpSum                          BuiltinOperator = 74
	OpSqrt                         BuiltinOperator = 75
	OpRsqrt                        BuiltinOperator = 76
	OpShape                        BuiltinOperator = 77
	OpPow                          BuiltinOperator = 78
	OpArgMin                       BuiltinOperator = 79
	OpFakeQuant                    BuiltinOperator = 80
	OpReduceProd                   BuiltinOperator = 81
	OpReduceMax                    BuiltinOperator = 82
	OpPack                         BuiltinOperator = 83
	OpLogicalOr                    BuiltinOperator = 84
	OpOneHot                       BuiltinOperator = 85
	OpLogicalAnd                   BuiltinOperator = 86
	OpLogicalNot                   BuiltinOperator = 87
	OpUnpack                       BuiltinOperator = 88
	OpReduceMin                    BuiltinOperator = 89
	OpFloorDiv                     BuiltinOperator = 90
	OpReduceAny                    BuiltinOperator = 91
	OpSquare                       BuiltinOperator = 92
	OpZerosLike                    BuiltinOperator = 93
	OpFill                         BuiltinOperator = 94
	OpFloorMod                     BuiltinOperator = 95
	OpRange                        BuiltinOperator = 96
	OpResizeNearestNeighbor        BuiltinOperator = 97
	OpLeakyRelu                    BuiltinOperator = 98
	OpSquaredDifference            BuiltinOperator = 99
	OpMirrorPad                    BuiltinOperator = 100
	OpAbs                          BuiltinOperator = 101
	OpSplitV                       BuiltinOperator = 102
	OpUnique                       BuiltinOperator = 103
	OpCeil                         BuiltinOperator = 104
	OpReverseV2                    BuiltinOperator = 105
	OpAddN                         BuiltinOperator = 106
	OpGatherNd                     BuiltinOperator = 107
	OpCos                          BuiltinOperator = 108
	OpWhere                        BuiltinOperator = 109
	OpRank                         BuiltinOperator = 110
	OpElu                          BuiltinOperator = 111
	OpReverseSequence              BuiltinOperator = 112
	OpMatrixDiag                   BuiltinOperator = 113
	OpQuantize                     BuiltinOperator = 114
	OpMatrixSetDiag                BuiltinOperator = 115
	OpRound                        BuiltinOperator = 116
	OpHardSwish                    BuiltinOperator = 117
	OpIf                           BuiltinOperator = 118
	OpWhile                        BuiltinOperator = 119
	OpNonMaxSuppressionV4          BuiltinOperator = 120
	OpNonMaxSuppressionV5          BuiltinOperator = 121
	OpScatterNd                    BuiltinOperator = 122
	OpSelectV2                     BuiltinOperator = 123
	OpDensify                      BuiltinOperator = 124
	OpSegmentSum                   BuiltinOperator = 125
	OpBatchMatmul                  BuiltinOperator = 126
	OpPlaceholderForGreaterOpCodes BuiltinOperator = 127
	OpCumsum                       BuiltinOperator = 128
	OpCallOnce                     BuiltinOperator = 129
	OpBroadcastTo                  BuiltinOperator = 130
	OpRfft2d                       BuiltinOperator = 131
	OpConv3D                       BuiltinOperator = 132
	OpImag                         BuiltinOperator = 133
	OpReal                         BuiltinOperator = 134
	OpComplexAbs                   BuiltinOperator = 135
	OpHashtable                    BuiltinOperator = 136
	OpHashtableFind                BuiltinOperator = 137
	OpHashtableImport              BuiltinOperator = 138
	OpHashtableSize                BuiltinOperator = 139
	OpReduceAll                    BuiltinOperator = 140
	OpConv3DTranspose              BuiltinOperator = 141
	OpVarHandle                    BuiltinOperator = 142
	OpReadVariable                 BuiltinOperator = 143
	OpAssignVariable               BuiltinOperator = 144
	OpBroadcastArgs                BuiltinOperator = 145
	OpRandomStandardNormal         BuiltinOperator = 146
	OpBucketize                    BuiltinOperator = 147
	OpRandomUniform                BuiltinOperator = 148
	OpMultinomial                  BuiltinOperator = 149
	OpGelu                         BuiltinOperator = 150
	OpDynamicUpdateSlice           BuiltinOperator = 151
	OpRelu0To1                     BuiltinOperator = 152
	OpUnsortedSegmentProd          BuiltinOperator = 153
	OpUnsortedSegmentMax           BuiltinOperator = 154
	OpUnsortedSegmentSum           BuiltinOperator = 155
	OpAtan2                        BuiltinOperator = 156
	OpUnsortedSegmentMin           BuiltinOperator = 157
	OpSign                         BuiltinOperator = 158
	OpBitcast                      BuiltinOperator = 159
	OpBitwiseXor                   BuiltinOperator = 160
	OpRightShift                   BuiltinOperator = 161
)

// MaxBuiltinOperator is the highest builtin code this package knows.
const MaxBuiltinOperator = OpRightShift

var builtinOperatorNames = [...]string{
	"ADD",
	"AVERAGE_POOL_2D",
	"CONCATENATION",
	"CONV_2D",
	"DEPTHWISE_CONV_2D",
	"DEPTH_TO_SPACE",
	"DEQUANTIZE",
	"EMBEDDING_LOOKUP",
	"FLOOR",
	"FULLY_CONNECTED",
	"HASHTABLE_LOOKUP",
	"L2_NORMALIZATION",
	"L2_POOL_2D",
	"LOCAL_RESPONSE_NORMALIZATION",
	"LOGISTIC",
	"LSH_PROJECTION",
	"LSTM",
	"MAX_POOL_2D",
	"MUL",
	"RELU",
	"RELU_N1_TO_1",
	"RELU6",
	"RESHAPE",
	"RESIZE_BILINEAR",
	"RNN",
	"SOFTMAX",
	"SPACE_TO_DEPTH",
	"SVDF",
	"TANH",
	"CONCAT_EMBEDDINGS",
	"SKIP_GRAM",
	"CALL",
	"CUSTOM",
	"EMBEDDING_LOOKUP_SPARSE",
	"PAD",
	"UNIDIRECTIONAL_SEQUENCE_RNN",
	"GATHER",
	"BATCH_TO_SPACE_ND",
	"SPACE_TO_BATCH_ND",
	"TRANSPOSE",
	"MEAN",
	"SUB",
	"DIV",
	"SQUEEZE",
	"UNIDIRECTIONAL_SEQUENCE_LSTM",
	"STRIDED_SLICE",
	"BIDIRECTIONAL_SEQUENCE_RNN",
	"EXP",
	"TOPK_V2",
	"SPLIT",
	"LOG_SOFTMAX",
	"DELEGATE",
	"BIDIRECTIONAL_SEQUENCE_LSTM",
	"CAST",
	"PRELU",
	"MAXIMUM",
	"ARG_MAX",
	"MINIMUM",
	"LESS",
	"NEG",
	"PADV2",
	"GREATER",
	"GREATER_EQUAL",
	"LESS_EQUAL",
	"SELECT",
	"SLICE",
	"SIN",
	"TRANSPOSE_CONV",
	"SPARSE_TO_DENSE",
	"TILE",
	"EXPAND_DIMS",
	"EQUAL",
	"NOT_EQUAL",
	"LOG",
	"SUM",
	"SQRT",
	"RSQRT",
	"SHAPE",
	"POW",
	"ARG_MIN",
	"FAKE_QUANT",
	"REDUCE_PROD",
	"REDUCE_MAX",
	"PACK",
	"LOGICAL_OR",
	"ONE_HOT",
	"LOGICAL_AND",
	"LOGICAL_NOT",
	"UNPACK",
	"REDUCE_MIN",
	"FLOOR_DIV",
	"REDUCE_ANY",
	"SQUARE",
	"ZEROS_LIKE",
	"FILL",
	"FLOOR_MOD",
	"RANGE",
	"RESIZE_NEAREST_NEIGHBOR",
	"LEAKY_RELU",
	"SQUARED_DIFFERENCE",
	"MIRROR_PAD",
	"ABS",
	"SPLIT_V",
	"UNIQUE",
	"CEIL",
	"REVERSE_V2",
	"ADD_N",
	"GATHER_ND",
	"COS",
	"WHERE",
	"RANK",
	"ELU",
	"REVERSE_SEQUENCE",
	"MATRIX_DIAG",
	"QUANTIZE",
	"MATRIX_SET_DIAG",
	"ROUND",
	"HARD_SWISH",
	"IF",
	"WHILE",
	"NON_MAX_SUPPRESSION_V4",
	"NON_MAX_SUPPRESSION_V5",
	"SCATTER_ND",
	"SELECT_V2",
	"DENSIFY",
	"SEGMENT_SUM",
	"BATCH_MATMUL",
	"PLACEHOLDER_FOR_GREATER_OP_CODES",
	"CUMSUM",
	"CALL_ONCE",
	"BROADCAST_TO",
	"RFFT2D",
	"CONV_3D",
	"IMAG",
	"REAL",
	"COMPLEX_ABS",
	"HASHTABLE",
	"HASHTABLE_FIND",
	"HASHTABLE_IMPORT",
	"HASHTABLE_SIZE",
	"REDUCE_ALL",
	"CONV_3D_TRANSPOSE",
	"VAR_HANDLE",
	"READ_VARIABLE",
	"ASSIGN_VARIABLE",
	"BROADCAST_ARGS",
	"RANDOM_STANDARD_NORMAL",
	"BUCKETIZE",
	"RANDOM_UNIFORM",
	"MULTINOMIAL",
	"GELU",
	"DYNAMIC_UPDATE_SLICE",
	"RELU_0_TO_1",
	"UNSORTED_SEGMENT_PROD",
	"UNSORTED_SEGMENT_MAX",
	"UNSORTED_SEGMENT_SUM",
	"ATAN2",
	"UNSORTED_SEGMENT_MIN",
	"SIGN",
	"BITCAST",
	"BITWISE_XOR",
	"RIGHT_SHIFT",
}

// String returns the schema name of op, e.g. "FULLY_CONNECTED", or "BuiltinOperator(N)".
func (op BuiltinOperator) String() string {
	if op >= 0 && int(op) < len(builtinOperatorNames) {
		return builtinOperatorNames[op]
	}
	return "BuiltinOperator(" + itoa(int(op)) + ")"
}

// BuiltinOptions is the type tag of the Operator.builtin_options union; 0 means none.
type BuiltinOptions uint8

const (
	BuiltinOptionsNone                       BuiltinOptions = 0
	BuiltinOptionsConv2D                     BuiltinOptions = 1
	BuiltinOptionsDepthwiseConv2D            BuiltinOptions = 2
	BuiltinOptionsConcatEmbeddings           BuiltinOptions = 3
	BuiltinOptionsLSHProjection              BuiltinOptions = 4
	BuiltinOptionsPool2D                     BuiltinOptions = 5
	BuiltinOptionsSVDF                       BuiltinOptions = 6
	BuiltinOptionsRNN                        BuiltinOptions = 7
	BuiltinOptionsFullyConnected             BuiltinOptions = 8
	BuiltinOptionsSoftmax                    BuiltinOptions = 9
	BuiltinOptionsConcatenation              BuiltinOptions = 10
	BuiltinOptionsAdd                        BuiltinOptions = 11
	BuiltinOptionsL2Norm                     BuiltinOptions = 12
	BuiltinOptionsLocalResponseNormalization BuiltinOptions = 13
	BuiltinOptionsLSTM                       BuiltinOptions = 14
	BuiltinOptionsResizeBilinear             BuiltinOptions = 15
	BuiltinOptionsCall                       BuiltinOptions = 16
	BuiltinOptionsReshape                    BuiltinOptions = 17
	BuiltinOptionsSkipGram                   BuiltinOptions = 18
	BuiltinOptionsSpaceToDepth               BuiltinOptions = 19
	BuiltinOptionsEmbeddingLookupSparse      BuiltinOptions = 20
	BuiltinOptionsMul                        BuiltinOptions = 21
	BuiltinOptionsPad                        BuiltinOptions = 22
	BuiltinOptionsGather                     BuiltinOptions = 23
	BuiltinOptionsBatchToSpaceND             BuiltinOptions = 24
	BuiltinOptionsSpaceToBatchND             BuiltinOptions = 25
	BuiltinOptionsTranspose                  BuiltinOptions = 26
	BuiltinOptionsReducer                    BuiltinOptions = 27
	BuiltinOptionsSub                        BuiltinOptions = 28
	BuiltinOptionsDiv                        BuiltinOptions = 29
	BuiltinOptionsSqueeze                    BuiltinOptions = 30
	BuiltinOptionsSequenceRNN                BuiltinOptions = 31
	BuiltinOptionsStridedSlice               BuiltinOptions = 32
	BuiltinOptionsExp                        BuiltinOptions = 33
	BuiltinOptionsTopKV2                     BuiltinOptions = 34
	BuiltinOptionsSplit                      BuiltinOptions = 35
	BuiltinOptionsLogSoftmax                 BuiltinOptions = 36
	BuiltinOptionsCast                       BuiltinOptions = 37
	BuiltinOptionsDequantize                 BuiltinOptions = 38
	BuiltinOptionsMaximumMinimum             BuiltinOptions = 39
	BuiltinOptionsArgMax                     BuiltinOptions = 40
	BuiltinOptionsLess                       BuiltinOptions = 41
	BuiltinOptionsNeg                        BuiltinOptions = 42
	BuiltinOptionsPadV2                      BuiltinOptions = 43
	BuiltinOptionsGreater                    BuiltinOptions = 44
	BuiltinOptionsGreaterEqual               BuiltinOptions = 45
	BuiltinOptionsLessEqual                  BuiltinOptions = 46
	BuiltinOptionsSelect                     BuiltinOptions = 47
	BuiltinOptionsSlice                      BuiltinOptions = 48
	BuiltinOptionsTransposeConv              BuiltinOptions = 49
	BuiltinOptionsSparseToDense              BuiltinOptions = 50
	BuiltinOptionsTile                       BuiltinOptions = 51
	BuiltinOptionsExpandDims                 BuiltinOptions = 52
	BuiltinOptionsEqual                      BuiltinOptions = 53
	BuiltinOptionsNotEqual                   BuiltinOptions = 54
	BuiltinOptionsShape                      BuiltinOptions = 55
	BuiltinOptionsPow                        BuiltinOptions = 56
	BuiltinOptionsArgMin                     BuiltinOptions = 57
	BuiltinOptionsFakeQuant                  BuiltinOptions = 58
	BuiltinOptionsPack                       BuiltinOptions = 59
	BuiltinOptionsLogicalOr                  BuiltinOptions = 60
	BuiltinOptionsOneHot                     BuiltinOptions = 61
	BuiltinOptionsLogicalAnd                 BuiltinOptions = 62
	BuiltinOptionsLogicalNot                 BuiltinOptions = 63
	BuiltinOptionsUnpack                     BuiltinOptions = 64
	BuiltinOptionsFloorDiv                   BuiltinOptions = 65
	BuiltinOptionsSquare                     BuiltinOptions = 66
	BuiltinOptionsZerosLike                  BuiltinOptions = 67
	BuiltinOptionsFill                       BuiltinOptions = 68
	BuiltinOptionsBidirectionalSequenceLSTM  BuiltinOptions = 69
	BuiltinOptionsBidirectionalSequenceRNN   BuiltinOptions = 70
	BuiltinOptionsUnidirectionalSequenceLSTM BuiltinOptions = 71
	BuiltinOptionsFloorMod                   BuiltinOptions = 72
	BuiltinOptionsRange                      BuiltinOptions = 73
	BuiltinOptionsResizeNearestNeighbor      BuiltinOptions = 74
	BuiltinOptionsLeakyRelu                  BuiltinOptions = 75
	BuiltinOptionsSquaredDifference          BuiltinOptions = 76
	BuiltinOptionsMirrorPad                  BuiltinOptions = 77
	BuiltinOptionsAbs                        BuiltinOptions = 78
	BuiltinOptionsSplitV                     BuiltinOptions = 79
	BuiltinOptionsUnique                     BuiltinOptions = 80
	BuiltinOptionsReverseV2                  BuiltinOptions = 81
	BuiltinOptionsAddN                       BuiltinOptions = 82
	BuiltinOptionsGatherNd                   BuiltinOptions = 83
	BuiltinOptionsCos                        BuiltinOptions = 84
	BuiltinOptionsWhere                      BuiltinOptions = 85
	BuiltinOptionsRank                       BuiltinOptions = 86
	BuiltinOptionsReverseSequence            BuiltinOptions = 87
	BuiltinOptionsMatrixDiag                 BuiltinOptions = 88
	BuiltinOptionsQuantize                   BuiltinOptions = 89
	BuiltinOptionsMatrixSetDiag              BuiltinOptions = 90
	BuiltinOptionsHardSwish                  BuiltinOptions = 91
	BuiltinOptionsIf                         BuiltinOptions = 92
	BuiltinOptionsWhile                      BuiltinOptions = 93
	BuiltinOptionsDepthToSpace               BuiltinOptions = 94
	BuiltinOptionsNonMaxSuppressionV4        BuiltinOptions = 95
	BuiltinOptionsNonMaxSuppressionV5        BuiltinOptions = 96
	BuiltinOptionsScatterNd                  BuiltinOptions = 97
	BuiltinOptionsSelectV2                   BuiltinOptions = 98
	BuiltinOptionsDensify                    BuiltinOptions = 99
	BuiltinOptionsSegmentSum                 BuiltinOptions = 100
	BuiltinOptionsBatchMatMul                BuiltinOptions = 101
	BuiltinOptionsCumsum                     BuiltinOptions = 102
	BuiltinOptionsCallOnce                   BuiltinOptions = 103
	BuiltinOptionsBroadcastTo                BuiltinOptions = 104
	BuiltinOptionsRfft2d                     BuiltinOptions = 105
	BuiltinOptionsConv3D                     BuiltinOptions = 106
	BuiltinOptionsHashtable                  BuiltinOptions = 107
	BuiltinOptionsHashtableFind              BuiltinOptions = 108
	BuiltinOptionsHashtableImport            BuiltinOptions = 109
	BuiltinOptionsHashtableSize              BuiltinOptions = 110
	BuiltinOptionsVarHandle                  BuiltinOptions = 111
	BuiltinOptionsReadVariable               BuiltinOptions = 112
	BuiltinOptionsAssignVariable             BuiltinOptions = 113
	BuiltinOptionsRandom                     BuiltinOptions = 114
	BuiltinOptionsBucketize                  BuiltinOptions = 115
	BuiltinOptionsGelu                       BuiltinOptions = 116
	BuiltinOptionsDynamicUpdateSlice         BuiltinOptions = 117
	BuiltinOptionsUnsortedSegmentProd        BuiltinOptions = 118
	BuiltinOptionsUnsortedSegmentMax         BuiltinOptions = 119
	BuiltinOptionsUnsortedSegmentMin         BuiltinOptions = 120
	BuiltinOptionsUnsortedSegmentSum         BuiltinOptions = 121
	BuiltinOptionsATan2                      BuiltinOptions = 122
	BuiltinOptionsSign                       BuiltinOptions = 123
	BuiltinOptionsBitcast                    BuiltinOptions = 124
	BuiltinOptionsBitwiseXor                 BuiltinOptions = 125
	BuiltinOptionsRightShift                 BuiltinOptions = 126
)

// Padding is the schema enum Padding : byte.
type Padding int8

const (
	PaddingSame  Padding = 0
	PaddingValid Padding = 1
)

// Activation is the schema enum ActivationFunctionType : byte (fused activations).
type Activation int8

const (
	ActivationNone      Activation = 0
	ActivationRelu      Activation = 1
	ActivationReluN1To1 Activation = 2
	ActivationRelu6     Activation = 3
	ActivationTanh      Activation = 4
	ActivationSignBit   Activation = 5
)

// FileIdentifier is the four-byte flatbuffer file identifier of a .tflite file.
const FileIdentifier = "TFL3"

// Version is the schema version this package describes (Model.version).
const Version = 3

func itoa(v int) string {
	if v == 0 {
		return "0"
	}
	neg := v < 0
	if neg {
		v = -v
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
