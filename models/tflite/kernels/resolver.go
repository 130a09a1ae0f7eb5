// Package kernels holds the builtin operator kernels of the pure-Go TFLite interpreter, one file
// per op family. Each file registers its kernels in init; Builtins returns a resolver with all
// of them, and NewResolver plus Add… builds a smaller one for a lean binary. The arithmetic
// follows TFLite's reference kernels (tensorflow/lite/kernels/internal/reference): float ops
// in float32, integer ops with the same fixed-point multipliers and rounding, bit for bit.
package kernels

import (
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

type builtinKey struct {
	op      schema.BuiltinOperator
	version int
}

// Resolver maps op codes and versions to kernels. Build it before creating interpreters; it
// is not safe to add to while interpreters are being built.
type Resolver struct {
	builtins map[builtinKey]tflite.Kernel
	customs  map[string]tflite.Kernel
}

// NewResolver returns an empty resolver.
func NewResolver() *Resolver {
	return &Resolver{builtins: map[builtinKey]tflite.Kernel{}, customs: map[string]tflite.Kernel{}}
}

// AddBuiltin registers k for op versions minVersion..maxVersion inclusive.
func (r *Resolver) AddBuiltin(op schema.BuiltinOperator, minVersion, maxVersion int, k tflite.Kernel) {
	for v := minVersion; v <= maxVersion; v++ {
		r.builtins[builtinKey{op, v}] = k
	}
}

// AddCustom registers k for the custom op name.
func (r *Resolver) AddCustom(name string, k tflite.Kernel) { r.customs[name] = k }

// Lookup implements tflite.OpResolver.
func (r *Resolver) Lookup(op schema.BuiltinOperator, version int, custom string) (tflite.Kernel, bool) {
	if op == schema.OpCustom {
		k, ok := r.customs[custom]
		return k, ok
	}
	k, ok := r.builtins[builtinKey{op, version}]
	return k, ok
}

// registry holds the registration functions of every op file, filled in init.
var registry []func(*Resolver)

func register(f func(*Resolver)) { registry = append(registry, f) }

// wrappers run after every registration: they decorate kernels already registered (the uint8
// kernels wrap the other dtypes' kernels of the same op codes, uint8_conv.go wrapDType).
var wrappers []func(*Resolver)

func registerWrapper(f func(*Resolver)) { wrappers = append(wrappers, f) }

// Builtins returns a resolver with every kernel this package implements.
func Builtins() tflite.OpResolver {
	r := NewResolver()
	for _, f := range registry {
		f(r)
	}
	for _, f := range wrappers {
		f(r)
	}
	return r
}
