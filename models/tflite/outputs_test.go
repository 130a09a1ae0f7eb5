package tflite_test

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// TestWithOutputs: extra outputs hold the tensors' values after Invoke (the arena keeps them
// alive), the original model is untouched, and bad indices are refused.
func TestWithOutputs(t *testing.T) {
	data, err := os.ReadFile("../sample/vibration-anomaly-f32.tflite")
	if err != nil {
		t.Fatal(err)
	}
	m, err := tflite.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	orig := slices.Clone(m.Subgraphs[0].Outputs)
	run := func(outputs []int) [][]float32 {
		mm, err := m.WithOutputs(outputs)
		if err != nil {
			t.Fatal(err)
		}
		ip, err := tflite.NewInterpreter(mm, kernels.Builtins(), tflite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		in := ip.Input(0).Float32()
		for i := range in {
			in[i] = float32(i%7) / 7
		}
		if err := ip.Invoke(); err != nil {
			t.Fatal(err)
		}
		var got [][]float32
		for i := range outputs {
			got = append(got, slices.Clone(ip.Output(i).Float32()))
		}
		return got
	}
	all := run([]int{10, 3, 6, 9})
	for i, ti := range []int{3, 6, 9} {
		if one := run([]int{ti}); !slices.Equal(one[0], all[i+1]) {
			t.Errorf("tensor %d alone = %v, among all outputs %v", ti, one[0], all[i+1])
		}
	}
	if !slices.Equal(m.Subgraphs[0].Outputs, orig) {
		t.Errorf("WithOutputs changed the original model's outputs to %v", m.Subgraphs[0].Outputs)
	}
	for _, bad := range [][]int{{-1}, {len(m.Tensors())}} {
		if _, err := m.WithOutputs(bad); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("WithOutputs(%v) error = %v, want out of range", bad, err)
		}
	}
}

// sampleInvoked returns an interpreter of the int8 sample model on threads threads, its input
// set and invoked, and the output Invoke gave, which it then clears.
func sampleInvoked(t *testing.T, threads int) (*tflite.Interpreter, *tflite.Model, []int8) {
	t.Helper()
	data, err := os.ReadFile("../sample/vibration-anomaly-i8.tflite")
	if err != nil {
		t.Fatal(err)
	}
	m, err := tflite.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{Threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ip.Close)
	in := ip.Input(0).Int8()
	for i := range in {
		in[i] = int8(i*37 - 100)
	}
	if err := ip.Invoke(); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(ip.Output(0).Int8())
	clear(ip.Output(0).Bytes())
	return ip, m, want
}

// TestInvokeNode: running the nodes one by one gives what Invoke gives; out-of-range nodes are
// an error.
func TestInvokeNode(t *testing.T) {
	ip, _, want := sampleInvoked(t, 1)
	for i := 0; i < ip.NumNodes(); i++ {
		if err := ip.InvokeNode(i); err != nil {
			t.Fatal(err)
		}
	}
	if got := ip.Output(0).Int8(); !slices.Equal(got, want) {
		t.Errorf("node by node %v, Invoke %v", got, want)
	}
	for _, bad := range []int{-1, ip.NumNodes()} {
		if err := ip.InvokeNode(bad); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("InvokeNode(%d) error = %v", bad, err)
		}
	}
}

// TestInvokeTimed: a timed Invoke gives what Invoke gives, on one thread and two, adds a
// time to the nodes at each call, allocates nothing, and wants one time a node.
func TestInvokeTimed(t *testing.T) {
	for _, threads := range []int{1, 2} {
		ip, m, want := sampleInvoked(t, threads)
		times := make([]time.Duration, ip.NumNodes())
		if err := ip.InvokeTimed(times); err != nil {
			t.Fatal(err)
		}
		if got := ip.Output(0).Int8(); !slices.Equal(got, want) {
			t.Errorf("%d threads: timed %v, Invoke %v", threads, got, want)
		}
		first := slices.Clone(times)
		if allocs := testing.AllocsPerRun(20, func() { ip.InvokeTimed(times) }); allocs != 0 {
			t.Errorf("%d threads: %v allocations per timed Invoke", threads, allocs)
		}
		// Each node's time only grows; a tiny node may read 0 where the clock is coarse.
		var sum0, sum time.Duration
		for i, d := range times {
			if first[i] < 0 || d < first[i] {
				t.Errorf("%d threads: node %d (%s): %v after one Invoke, %v after 22", threads, i, m.Subgraphs[0].Operators[i].Op, first[i], d)
			}
			sum0, sum = sum0+first[i], sum+d
		}
		if sum0 <= 0 || sum <= sum0 {
			t.Errorf("%d threads: nodes' times add up to %v after one Invoke, %v after 22", threads, sum0, sum)
		}
		if err := ip.InvokeTimed(times[1:]); err == nil || !strings.Contains(err.Error(), "node times") {
			t.Errorf("%d threads: InvokeTimed with %d times for %d nodes: %v", threads, len(times)-1, ip.NumNodes(), err)
		}
	}
}
