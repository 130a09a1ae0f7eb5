package tfpredict

import (
	"math"
	"testing"
)

func TestAffine(t *testing.T) {
	a := affine{scale: 0.5, zero: -3}
	tests := []struct {
		x      float32
		lo, hi int32
		want   int32
	}{
		{0, math.MinInt8, math.MaxInt8, -3},
		{1, math.MinInt8, math.MaxInt8, -1},
		{0.74, math.MinInt8, math.MaxInt8, -2},  // 1.48 rounds to 1
		{-0.75, math.MinInt8, math.MaxInt8, -5}, // -1.5 rounds away from zero
		{1000, math.MinInt8, math.MaxInt8, 127},
		{-1000, math.MinInt8, math.MaxInt8, -128},
		{-1000, 0, 255, 0},
	}
	for _, tt := range tests {
		if got := a.quantize(tt.x, tt.lo, tt.hi); got != tt.want {
			t.Errorf("quantize(%v, [%d,%d]) = %d, want %d", tt.x, tt.lo, tt.hi, got, tt.want)
		}
	}
	if got := a.dequantize(5); got != 4 {
		t.Errorf("dequantize(5) = %v, want 4", got)
	}
}
