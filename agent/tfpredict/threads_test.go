package tfpredict_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/synth"
)

// The agent's --threads reaches the interpreter and changes no bit of a result: a MobileNet v2
// (64×64, width 1.0, whose layers of 2^20 multiply-accumulates and more are split across the workers) gives the same scores
// through Predict with 1, 2 and 3 threads, on the SIMD path and the portable one.
func TestThreadsBitIdentical(t *testing.T) {
	model, err := synth.MobileNetV2Int8(synth.MobileNetV2{Input: 64, Alpha: 1, Classes: 10, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	man, err := synth.VisionManifest("mnv2-64", model, 64*64, 4)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	windows := make([][]float32, 2)
	for i := range windows {
		windows[i] = make([]float32, 64*64*3)
		for j := range windows[i] {
			windows[i][j] = r.Float32()*2 - 1
		}
	}
	for _, portable := range []bool{false, true} {
		was := kernels.SetPortable(portable)
		var want [][]float32
		for _, threads := range []int{1, 2, 3} {
			p, err := tfpredict.NewWith(model, man, "mnv2-64", tfpredict.Options{Threads: threads})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.CheckGolden(); err != nil {
				t.Fatalf("portable %v, %d threads: %v", portable, threads, err)
			}
			for i, w := range windows {
				out, _, err := p.Predict(w)
				if err != nil {
					t.Fatal(err)
				}
				if threads == 1 {
					want = append(want, slices.Clone(out))
					continue
				}
				if !slices.Equal(out, want[i]) {
					t.Fatalf("portable %v, %d threads, window %d: %v, with 1 thread %v", portable, threads, i, out, want[i])
				}
			}
			if threads > 1 {
				w := windows[0]
				if n := testing.AllocsPerRun(3, func() { _, _, _ = p.Predict(w) }); n != 0 {
					t.Errorf("%d threads: Predict allocates %v times", threads, n)
				}
			}
			p.Close()
		}
		kernels.SetPortable(was)
	}
}
