package tflite

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

func TestPlanGreedyNoOverlap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		bufs := make([]buffer, 1+r.IntN(30))
		sum := 0
		for i := range bufs {
			f := r.IntN(20)
			bufs[i] = buffer{size: r.IntN(1000), first: f, last: f + r.IntN(5)}
			sum += alignUp(bufs[i].size)
		}
		total := planGreedy(bufs)
		if total > sum {
			t.Fatalf("arena %d larger than the sum of buffers %d", total, sum)
		}
		for i, a := range bufs {
			if a.offset%Alignment != 0 || a.offset+a.size > total {
				t.Fatalf("buffer %d at %d size %d: misaligned or outside arena %d", i, a.offset, a.size, total)
			}
			for j, b := range bufs[:i] {
				live := a.first <= b.last && b.first <= a.last
				overlap := a.offset < b.offset+b.size && b.offset < a.offset+a.size
				if live && overlap && a.size > 0 && b.size > 0 {
					t.Fatalf("buffers %d and %d are live together and overlap: %+v %+v", i, j, a, b)
				}
			}
		}
	}
}

func TestPlanGreedyReuse(t *testing.T) {
	// A chain a→b→c→d: each tensor is live for two ops, so two slots of the largest size suffice.
	bufs := []buffer{{size: 64, first: 0, last: 0}, {size: 64, first: 0, last: 1}, {size: 64, first: 1, last: 2}, {size: 64, first: 2, last: 2}}
	if got := planGreedy(bufs); got != 128 {
		t.Errorf("arena = %d, want 128", got)
	}
}

func TestAlignedBytes(t *testing.T) {
	for n := 0; n < 40; n++ {
		b := alignedBytes(n)
		if len(b) != n {
			t.Fatalf("len = %d, want %d", len(b), n)
		}
		if n > 0 && uintptr(unsafe.Pointer(&b[0]))%Alignment != 0 {
			t.Fatalf("alignedBytes(%d) not %d-byte aligned", n, Alignment)
		}
	}
}
