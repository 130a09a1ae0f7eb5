package update

import (
	"fmt"
	"sync"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// maxOpVersion bounds the op versions missingOp tries; TFLite's builtins stay well below it.
const maxOpVersion = 16

// missingOp returns the first of ops (schema names such as "FULLY_CONNECTED", or custom op
// names) for which r has no kernel of any version, or "". It lets the agent refuse a target
// whose signed ops list it cannot run before downloading it; staging still checks each op's
// exact version in the model itself.
func missingOp(r tflite.OpResolver, ops []string) string {
	for _, name := range ops {
		op, builtin := builtinByName(name)
		if !builtin {
			op = schema.OpCustom
		}
		found := false
		for v := 1; v <= maxOpVersion && !found; v++ {
			_, found = r.Lookup(op, v, name)
		}
		if !found {
			return name
		}
	}
	return ""
}

func builtinByName(name string) (schema.BuiltinOperator, bool) {
	op, ok := builtinNames()[name]
	return op, ok
}

// builtinNames maps schema op names to their codes, built once.
var builtinNames = sync.OnceValue(func() map[string]schema.BuiltinOperator {
	m := map[string]schema.BuiltinOperator{}
	for op := schema.BuiltinOperator(0); op < 1024; op++ {
		s := op.String()
		if s == fmt.Sprintf("BuiltinOperator(%d)", int(op)) {
			break // past the last named op
		}
		if s != "" {
			m[s] = op
		}
	}
	return m
})
