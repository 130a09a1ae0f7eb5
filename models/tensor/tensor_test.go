package tensor

import (
	"math"
	"testing"
)

func TestSizes(t *testing.T) {
	tests := []struct {
		dtype     DType
		shape     []int
		wantElems int
		wantBytes int
	}{
		{Float32, []int{2, 3}, 6, 24},
		{Int8, nil, 1, 1}, // scalar
		{Int16, []int{4, 0}, 0, 0},
		{Int4, []int{3}, 3, 2},
		{Int64, []int{-1}, -1, -1},
		{Float32, []int{math.MaxInt / 2, 3}, -1, -1},
		{Float32, []int{math.MaxInt / 2}, math.MaxInt / 2, -1},
		{String, []int{2}, 2, -1},
	}
	for _, tc := range tests {
		if got := NumElements(tc.shape); got != tc.wantElems {
			t.Errorf("NumElements(%v) = %d, want %d", tc.shape, got, tc.wantElems)
		}
		if got := ByteSize(tc.dtype, tc.shape); got != tc.wantBytes {
			t.Errorf("ByteSize(%s, %v) = %d, want %d", tc.dtype, tc.shape, got, tc.wantBytes)
		}
	}
}

func TestDTypeNames(t *testing.T) {
	for d, want := range map[DType]string{Float32: "float32", Int8: "int8", Uint8: "uint8", Int16: "int16", Int32: "int32", Int64: "int64", Bool: "bool", Float64: "float64", Uint32: "uint32", DType(200): "dtype(200)"} {
		if d.String() != want {
			t.Errorf("DType(%d).String() = %q, want %q", d, d.String(), want)
		}
	}
}

func TestViews(t *testing.T) {
	b := make([]byte, 16) // heap allocations of 16 bytes are at least 8-byte aligned
	x := New("x", Float32, []int{2, 2}, nil)
	x.SetData(b)
	f := x.Float32()
	if len(f) != 4 {
		t.Fatalf("len(Float32()) = %d, want 4", len(f))
	}
	f[1] = 1.5
	if x.Bytes()[4:8][3] != 0x3f || x.Int8() != nil || x.Int32() != nil {
		t.Errorf("Float32 view is not a view of the bytes, or a wrong-type view is not nil")
	}
	if (&Tensor{dtype: Float32}).Float32() != nil {
		t.Error("view of a tensor without memory is not nil")
	}
	q := New("q", Int8, []int{3}, &Quant{Scale: []float32{0.5}, ZeroPoint: []int64{1}})
	if q.Quant().PerChannel() || q.Rank() != 1 || q.Dim(-1) != 3 || q.String() != `int8[3] "q"` {
		t.Errorf("accessors: %v %d %d %s", q.Quant().PerChannel(), q.Rank(), q.Dim(-1), q)
	}
}
