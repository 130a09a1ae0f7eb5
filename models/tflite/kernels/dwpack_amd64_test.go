//go:build amd64 && !purego

package kernels

import (
	"slices"
	"testing"
)

// checkDwPack: dwPackWeights (AVX2) lays out w8 exactly as dwPackWeightsGo, and writes
// nothing past the layout's end.
func checkDwPack(t *testing.T, got []int32, w8 []int8, c int) {
	t.Helper()
	groups := c / 8
	n := groups/2*80 + groups%2*72
	want := make([]int32, len(got))
	dwPackWeightsGo(want, w8, c)
	if !slices.Equal(got[:n], want[:n]) {
		for i := range n {
			if got[i] != want[i] {
				t.Fatalf("dwPackWeights, %d channels: word %d = %#x, Go %#x", c, i, uint32(got[i]), uint32(want[i]))
			}
		}
	}
	guard := make([]int32, n+1)
	guard[n] = 12345
	dwPackWeights(guard[:n], w8, c)
	if guard[n] != 12345 {
		t.Fatalf("dwPackWeights, %d channels, wrote past its %d words", c, n)
	}
}
