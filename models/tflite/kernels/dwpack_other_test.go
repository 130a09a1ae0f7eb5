//go:build !amd64 || purego

package kernels

import (
	"slices"
	"testing"
)

// checkDwPack: elsewhere dwPackWeights is the plain widening dwRow3x3x8Go reads.
func checkDwPack(t *testing.T, got []int32, w8 []int8, c int) {
	t.Helper()
	want := make([]int32, len(w8))
	widen32Go(want, w8)
	if !slices.Equal(got[:len(w8)], want) {
		t.Fatalf("dwPackWeights, %d channels: not the widened weights", c)
	}
}
