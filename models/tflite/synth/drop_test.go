package synth

import (
	"slices"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// TestDropPacked runs a MobileNet v2 (96×96, conv, depthwise and fully connected int8 layers)
// with and without Options.DropPacked, with 1 and 2 threads: the outputs must be the same
// bits, the dropped model must have given up its packed weights (most of its constant
// bytes) and refuse a second interpreter, and Invoke must still allocate nothing.
func TestDropPacked(t *testing.T) {

	data, err := MobileNetV2Int8(MobileNetV2{Input: 96, Alpha: 1, Classes: 300, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	run := func(threads int, drop bool) ([]int8, *tflite.Model) {
		m, err := tflite.Load(data)
		if err != nil {
			t.Fatal(err)
		}
		ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{Threads: threads, DropPacked: drop})
		if err != nil {
			t.Fatal(err)
		}
		defer ip.Close()
		in := ip.Input(0).Int8()
		for i := range in {
			in[i] = int8(i*7919 + i>>5)
		}
		if err := ip.Invoke(); err != nil {
			t.Fatal(err)
		}
		if a := testing.AllocsPerRun(3, func() { _ = ip.Invoke() }); a != 0 {
			t.Errorf("threads %d, drop %v: %v allocations per Invoke", threads, drop, a)
		}
		return slices.Clone(ip.Output(0).Int8()), m
	}
	want, kept := run(1, false)
	if _, err := tflite.NewInterpreter(kept, kernels.Builtins(), tflite.Options{}); err != nil {
		t.Fatalf("a model without DropPacked must build more interpreters: %v", err)
	}
	for _, threads := range []int{1, 2} {
		got, m := run(threads, true)
		if !slices.Equal(got, want) {
			t.Fatalf("threads %d: DropPacked changes the output", threads)
		}
		held, dropped := 0, 0
		for _, ti := range m.Tensors() {
			switch {
			case !ti.Constant():
			case ti.Data() == nil:
				dropped++
			default:
				held += len(ti.Data())
			}
		}
		// Every conv, depthwise and FC weight and bias goes; what stays is small (shapes,
		// and nothing else in this network).
		if dropped == 0 || held > m.ConstBytes()/100 {
			t.Errorf("threads %d: %d constants dropped, %d of %d constant bytes still held", threads, dropped, held, m.ConstBytes())
		}
		_, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
		if err == nil || !strings.Contains(err.Error(), "DropPacked") {
			t.Errorf("threads %d: second interpreter of a dropped model: %v, want a refusal", threads, err)
		}
	}
}
