package tflite

import (
	"cmp"
	"slices"
	"unsafe"
)

// alignedBytes returns n zeroed bytes whose first byte is Alignment-aligned, so typed views of
// any element type are aligned too.
func alignedBytes(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	b := make([]byte, n+Alignment)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b)))) & (Alignment - 1)
	return b[off : off+n : off+n]
}

// buffer is one allocation request for the planner: size bytes live from op first to op last
// (inclusive).
type buffer struct {
	size        int
	first, last int
	offset      int // result
}

// planGreedy assigns offsets like TFLite Micro's GreedyMemoryPlanner: largest buffers first,
// each at the lowest offset that does not overlap any already placed buffer whose lifetime
// intersects its own. It returns the arena size. Sizes are rounded up to Alignment.
func planGreedy(bufs []buffer) int {
	order := make([]int, len(bufs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := cmp.Compare(bufs[b].size, bufs[a].size); c != 0 {
			return c
		}
		return cmp.Compare(bufs[a].first, bufs[b].first)
	})
	type span struct{ lo, hi int }
	var placed []int
	var live []span
	total := 0
	for _, i := range order {
		b := &bufs[i]
		size := alignUp(b.size)
		live = live[:0]
		for _, j := range placed {
			p := &bufs[j]
			if p.first <= b.last && b.first <= p.last {
				live = append(live, span{p.offset, p.offset + alignUp(p.size)})
			}
		}
		slices.SortFunc(live, func(x, y span) int { return cmp.Compare(x.lo, y.lo) })
		off := 0
		for _, s := range live {
			if s.lo-off >= size {
				break
			}
			off = max(off, s.hi)
		}
		b.offset = off
		total = max(total, off+size)
		placed = append(placed, i)
	}
	return total
}
