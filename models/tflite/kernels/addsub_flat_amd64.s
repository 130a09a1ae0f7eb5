//go:build amd64 && !purego

#include "textflag.h"

// addSubFlatVec is addSubFlatGo (addsub_flat.go) in AVX2, 16 elements a step: each input's
// term computed in 32-bit lanes rather than looked up, then the output rescaling, the clamp
// and the packing to bytes. On a 56x56x24 ADD (AMD EPYC) VPGATHERDD from the Go form's two
// tables took 73 µs, the terms' SRDHM in the VPMULDQ form of MQM 65, and in the split
// multiplier form of TERM 52. The constants are addSubPrep.vec, a
// row of 32 bytes each (the asv* indices times 32).

// RDBPOT is V = RoundingDivideByPOT(V, r): H, A and R are the offsets of 2^r>>1, the
// negative rounding mask and r; T1 is scratch.
#define RDBPOT(V, H, A, R, T1) \
	VPSRAD       $31, V, T1    \
	VPAND        A(R8), T1, T1 \
	VPADDD       H(R8), V, V   \
	VPADDD       T1, V, V      \
	VPSRAD       R(R8), V, V

// MQM is V = RDBPOT(SRDHM(V, m), r) in the floor forms of addsub_flat.go: the 64-bit products
// of the even and odd lanes (VPMULDQ), plus 2^30 (Y15), bits 31..62 put back in the lanes,
// then the rounding right shift. M, H, A and R are the offsets of m, 2^r>>1, the negative
// rounding mask and r; T1 and T2 are scratch.
#define MQM(V, M, H, A, R, T1, T2) \
	VPMULDQ      M(R8), V, T1  \
	VPSRLQ       $32, V, T2    \
	VPMULDQ      M(R8), T2, T2 \
	VPADDQ       Y15, T1, T1   \
	VPADDQ       Y15, T2, T2   \
	VPSRLQ       $31, T1, T1   \
	VPSLLQ       $1, T2, T2    \
	VPBLENDD     $0xaa, T2, T1, V \
	RDBPOT(V, H, A, R, T1)

// TERM turns the eight bytes at P into an input's terms in V: v = (b ^ xor) + add, then
// SRDHM(v<<20, m) as v*q + (v*rem + 2^10) >> 11 (the offsets Q and REM of m's split), then
// RDBPOT; T1 is scratch.
#define TERM(P, V, ADD, Q, REM, H, A, R, T1) \
	VPMOVZXBD    P, V          \
	VPXOR        0(R8), V, V   \
	VPADDD       ADD(R8), V, V \
	VPMULLD      REM(R8), V, T1 \
	VPMULLD      Q(R8), V, V   \
	VPADDD       928(R8), T1, T1 \
	VPSRAD       $11, T1, T1   \
	VPADDD       T1, V, V      \
	RDBPOT(V, H, A, R, T1)

// GROUP computes eight outputs from the bytes at OFF(SI) and OFF(DI) into A as int32 lanes
// clamped to the activation range; B, T1 and T2 are scratch.
#define GROUP(OFF, A, B, T1, T2) \
	TERM(OFF(SI), A, 32, 800, 832, 96, 128, 160, T1) \
	TERM(OFF(DI), B, 192, 864, 896, 256, 288, 320, T1) \
	VPSIGND      352(R8), B, B \
	VPADDD       B, A, A       \
	MQM(A, 384, 416, 448, 480, T1, T2) \
	VPADDD       512(R8), A, A \
	VPMAXSD      544(R8), A, A \
	VPMINSD      576(R8), A, A

// func addSubFlatVec(x, y, z *byte, n int, vec *[asvCount][8]int32)
// n is a positive multiple of 16.
TEXT ·addSubFlatVec(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ z+16(FP), BX
	MOVQ n+24(FP), CX
	MOVQ vec+32(FP), R8
	VMOVDQU 608(R8), Y15

loop:
	GROUP(0, Y0, Y1, Y2, Y3)
	GROUP(8, Y4, Y5, Y6, Y7)
	// The low byte of each lane (the value for int8, two's complement, and for uint8 alike,
	// and what the Go form stores even for an activation range beyond the type's), packed
	// without saturation to words A0-3 B0-3 | A4-7 B4-7, reordered to A0-7 B0-7, then bytes.
	VPAND        640(R8), Y0, Y0
	VPAND        640(R8), Y4, Y4
	VPACKUSDW    Y4, Y0, Y0
	VPERMQ       $0xd8, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPACKUSWB    X1, X0, X0
	VMOVDQU      X0, (BX)
	ADDQ         $16, SI
	ADDQ         $16, DI
	ADDQ         $16, BX
	SUBQ         $16, CX
	JNZ          loop
	VZEROUPPER
	RET
