package schema

// Field slots of the tables the interpreter and the writer touch. A flatbuffer field with slot s
// lives at vtable offset 4+2*s (see VOffset); a union takes two slots, its type tag first.
const (
	ModelVersion        = 0
	ModelOperatorCodes  = 1
	ModelSubgraphs      = 2
	ModelDescription    = 3
	ModelBuffers        = 4
	ModelMetadataBuffer = 5
	ModelMetadata       = 6
	ModelSignatureDefs  = 7

	SubGraphTensors   = 0
	SubGraphInputs    = 1
	SubGraphOutputs   = 2
	SubGraphOperators = 3
	SubGraphName      = 4

	TensorShape          = 0
	TensorType_          = 1
	TensorBuffer         = 2
	TensorName           = 3
	TensorQuantization   = 4
	TensorIsVariable     = 5
	TensorSparsity       = 6
	TensorShapeSignature = 7
	TensorHasRank        = 8
	TensorVariantTensors = 9

	QuantMin                = 0
	QuantMax                = 1
	QuantScale              = 2
	QuantZeroPoint          = 3
	QuantDetailsType        = 4
	QuantDetails            = 5
	QuantQuantizedDimension = 6

	OperatorCodeDeprecatedBuiltinCode = 0
	OperatorCodeCustomCode            = 1
	OperatorCodeVersion               = 2
	OperatorCodeBuiltinCode           = 3

	OperatorOpcodeIndex              = 0
	OperatorInputs                   = 1
	OperatorOutputs                  = 2
	OperatorBuiltinOptionsType       = 3
	OperatorBuiltinOptions           = 4
	OperatorCustomOptions            = 5
	OperatorCustomOptionsFormat      = 6
	OperatorMutatingVariableInputs   = 7
	OperatorIntermediates            = 8
	OperatorLargeCustomOptionsOffset = 9
	OperatorLargeCustomOptionsSize   = 10
	OperatorBuiltinOptions2Type      = 11
	OperatorBuiltinOptions2          = 12

	BufferData   = 0
	BufferOffset = 1
	BufferSize   = 2

	MetadataName   = 0
	MetadataBuffer = 1
)

// VOffset converts a field slot to its vtable offset.
func VOffset(slot int) uint16 { return uint16(4 + 2*slot) }
