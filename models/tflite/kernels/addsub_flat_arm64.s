//go:build arm64 && !purego

#include "textflag.h"

// addSubFlatVec is addSubFlatGo (addsub_flat.go) in NEON, 16 elements a step: each input's
// term computed in 32-bit lanes, then the output rescaling, the clamp and the narrowing to
// bytes. The constants are the first 16 bytes of rows of addSubPrep.vec (the asv* indices
// times 32). Instructions Go's assembler has no mnemonic for are WORDs of their A64
// encodings, as in conv_gemm_arm64.s (same macros); the new ones (UXTL, SHL #20) were checked
// by disassembling the object with llvm-objdump.

#define ADD4S 0x4ea08400
#define SQRDMULH4S 0x6ea0b400
#define SQADD4S 0x4ea00c00
#define SRSHL4S 0x4ea05400
#define SMAX4S 0x4ea06400
#define SMIN4S 0x4ea06c00
#define MLA4S 0x4ea09400
#define AND16B 0x4e201c00 // AND Vd.16B, Vn.16B, Vm.16B
#define V3S(op, d, n, m) WORD $((op) | ((m)<<16) | ((n)<<5) | (d))

// SSHR Vd.4S, Vn.4S, #31
#define SSHR4S31(d, n) WORD $(0x4f210400 | ((n)<<5) | (d))

// SHL Vd.4S, Vn.4S, #20 (immh:immb = 32+20)
#define SHL4S20(d, n) WORD $(0x4f345400 | ((n)<<5) | (d))

// UXTL Vd.8H, Vn.8B and UXTL2 Vd.8H, Vn.16B (USHLL #0); UXTL Vd.4S, Vn.4H and UXTL2
// Vd.4S, Vn.8H.
#define UXTL8H(d, n) WORD $(0x2f08a400 | ((n)<<5) | (d))
#define UXTL28H(d, n) WORD $(0x6f08a400 | ((n)<<5) | (d))
#define UXTL4S(d, n) WORD $(0x2f10a400 | ((n)<<5) | (d))
#define UXTL24S(d, n) WORD $(0x6f10a400 | ((n)<<5) | (d))

// RDBPOT rounds A right by the shift whose negation is in NR (every lane), as
// RoundingDivideByPOT: 1 subtracted from a negative A only when the shift is positive (the
// sign bit of A & NR), then SRSHL's round half up. Clobbers V31.
#define RDBPOT(A, NR) \
	V3S(AND16B, 31, A, NR); \
	SSHR4S31(31, 31); \
	V3S(SQADD4S, A, A, 31); \
	V3S(SRSHL4S, A, A, NR)

// TERM turns the widened bytes in A into the input's term: ((b ^ xor) + add) << 20, then
// SQRDMULH by the multiplier in MR (the reference's SaturatingRoundingDoublingHighMul: see
// conv_gemm_arm64.s REQUANT) and RDBPOT.
#define TERM(A, ADDR, MR, NR) \
	V3S(ADD4S, A, A, ADDR); \
	SHL4S20(A, A); \
	V3S(SQRDMULH4S, A, A, MR); \
	RDBPOT(A, NR)

// OUT rescales the sum in A to the output (multiplier V8, minus the shift V9), adds the zero
// point (V10) and clamps to V11..V12.
#define OUT(A) \
	V3S(SQRDMULH4S, A, A, 8); \
	RDBPOT(A, 9); \
	V3S(ADD4S, A, A, 10); \
	V3S(SMAX4S, A, A, 11); \
	V3S(SMIN4S, A, A, 12)

// func addSubFlatVec(x, y, z *byte, n int, vec *[asvCount][8]int32)
// n is a positive multiple of 16.
TEXT ·addSubFlatVec(SB), NOSPLIT, $0-40
	MOVD x+0(FP), R0
	MOVD y+8(FP), R1
	MOVD z+16(FP), R2
	MOVD n+24(FP), R3
	MOVD vec+32(FP), R4
	FMOVQ 672(R4), F0  // asvXorB
	FMOVQ 32(R4), F1   // asvAdd1
	FMOVQ 64(R4), F2   // asvM1
	FMOVQ 704(R4), F3  // asvNegR1
	FMOVQ 192(R4), F4  // asvAdd2
	FMOVQ 224(R4), F5  // asvM2
	FMOVQ 736(R4), F6  // asvNegR2
	FMOVQ 352(R4), F7  // asvSign2
	FMOVQ 384(R4), F8  // asvMo
	FMOVQ 768(R4), F9  // asvNegRO
	FMOVQ 512(R4), F10 // asvOutOff
	FMOVQ 544(R4), F11 // asvQMin
	FMOVQ 576(R4), F12 // asvQMax

loop:
	VLD1.P 16(R0), [V13.B16]
	VLD1.P 16(R1), [V14.B16]
	VEOR   V0.B16, V13.B16, V13.B16
	VEOR   V0.B16, V14.B16, V14.B16
	UXTL8H(15, 13)
	UXTL28H(16, 13)
	UXTL4S(20, 15)
	UXTL24S(21, 15)
	UXTL4S(22, 16)
	UXTL24S(23, 16)
	UXTL8H(15, 14)
	UXTL28H(16, 14)
	UXTL4S(24, 15)
	UXTL24S(25, 15)
	UXTL4S(26, 16)
	UXTL24S(27, 16)
	TERM(20, 1, 2, 3)
	TERM(21, 1, 2, 3)
	TERM(22, 1, 2, 3)
	TERM(23, 1, 2, 3)
	TERM(24, 4, 5, 6)
	TERM(25, 4, 5, 6)
	TERM(26, 4, 5, 6)
	TERM(27, 4, 5, 6)
	// a + b*sign2: ADD or SUB (each product is ±b exactly)
	V3S(MLA4S, 20, 24, 7)
	V3S(MLA4S, 21, 25, 7)
	V3S(MLA4S, 22, 26, 7)
	V3S(MLA4S, 23, 27, 7)
	OUT(20)
	OUT(21)
	OUT(22)
	OUT(23)
	// The low byte of each lane (UZP1 of halves, then of bytes), as the Go form stores.
	VUZP1  V21.H8, V20.H8, V28.H8
	VUZP1  V23.H8, V22.H8, V29.H8
	VUZP1  V29.B16, V28.B16, V30.B16
	VST1.P [V30.B16], 16(R2)
	SUBS   $16, R3, R3
	BNE    loop
	RET
