package detmath

import (
	"math"
	"testing"
)

func TestSinMatchesMath(t *testing.T) {
	for i := -2000; i <= 2000; i++ {
		x := float64(i) * 0.0137
		got, want := Sin(x), math.Sin(x)
		if math.Abs(got-want) > 4e-16*math.Max(1, math.Abs(x)) {
			t.Fatalf("Sin(%v) = %v, want %v", x, got, want)
		}
		if gc, wc := Cos(x), math.Cos(x); math.Abs(gc-wc) > 4e-16*math.Max(1, math.Abs(x)) {
			t.Fatalf("Cos(%v) = %v, want %v", x, gc, wc)
		}
	}
}

func TestExpMatchesMath(t *testing.T) {
	for i := -7000; i <= 7000; i++ {
		x := float64(i) * 0.1013
		got, want := Exp(x), math.Exp(x)
		if want == 0 || math.IsInf(want, 0) {
			continue
		}
		if rel := math.Abs(got-want) / want; rel > 1e-14 {
			t.Fatalf("Exp(%v) = %v, want %v (rel %g)", x, got, want, rel)
		}
	}
	tests := []struct {
		x, want float64
	}{{0, 1}, {1000, math.Inf(1)}, {-1000, 0}}
	for _, tt := range tests {
		if got := Exp(tt.x); got != tt.want {
			t.Errorf("Exp(%v) = %v, want %v", tt.x, got, tt.want)
		}
	}
	if !math.IsNaN(Exp(math.NaN())) || !math.IsNaN(Sin(math.Inf(1))) {
		t.Error("NaN/Inf inputs must give NaN")
	}
}

func TestSigmoid(t *testing.T) {
	tests := []struct{ x, want float64 }{
		{0, 0.5}, {800, 1}, {-800, 0},
	}
	for _, tt := range tests {
		if got := Sigmoid(tt.x); got != tt.want {
			t.Errorf("Sigmoid(%v) = %v, want %v", tt.x, got, tt.want)
		}
	}
	for x := -30.0; x <= 30; x += 0.25 {
		want := 1 / (1 + math.Exp(-x))
		if got := Sigmoid(x); math.Abs(got-want) > 1e-15*math.Max(want, 1e-300)+1e-300 && math.Abs(got-want)/want > 1e-14 {
			t.Fatalf("Sigmoid(%v) = %v, want %v", x, got, want)
		}
	}
}
