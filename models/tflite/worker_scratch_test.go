package tflite_test

import (
	"fmt"
	"slices"
	"testing"
	"unsafe"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/synth"
)

// span is a buffer's address range [lo, hi).
type span struct {
	lo, hi uintptr
	what   string
}

func spanOf(b []byte, what string) span {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return span{p, p + uintptr(len(b)), what}
}

// TestWorkerScratchPlan: with several threads, each worker's scratch of every node lies apart
// from every other worker's, of every node, not even sharing a 128-byte cache line, and apart
// from every tensor; with one thread it is planned like scratch and never overlaps the tensors
// its node reads or writes. Results are the same bits for every thread count.
func TestWorkerScratchPlan(t *testing.T) {
	data, err := synth.MobileNetV2Int8(synth.MobileNetV2{Input: 96, Alpha: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := tflite.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	var want []int8
	for _, threads := range []int{1, 2, 3} {
		ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		defer ip.Close()
		workers, asked := make([][]span, threads), 0
		var tensors []span
		for i := range ip.NumNodes() {
			n := ip.NodeForTest(i)
			var own []span // the node's tensors that have arena memory
			for _, tt := range append(append([]*tensor.Tensor(nil), n.Inputs...), n.Outputs...) {
				if tt != nil && !tt.Constant() && len(tt.Bytes()) > 0 {
					own = append(own, spanOf(tt.Bytes(), fmt.Sprintf("tensor %q", tt.Name())))
				}
			}
			tensors = append(tensors, own...)
			asked += n.WorkerScratchCount()
			for w := range n.Workers() {
				for h := range n.WorkerScratchCount() {
					s := spanOf(n.WorkerScratch(h, w), fmt.Sprintf("node %d (%s) worker %d buffer %d", i, n.Op.Name(), w, h))
					if s.hi == s.lo {
						continue
					}
					for _, o := range own {
						if s.lo < o.hi && o.lo < s.hi {
							t.Fatalf("%d threads: %s overlaps its node's %s", threads, s.what, o.what)
						}
					}
					workers[w] = append(workers[w], s)
				}
			}
		}
		if asked == 0 {
			t.Fatal("no node asked for worker scratch")
		}
		if threads > 1 {
			const line = 128
			for w1 := range workers {
				for _, a := range workers[w1] {
					for _, o := range tensors {
						if a.lo < o.hi && o.lo < a.hi {
							t.Fatalf("%d threads: %s overlaps %s", threads, a.what, o.what)
						}
					}
					for w2 := w1 + 1; w2 < threads; w2++ {
						for _, b := range workers[w2] {
							if a.lo/line <= (b.hi-1)/line && b.lo/line <= (a.hi-1)/line {
								t.Fatalf("%d threads: %s and %s share a cache line", threads, a.what, b.what)
							}
						}
					}
				}
			}
		}
		in := ip.Input(0).Int8()
		for i := range in {
			in[i] = int8(i*31 + i>>7)
		}
		for range 2 {
			if err := ip.Invoke(); err != nil {
				t.Fatal(err)
			}
		}
		got := append([]int8(nil), ip.Output(0).Int8()...)
		if want == nil {
			want = got
		} else if !slices.Equal(got, want) {
			t.Fatalf("%d threads give different outputs from 1", threads)
		}
	}
}
