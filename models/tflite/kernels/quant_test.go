package kernels

import (
	"math"
	"testing"
)

func TestQuantizeMultiplier(t *testing.T) {
	tests := []struct {
		m         float64
		wantQ     int32
		wantShift int
	}{
		{0, 0, 0},
		{0.5, 1 << 30, 0},
		{1, 1 << 30, 1},
		{0.25, 1 << 30, -1},
		{0.75, 1610612736, 0},
		{1e-12, 0, 0}, // exponent below -31 flushes to zero, as in TFLite
		{0.0039215689, 1077952651, -7},
	}
	for _, tc := range tests {
		q, s := QuantizeMultiplier(tc.m)
		if q != tc.wantQ || s != tc.wantShift {
			t.Errorf("QuantizeMultiplier(%v) = %d, %d, want %d, %d", tc.m, q, s, tc.wantQ, tc.wantShift)
		}
	}
}

func TestFixedPoint(t *testing.T) {
	srdhm := []struct{ a, b, want int32 }{
		{1 << 30, 1 << 30, 1 << 29},
		{math.MinInt32, math.MinInt32, math.MaxInt32},
		{-5, 1 << 30, -2}, // -2.5: gemmlowp's nudge rounds this tie toward zero
		{5, 1 << 30, 3},   // 2.5 rounds up
		{math.MaxInt32, math.MaxInt32, math.MaxInt32 - 1},
	}
	for _, tc := range srdhm {
		if got := SaturatingRoundingDoublingHighMul(tc.a, tc.b); got != tc.want {
			t.Errorf("SaturatingRoundingDoublingHighMul(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	rdbp := []struct {
		x    int32
		e    int
		want int32
	}{{5, 1, 3}, {-5, 1, -3}, {4, 1, 2}, {-4, 2, -1}, {7, 2, 2}, {-6, 2, -2}, {-7, 2, -2}, {12345, 0, 12345}}
	for _, tc := range rdbp {
		if got := RoundingDivideByPOT(tc.x, tc.e); got != tc.want {
			t.Errorf("RoundingDivideByPOT(%d, %d) = %d, want %d", tc.x, tc.e, got, tc.want)
		}
	}
	mbqm := []struct {
		x, q  int32
		shift int
		want  int32
	}{{100, 1 << 30, 0, 50}, {100, 1 << 30, -1, 25}, {100, 1 << 30, 1, 100}, {-100, 1 << 30, -3, -6}}
	for _, tc := range mbqm {
		if got := MultiplyByQuantizedMultiplier(tc.x, tc.q, tc.shift); got != tc.want {
			t.Errorf("MultiplyByQuantizedMultiplier(%d, %d, %d) = %d, want %d", tc.x, tc.q, tc.shift, got, tc.want)
		}
	}
}
