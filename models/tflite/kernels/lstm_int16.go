package kernels

import "unsafe"

// Helpers of the sequence family (LSTM, SVDF): the int16 sigmoid and tanh of TFLite's
// reference_integer_ops (logistic.h, tanh.h), which TFLite Micro's integer LSTM applies to its
// Q3.12 gate pre-activations, and typed views of scratch memory.

// seqSigmoidLUT is TFLite's sigmoid_table_uint16: sigmoid(i/24) in unsigned Q0.16 for
// i = 0..255, shared by the int16 logistic and tanh (tanh(x) = 2 sigmoid(2x) - 1).
var seqSigmoidLUT = [256]uint16{
	32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794, 41432, 42064, 42688,
	43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409,
	51865, 52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
	57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110,
	61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186,
	63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
	64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900,
	64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208,
	65221, 65234, 65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
	65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433, 65438, 65442, 65445, 65449,
	65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
	65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
	65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
	65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530,
	65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
	65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
}

func absI32(v int32) uint32 {
	if v < 0 {
		return uint32(-v)
	}
	return uint32(v)
}

// sigmoidInt16 is reference_integer_ops::Logistic(input_multiplier 0, input_left_shift 0) in
// place: Q3.12 in, Q0.15 out. Multiplier 0 means the power-of-two case, which scales by 3 (the
// table covers [-10.7, 10.7] after the 3/4 scaling).
func sigmoidInt16(v []int16) { logisticLUT16(3, 0, v, v) }

// tanhInt16 is TFLM's lstm_internal::Tanh for a cell state scale of 2^scalePower, i.e.
// reference_integer_ops::Tanh(input_multiplier, input_left_shift) with the left shift
// 15+scalePower-3 (multiplier 3 and a right shift when that is negative). in and out may alias.
func tanhInt16(scalePower int, in, out []int16) {
	shift := 15 + scalePower - 3
	mult := int32(0)
	if shift < 0 {
		shift, mult = -shift, 3
	}
	if mult == 0 { // power-of-two case of reference_integer_ops::Tanh
		mult, shift = 3<<shift, 0
	}
	tanhLUT16(mult, shift, in, out)
}

// Typed views of scratch memory (16-byte aligned by the planner).
func f32View(b []byte) []float32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
}

func i16View(b []byte) []int16 {
	if len(b) < 2 {
		return nil
	}
	return unsafe.Slice((*int16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2)
}

func i32View(b []byte) []int32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
}
