//go:build amd64 && !purego

#include "textflag.h"

// func dotTile4x16AVX2(x *int16, strideBytes uintptr, w0, w1 *int16, pairs int, acc *[64]int32)
//
// For rows r = 0..3 at x + r*strideBytes and channels c = 0..15 (0..7 from w0, 8..15 from w1):
// acc[r*16+c] = Σ_i x[r][2i]*w[c][2i] + x[r][2i+1]*w[c][2i+1] over i < pairs, in wrapping
// int32. Each weight vector holds one tap pair of 8 channels, [8][2]int16; VPBROADCASTD copies
// a row's tap pair to all 8 lanes and VPMADDWD forms the two products and their int32 sum
// (exact: each product is at most 2^14 in magnitude).
TEXT ·dotTile4x16AVX2(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ strideBytes+8(FP), BX
	MOVQ w0+16(FP), DI
	MOVQ w1+24(FP), R8
	MOVQ pairs+32(FP), CX
	MOVQ acc+40(FP), DX
	LEAQ (SI)(BX*2), R9

	VPXOR Y8, Y8, Y8
	VPXOR Y9, Y9, Y9
	VPXOR Y10, Y10, Y10
	VPXOR Y11, Y11, Y11
	VPXOR Y12, Y12, Y12
	VPXOR Y13, Y13, Y13
	VPXOR Y14, Y14, Y14
	VPXOR Y15, Y15, Y15

loop:
	VMOVDQU (DI), Y0
	VMOVDQU (R8), Y1

	VPBROADCASTD (SI), Y2
	VPBROADCASTD (SI)(BX*1), Y3
	VPMADDWD Y0, Y2, Y4
	VPMADDWD Y1, Y2, Y5
	VPMADDWD Y0, Y3, Y6
	VPMADDWD Y1, Y3, Y7
	VPADDD Y4, Y8, Y8
	VPADDD Y5, Y9, Y9
	VPADDD Y6, Y10, Y10
	VPADDD Y7, Y11, Y11

	VPBROADCASTD (R9), Y2
	VPBROADCASTD (R9)(BX*1), Y3
	VPMADDWD Y0, Y2, Y4
	VPMADDWD Y1, Y2, Y5
	VPMADDWD Y0, Y3, Y6
	VPMADDWD Y1, Y3, Y7
	VPADDD Y4, Y12, Y12
	VPADDD Y5, Y13, Y13
	VPADDD Y6, Y14, Y14
	VPADDD Y7, Y15, Y15

	ADDQ $4, SI
	ADDQ $4, R9
	ADDQ $32, DI
	ADDQ $32, R8
	DECQ CX
	JNZ  loop

	VMOVDQU Y8, (DX)
	VMOVDQU Y9, 32(DX)
	VMOVDQU Y10, 64(DX)
	VMOVDQU Y11, 96(DX)
	VMOVDQU Y12, 128(DX)
	VMOVDQU Y13, 160(DX)
	VMOVDQU Y14, 192(DX)
	VMOVDQU Y15, 224(DX)
	VZEROUPPER
	RET
