package kernels

// Test hooks for the int16 LSTM activations.
var (
	SigmoidInt16ForTest = sigmoidInt16
	TanhInt16ForTest    = tanhInt16
)
