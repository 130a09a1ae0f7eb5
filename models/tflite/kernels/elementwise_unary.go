package kernels

import (
	"fmt"
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// Elementwise unary math (ABS, NEG, SIN, COS, EXP, LOG, SQRT, RSQRT, SQUARE, CEIL, FLOOR,
// ROUND) and CAST. The transcendental functions run in float64 and round once to float32,
// which is within the float tolerance of TFLite's float32 library calls.

func init() {
	register(func(r *Resolver) {
		f64 := func(name string, f func(float64) float64) tflite.Kernel {
			return unaryFloat(name, func(v float32) float32 { return float32(f(float64(v))) })
		}
		r.AddBuiltin(schema.OpSin, 1, 1, f64("SIN", math.Sin))
		r.AddBuiltin(schema.OpCos, 1, 1, f64("COS", math.Cos))
		r.AddBuiltin(schema.OpExp, 1, 2, f64("EXP", math.Exp))
		r.AddBuiltin(schema.OpLog, 1, 2, f64("LOG", math.Log))
		r.AddBuiltin(schema.OpSqrt, 1, 1, f64("SQRT", math.Sqrt))
		r.AddBuiltin(schema.OpRsqrt, 1, 2, f64("RSQRT", func(v float64) float64 { return 1 / math.Sqrt(v) }))
		r.AddBuiltin(schema.OpCeil, 1, 1, f64("CEIL", math.Ceil))
		r.AddBuiltin(schema.OpFloor, 1, 2, f64("FLOOR", math.Floor))
		// round.h RoundToNearest: ties go to the even neighbour.
		r.AddBuiltin(schema.OpRound, 1, 1, f64("ROUND", math.RoundToEven))
		// ABS: float32, int8 and int16 (elementwise_lut.go); SQUARE: float32 (the oracle's
		// TFLite refuses int32 for both).
		r.AddBuiltin(schema.OpAbs, 1, 5, absKernel())
		r.AddBuiltin(schema.OpSquare, 1, 1, unaryFloat("SQUARE", func(v float32) float32 { return v * v }))
		r.AddBuiltin(schema.OpNeg, 1, 2, intUnaryKernel("NEG", func(v float32) float32 { return -v }, func(v int64) int64 { return -v }))
		r.AddBuiltin(schema.OpCast, 1, 6, tflite.KernelFuncs{PrepareFn: prepareCast, EvalFn: evalCast})
	})
}

// intUnaryKernel applies f to float32 tensors and g, in wrapping arithmetic of the tensor's
// width, to int32 and int64 tensors (TFLite's NEG).
func intUnaryKernel(name string, f func(float32) float32, g func(int64) int64) tflite.Kernel {
	return tflite.KernelFuncs{
		PrepareFn: func(n *tflite.Node) error {
			in, _, err := unaryIO(n, name)
			if err != nil {
				return err
			}
			switch in.DType() {
			case tensor.Float32, tensor.Int32, tensor.Int64:
				return nil
			}
			return fmt.Errorf("%s: type %s not supported (float32, int32, int64)", name, in.DType())
		},
		EvalFn: func(n *tflite.Node) error {
			in, out := n.Input(0), n.Output(0)
			switch in.DType() {
			case tensor.Float32:
				y := out.Float32()
				for i, v := range in.Float32() {
					y[i] = f(v)
				}
			case tensor.Int32:
				y := out.Int32()
				for i, v := range in.Int32() {
					y[i] = int32(g(int64(v)))
				}
			case tensor.Int64:
				y := out.Int64()
				for i, v := range in.Int64() {
					y[i] = g(v)
				}
			}
			return nil
		},
	}
}

// CAST converts between numeric and bool types like C++'s static_cast: float to integer
// truncates toward zero, integers wrap to the narrower width, anything to bool is != 0.

func castable(d tensor.DType) bool {
	switch d {
	case tensor.Float32, tensor.Float64, tensor.Int8, tensor.Uint8, tensor.Int16, tensor.Uint16,
		tensor.Int32, tensor.Uint32, tensor.Int64, tensor.Bool:
		return true
	}
	return false
}

func prepareCast(n *tflite.Node) error {
	if err := n.CheckIO(1, 1, 1); err != nil {
		return fmt.Errorf("CAST: %w", err)
	}
	in, out := n.Input(0), n.Output(0)
	if !castable(in.DType()) || !castable(out.DType()) {
		return fmt.Errorf("CAST: %s to %s not supported", in.DType(), out.DType())
	}
	if err := sameElements(in, out); err != nil {
		return fmt.Errorf("CAST: %w", err)
	}
	return nil
}

func evalCast(n *tflite.Node) error {
	in, out := n.Input(0), n.Output(0)
	num := in.NumElements()
	for i := 0; i < num; i++ {
		if isFloat(in.DType()) {
			storeFloat(out, i, loadFloat(in, i))
		} else {
			storeInt(out, i, loadInt(in, i))
		}
	}
	return nil
}

func isFloat(d tensor.DType) bool { return d == tensor.Float32 || d == tensor.Float64 }

func loadFloat(t *tensor.Tensor, i int) float64 {
	if t.DType() == tensor.Float32 {
		return float64(t.Float32()[i])
	}
	return t.Float64()[i]
}

func loadInt(t *tensor.Tensor, i int) int64 {
	switch t.DType() {
	case tensor.Int8:
		return int64(t.Int8()[i])
	case tensor.Uint8:
		return int64(t.Uint8()[i])
	case tensor.Int16:
		return int64(t.Int16()[i])
	case tensor.Uint16:
		return int64(t.Uint16()[i])
	case tensor.Int32:
		return int64(t.Int32()[i])
	case tensor.Uint32:
		return int64(t.Uint32()[i])
	case tensor.Int64:
		return t.Int64()[i]
	case tensor.Bool:
		return int64(t.Bool()[i])
	}
	return 0
}

// storeFloat writes a float source value; to integers it truncates toward zero.
func storeFloat(t *tensor.Tensor, i int, v float64) {
	switch t.DType() {
	case tensor.Float32:
		t.Float32()[i] = float32(v)
	case tensor.Float64:
		t.Float64()[i] = v
	case tensor.Bool:
		t.Bool()[i] = boolByte(v != 0)
	default:
		if math.IsNaN(v) {
			v = 0 // undefined in C++; pick a fixed answer instead of Go's platform-dependent one
		}
		storeInt(t, i, int64(math.Trunc(max(min(v, math.MaxInt64), math.MinInt64))))
	}
}

func storeInt(t *tensor.Tensor, i int, v int64) {
	switch t.DType() {
	case tensor.Float32:
		t.Float32()[i] = float32(v)
	case tensor.Float64:
		t.Float64()[i] = float64(v)
	case tensor.Int8:
		t.Int8()[i] = int8(v)
	case tensor.Uint8:
		t.Uint8()[i] = uint8(v)
	case tensor.Int16:
		t.Int16()[i] = int16(v)
	case tensor.Uint16:
		t.Uint16()[i] = uint16(v)
	case tensor.Int32:
		t.Int32()[i] = int32(v)
	case tensor.Uint32:
		t.Uint32()[i] = uint32(v)
	case tensor.Int64:
		t.Int64()[i] = v
	case tensor.Bool:
		t.Bool()[i] = boolByte(v != 0)
	}
}
