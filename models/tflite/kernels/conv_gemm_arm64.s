//go:build arm64 && !purego

#include "textflag.h"

// NEON forms of the SIMD tile kernels (conv_gemm_arm64.go). Go's arm64 assembler has no
// mnemonics for most widening and saturating NEON instructions, so those are emitted with WORD
// from the A64 encodings (Arm ARM, "Advanced SIMD three same", "three different",
// "vector x indexed element", "shift by immediate", "two-register miscellaneous"); each
// macro names the instruction it encodes. The encodings were checked by disassembling the
// object (llvm-objdump), and the differential tests in conv_gemm_test.go run every kernel
// against its Go form. Register numbers are plain integers: d the destination, n and m the
// sources.

// Three-same, 4S arrangement: OP Vd.4S, Vn.4S, Vm.4S.
#define ADD4S 0x4ea08400
#define SSHL4S 0x4ea04400
#define SQRDMULH4S 0x6ea0b400
#define SQADD4S 0x4ea00c00
#define SRSHL4S 0x4ea05400
#define SMAX4S 0x4ea06400
#define SMIN4S 0x4ea06c00
#define MLA4S 0x4ea09400
#define AND16B 0x4e201c00 // AND Vd.16B, Vn.16B, Vm.16B
#define V3S(op, d, n, m) WORD $((op) | ((m)<<16) | ((n)<<5) | (d))

// NEG Vd.4S, Vn.4S
#define NEG4S(d, n) WORD $(0x6ea0b800 | ((n)<<5) | (d))

// SSHR Vd.4S, Vn.4S, #31 (immh:immb = 64-31)
#define SSHR4S31(d, n) WORD $(0x4f210400 | ((n)<<5) | (d))

// SXTL Vd.8H, Vn.8B and SXTL2 Vd.8H, Vn.16B (SSHLL #0); SXTL Vd.4S, Vn.4H and SXTL2
// Vd.4S, Vn.8H.
#define SXTL8H(d, n) WORD $(0x0f08a400 | ((n)<<5) | (d))
#define SXTL28H(d, n) WORD $(0x4f08a400 | ((n)<<5) | (d))
#define SXTL4S(d, n) WORD $(0x0f10a400 | ((n)<<5) | (d))
#define SXTL24S(d, n) WORD $(0x4f10a400 | ((n)<<5) | (d))

// SMLAL Vd.4S, Vn.4H, Vm.H[idx] (Q = 0) or SMLAL2 Vd.4S, Vn.8H, Vm.H[idx] (Q = 1): by element,
// size 01, so m < 16 and idx = H:L:M (bits 11, 21, 20).
#define SMLALH(Q, d, n, m, idx) WORD $(0x0f402000 | ((Q)<<30) | (((idx)>>2)<<11) | ((((idx)>>1)&1)<<21) | (((idx)&1)<<20) | ((m)<<16) | ((n)<<5) | (d))

// REQUANT requantizes accumulator register A (4 lanes) in place, exactly as requantInt32 plus
// the output offset and clamp, with V0 = bias, V1 = left shift, V2 = multiplier, V3 = minus
// the right shift, V4 = output offset, V5 = minimum, V6 = maximum; clobbers V7.
//   x = (acc + bias) << left                SSHL: wrapping, as TFLite's x * (1 << left)
//   h = SaturatingRoundingDoublingHighMul   SQRDMULH is (2xq + 2^31) >> 32 = (xq + 2^30) >> 31,
//                                           the same integer as the reference's nudged
//                                           division for both signs; it saturates only for
//                                           x = q = MinInt32, and q is never negative
//   RoundingDivideByPOT(h, right)           round half away from zero: subtract 1 from negative
//                                           h (only when right > 0: the sign bit of -right
//                                           selects it; SQADD keeps MinInt32, which rounds the
//                                           same), then SRSHL by -right rounds half up
#define REQUANT(A) \
	V3S(ADD4S, A, A, 0); \
	V3S(SSHL4S, A, A, 1); \
	V3S(SQRDMULH4S, A, A, 2); \
	V3S(AND16B, 7, A, 3); \
	SSHR4S31(7, 7); \
	V3S(SQADD4S, A, A, 7); \
	V3S(SRSHL4S, A, A, 3); \
	V3S(ADD4S, A, A, 4); \
	V3S(SMAX4S, A, A, 5); \
	V3S(SMIN4S, A, A, 6)

// QLOAD loads the quantTable lanes at byte offset OFF of the group at P into V0-V6 as
// REQUANT wants them.
#define QLOAD(P, OFF) \
	FMOVQ (OFF+0)(P), F0; \
	FMOVQ (OFF+64)(P), F1; \
	FMOVQ (OFF+32)(P), F2; \
	FMOVQ (OFF+96)(P), F3; \
	NEG4S(3, 3); \
	FMOVQ (OFF+192)(P), F4; \
	FMOVQ (OFF+224)(P), F5; \
	FMOVQ (OFF+256)(P), F6

// ROW accumulates one tap pair of row register X (taps at H lanes E and E+1) into row
// accumulators A..A+3 (channels 0-3, 4-7, 8-11, 12-15), with the weights of the pair in
// V4/V5 (even/odd taps of channels 0-7) and V6/V7 (channels 8-15).
#define ROW(X, A, E) \
	SMLALH(0, A, 4, X, E); \
	SMLALH(1, A+1, 4, X, E); \
	SMLALH(0, A+2, 6, X, E); \
	SMLALH(1, A+3, 6, X, E); \
	SMLALH(0, A, 5, X, E+1); \
	SMLALH(1, A+1, 5, X, E+1); \
	SMLALH(0, A+2, 7, X, E+1); \
	SMLALH(1, A+3, 7, X, E+1)

// PAIR loads the next tap pair's weights of both half blocks (LD2 splits the [8][2]int8
// interleaving into even and odd taps, SXTL widens them to int16) and accumulates the four
// rows held in V0-V3.
#define PAIR(E) \
	VLD2.P 16(R14), [V4.B8, V5.B8]; \
	VLD2.P 16(R15), [V6.B8, V7.B8]; \
	SXTL8H(4, 4); \
	SXTL8H(5, 5); \
	SXTL8H(6, 6); \
	SXTL8H(7, 7); \
	ROW(0, 16, E); \
	ROW(1, 20, E); \
	ROW(2, 24, E); \
	ROW(3, 28, E)

// STORE narrows row accumulators A0..A3 (already clamped to int8) to 16 bytes at (P).
#define STORE(A0, A1, A2, A3, P) \
	VUZP1 A1.H8, A0.H8, V8.H8; \
	VUZP1 A3.H8, A2.H8, V9.H8; \
	VUZP1 V9.B16, V8.B16, V10.B16; \
	VST1 [V10.B16], (P)

// func gemmRow4NEON(x *int16, strideBytes uintptr, w *int8, pairs int, q *int32, y *int8, yStride uintptr, blocks int)
//
// gemmRow4x16Go in NEON: for each of blocks 16-channel blocks (weights w + j*32*pairs bytes,
// channels 0-7 in the first half block and 8-15 in the second, each [pairs][8][2]int8;
// quantTable groups q + j*576 bytes; output y + 16j) and rows r = 0..3 at x + r*strideBytes:
// acc = Σ_i x[r][i]*w[c][i] in wrapping int32 (SMLAL: each product fits int32 exactly), then
// REQUANT into y + r*yStride + c. Four tap pairs per iteration from one 16-byte load per row,
// then single pairs.
TEXT ·gemmRow4NEON(SB), NOSPLIT, $0-64
	MOVD x+0(FP), R0
	MOVD strideBytes+8(FP), R1
	MOVD w+16(FP), R2
	MOVD pairs+24(FP), R3
	MOVD q+32(FP), R4
	MOVD y+40(FP), R5
	MOVD yStride+48(FP), R6
	MOVD blocks+56(FP), R7
	LSL  $4, R3, R8 // bytes of one half block: 16*pairs

gblock:
	MOVD R0, R10
	ADD  R1, R10, R11
	ADD  R1, R11, R12
	ADD  R1, R12, R13
	MOVD R2, R14
	ADD  R8, R2, R15
	VEOR V16.B16, V16.B16, V16.B16
	VEOR V17.B16, V17.B16, V17.B16
	VEOR V18.B16, V18.B16, V18.B16
	VEOR V19.B16, V19.B16, V19.B16
	VEOR V20.B16, V20.B16, V20.B16
	VEOR V21.B16, V21.B16, V21.B16
	VEOR V22.B16, V22.B16, V22.B16
	VEOR V23.B16, V23.B16, V23.B16
	VEOR V24.B16, V24.B16, V24.B16
	VEOR V25.B16, V25.B16, V25.B16
	VEOR V26.B16, V26.B16, V26.B16
	VEOR V27.B16, V27.B16, V27.B16
	VEOR V28.B16, V28.B16, V28.B16
	VEOR V29.B16, V29.B16, V29.B16
	VEOR V30.B16, V30.B16, V30.B16
	VEOR V31.B16, V31.B16, V31.B16
	LSR  $2, R3, R19
	CBZ  R19, gtail

gloop4:
	VLD1.P 16(R10), [V0.H8]
	VLD1.P 16(R11), [V1.H8]
	VLD1.P 16(R12), [V2.H8]
	VLD1.P 16(R13), [V3.H8]
	PAIR(0)
	PAIR(2)
	PAIR(4)
	PAIR(6)
	SUBS $1, R19, R19
	BNE  gloop4

gtail:
	AND $3, R3, R19
	CBZ R19, gquant

gloop1:
	FMOVS (R10), F0
	FMOVS (R11), F1
	FMOVS (R12), F2
	FMOVS (R13), F3
	ADD   $4, R10
	ADD   $4, R11
	ADD   $4, R12
	ADD   $4, R13
	PAIR(0)
	SUBS  $1, R19, R19
	BNE   gloop1

gquant:
	// R15 has reached the end of the second half block: the next block starts there.
	MOVD R15, R2
	QLOAD(R4, 0)
	REQUANT(16)
	REQUANT(20)
	REQUANT(24)
	REQUANT(28)
	QLOAD(R4, 16)
	REQUANT(17)
	REQUANT(21)
	REQUANT(25)
	REQUANT(29)
	QLOAD(R4, 288)
	REQUANT(18)
	REQUANT(22)
	REQUANT(26)
	REQUANT(30)
	QLOAD(R4, 304)
	REQUANT(19)
	REQUANT(23)
	REQUANT(27)
	REQUANT(31)

	MOVD R5, R9
	STORE(V16, V17, V18, V19, R9)
	ADD  R6, R9
	STORE(V20, V21, V22, V23, R9)
	ADD  R6, R9
	STORE(V24, V25, V26, V27, R9)
	ADD  R6, R9
	STORE(V28, V29, V30, V31, R9)

	ADD  $576, R4
	ADD  $16, R5
	SUBS $1, R7, R7
	BNE  gblock
	RET

// func widen16NEON(dst *int16, src *int8, n16 int): dst[i] = src[i] for i < 16*n16.
TEXT ·widen16NEON(SB), NOSPLIT, $0-24
	MOVD dst+0(FP), R0
	MOVD src+8(FP), R1
	MOVD n16+16(FP), R2

wloop:
	VLD1.P 16(R1), [V0.B16]
	SXTL8H(1, 0)
	SXTL28H(2, 0)
	VST1.P [V1.H8, V2.H8], 32(R0)
	SUBS   $1, R2, R2
	BNE    wloop
	RET

// DWTAP adds one tap of 8 channels: the 8 bytes at (PTR), sign-extended to two 4S vectors, times
// the tap's 8 int32 weights at (R20), into accumulators A (channels 0-3) and B (4-7); PTR and
// R20 move on. MLA wraps as TFLite's int32 accumulator.
#define DWTAP(PTR, A, B) \
	VLD1.P 8(PTR), [V20.B8]; \
	SXTL8H(21, 20); \
	SXTL4S(22, 21); \
	SXTL24S(23, 21); \
	VLD1.P 32(R20), [V24.S4, V25.S4]; \
	V3S(MLA4S, A, 22, 24); \
	V3S(MLA4S, B, 23, 25)

// func dw3x3RowNEON(taps *[9]*int8, steps *[9]uintptr, w *int32, q *int32, y *int8, groups, npix int)
//
// dwRow3x3x8Go in NEON: npix output pixels of a 3x3 depthwise convolution with depth
// multiplier 1, along a row. For each group of 8 channels, acc = Σ_t x_t * w_t over the 9 taps
// (taps[t] points at the input pixel of tap t, or at a row of input zero points), then
// REQUANT (whose bias has the input offset folded in) into y. w is [groups][9][8]int32, q a
// quantTable of groups groups. Between pixels each tap pointer in the caller's array moves by
// its step (0 for pad taps); not after the last, so they stay inside the input.
TEXT ·dw3x3RowNEON(SB), NOSPLIT, $0-56
	MOVD taps+0(FP), R0
	MOVD steps+8(FP), R1
	MOVD w+16(FP), R2
	MOVD q+24(FP), R3
	MOVD y+32(FP), R5
	MOVD groups+40(FP), R6
	MOVD npix+48(FP), R7

dwpix:
	LDP  0(R0), (R10, R11)
	LDP  16(R0), (R12, R13)
	LDP  32(R0), (R14, R15)
	LDP  48(R0), (R23, R24)
	MOVD 64(R0), R19
	MOVD R2, R20
	MOVD R3, R21
	MOVD R6, R22

dwloop:
	// Even taps into V16/V17, odd ones into V18/V19: two independent chains.
	VEOR V16.B16, V16.B16, V16.B16
	VEOR V17.B16, V17.B16, V17.B16
	VEOR V18.B16, V18.B16, V18.B16
	VEOR V19.B16, V19.B16, V19.B16
	DWTAP(R10, 16, 17)
	DWTAP(R11, 18, 19)
	DWTAP(R12, 16, 17)
	DWTAP(R13, 18, 19)
	DWTAP(R14, 16, 17)
	DWTAP(R15, 18, 19)
	DWTAP(R23, 16, 17)
	DWTAP(R24, 18, 19)
	DWTAP(R19, 16, 17)
	V3S(ADD4S, 16, 16, 18)
	V3S(ADD4S, 17, 17, 19)
	QLOAD(R21, 0)
	REQUANT(16)
	QLOAD(R21, 16)
	REQUANT(17)
	ADD    $288, R21
	VUZP1  V17.H8, V16.H8, V8.H8
	VUZP1  V8.B16, V8.B16, V10.B16
	VST1.P [V10.B8], 8(R5)
	SUBS   $1, R22, R22
	BNE    dwloop

	SUBS $1, R7, R7
	BEQ  dwdone
	MOVD 0(R0), R8
	MOVD 0(R1), R9
	ADD  R9, R8
	MOVD R8, 0(R0)
	MOVD 8(R0), R8
	MOVD 8(R1), R9
	ADD  R9, R8
	MOVD R8, 8(R0)
	MOVD 16(R0), R8
	MOVD 16(R1), R9
	ADD  R9, R8
	MOVD R8, 16(R0)
	MOVD 24(R0), R8
	MOVD 24(R1), R9
	ADD  R9, R8
	MOVD R8, 24(R0)
	MOVD 32(R0), R8
	MOVD 32(R1), R9
	ADD  R9, R8
	MOVD R8, 32(R0)
	MOVD 40(R0), R8
	MOVD 40(R1), R9
	ADD  R9, R8
	MOVD R8, 40(R0)
	MOVD 48(R0), R8
	MOVD 48(R1), R9
	ADD  R9, R8
	MOVD R8, 48(R0)
	MOVD 56(R0), R8
	MOVD 56(R1), R9
	ADD  R9, R8
	MOVD R8, 56(R0)
	MOVD 64(R0), R8
	MOVD 64(R1), R9
	ADD  R9, R8
	MOVD R8, 64(R0)
	B    dwpix

dwdone:
	RET

// The dot-product forms (conv_gemm_dot.go): int8 rows of 8-tap groups against weights packed by
// dotIndex, into the same accumulators, REQUANT and STORE as gemmRow4NEON.

// SDOT Vd.4S, Vn.16B, Vm.4B[idx] (DotProd, "vector x indexed element", size 10): lane j of d
// += the dot product of n's bytes 4j..4j+3 with m's bytes 4idx..4idx+3; m = M:Rm, idx = H:L.
#define SDOTE(d, n, m, idx) WORD $(0x4f80e000 | (((idx)&1)<<21) | (((m)>>4)<<20) | (((m)&15)<<16) | (((idx)>>1)<<11) | ((n)<<5) | (d))

// SMMLA Vd.4S, Vn.16B, Vm.16B (I8MM): d's 2x2 int32 matrix += n (2 rows of 8 bytes) times
// the transpose of m (2 rows of 8 bytes).
#define SMMLA(d, n, m) WORD $(0x4e80a400 | ((m)<<16) | ((n)<<5) | (d))

#define ZERO16 \
	VEOR V16.B16, V16.B16, V16.B16; \
	VEOR V17.B16, V17.B16, V17.B16; \
	VEOR V18.B16, V18.B16, V18.B16; \
	VEOR V19.B16, V19.B16, V19.B16; \
	VEOR V20.B16, V20.B16, V20.B16; \
	VEOR V21.B16, V21.B16, V21.B16; \
	VEOR V22.B16, V22.B16, V22.B16; \
	VEOR V23.B16, V23.B16, V23.B16; \
	VEOR V24.B16, V24.B16, V24.B16; \
	VEOR V25.B16, V25.B16, V25.B16; \
	VEOR V26.B16, V26.B16, V26.B16; \
	VEOR V27.B16, V27.B16, V27.B16; \
	VEOR V28.B16, V28.B16, V28.B16; \
	VEOR V29.B16, V29.B16, V29.B16; \
	VEOR V30.B16, V30.B16, V30.B16; \
	VEOR V31.B16, V31.B16, V31.B16

// SROW accumulates one 8-tap group of row register X (taps 0-3 in its S lane 0, 4-7 in lane
// 1) into the row's accumulators A..A+3 (channels 0-3, 4-7, 8-11, 12-15), with the group's
// weights in V4-V7 (taps 0-3) and V8-V11 (taps 4-7).
#define SROW(X, A) \
	SDOTE(A, 4, X, 0); \
	SDOTE(A+1, 5, X, 0); \
	SDOTE(A+2, 6, X, 0); \
	SDOTE(A+3, 7, X, 0); \
	SDOTE(A, 8, X, 1); \
	SDOTE(A+1, 9, X, 1); \
	SDOTE(A+2, 10, X, 1); \
	SDOTE(A+3, 11, X, 1)

// func gemmRow4SDOT(x *int8, strideBytes uintptr, w *int8, groups int, q *int32, y *int8, yStride uintptr, blocks int)
//
// gemmRow4x16DotGo for formSDOT: for each 16-channel block (weights groups*128 bytes, which
// follow each other) and rows r = 0..3 at x + r*strideBytes, acc = Σ x*w over the 8*groups
// taps in wrapping int32 (each SDOT lane adds four products, exact), then REQUANT into
// y + r*yStride + 16j + c. Accumulators as gemmRow4NEON's: row r, channels 4g..4g+3 in
// V(16+4r+g).
TEXT ·gemmRow4SDOT(SB), NOSPLIT, $0-64
	MOVD x+0(FP), R0
	MOVD strideBytes+8(FP), R1
	MOVD w+16(FP), R2
	MOVD groups+24(FP), R3
	MOVD q+32(FP), R4
	MOVD y+40(FP), R5
	MOVD yStride+48(FP), R6
	MOVD blocks+56(FP), R7

sblock:
	MOVD R0, R10
	ADD  R1, R10, R11
	ADD  R1, R11, R12
	ADD  R1, R12, R13
	ZERO16
	MOVD R3, R19

sloop:
	VLD1.P 8(R10), [V0.B8]
	VLD1.P 8(R11), [V1.B8]
	VLD1.P 8(R12), [V2.B8]
	VLD1.P 8(R13), [V3.B8]
	VLD1.P 64(R2), [V4.B16, V5.B16, V6.B16, V7.B16]
	VLD1.P 64(R2), [V8.B16, V9.B16, V10.B16, V11.B16]
	SROW(0, 16)
	SROW(1, 20)
	SROW(2, 24)
	SROW(3, 28)
	SUBS   $1, R19, R19
	BNE    sloop

	QLOAD(R4, 0)
	REQUANT(16)
	REQUANT(20)
	REQUANT(24)
	REQUANT(28)
	QLOAD(R4, 16)
	REQUANT(17)
	REQUANT(21)
	REQUANT(25)
	REQUANT(29)
	QLOAD(R4, 288)
	REQUANT(18)
	REQUANT(22)
	REQUANT(26)
	REQUANT(30)
	QLOAD(R4, 304)
	REQUANT(19)
	REQUANT(23)
	REQUANT(27)
	REQUANT(31)

	MOVD R5, R9
	STORE(V16, V17, V18, V19, R9)
	ADD  R6, R9
	STORE(V20, V21, V22, V23, R9)
	ADD  R6, R9
	STORE(V24, V25, V26, V27, R9)
	ADD  R6, R9
	STORE(V28, V29, V30, V31, R9)

	ADD  $576, R4
	ADD  $16, R5
	SUBS $1, R7, R7
	BNE  sblock
	RET

// MROWS accumulates one 8-tap group of a pair of rows (register X: the first row's taps in its
// low 8 bytes, the second's in the high) into the pair's accumulators A..A+7 (channel pair p
// in A+p: [r0 c2p, r0 c2p+1, r1 c2p, r1 c2p+1]), with channel pair p's weights in V(4+p).
#define MROWS(X, A) \
	SMMLA(A, X, 4); \
	SMMLA(A+1, X, 5); \
	SMMLA(A+2, X, 6); \
	SMMLA(A+3, X, 7); \
	SMMLA(A+4, X, 8); \
	SMMLA(A+5, X, 9); \
	SMMLA(A+6, X, 10); \
	SMMLA(A+7, X, 11)

// UNPAIR turns channel pairs (VA: channels 4g, 4g+1; VB: 4g+2, 4g+3) of a pair of rows into
// per-row registers: VA = the first row's channels 4g..4g+3, VB the second's. Clobbers V12.
#define UNPAIR(VA, VB) \
	VZIP1 VB.D2, VA.D2, V12.D2; \
	VZIP2 VB.D2, VA.D2, VB.D2; \
	VMOV  V12.B16, VA.B16

// func gemmRow4MMLA(x *int8, strideBytes uintptr, w *int8, groups int, q *int32, y *int8, yStride uintptr, blocks int)
//
// gemmRow4SDOT for formI8MM: rows 0,1 and 2,3 go two to a register, and each SMMLA adds the
// 2 rows x 2 channels x 8 taps of a channel pair. Accumulators: rows 2h, 2h+1, channel pair p
// in V(16+8h+p); after UNPAIR, row r's channels 4g..4g+3 are in V(16+8(r/2)+2g+r%2).
TEXT ·gemmRow4MMLA(SB), NOSPLIT, $0-64
	MOVD x+0(FP), R0
	MOVD strideBytes+8(FP), R1
	MOVD w+16(FP), R2
	MOVD groups+24(FP), R3
	MOVD q+32(FP), R4
	MOVD y+40(FP), R5
	MOVD yStride+48(FP), R6
	MOVD blocks+56(FP), R7

mblock:
	MOVD R0, R10
	ADD  R1, R10, R11
	ADD  R1, R11, R12
	ADD  R1, R12, R13
	ZERO16
	MOVD R3, R19

mloop:
	VLD1.P 8(R10), [V0.B8]
	VLD1.P 8(R11), V0.D[1]
	VLD1.P 8(R12), [V1.B8]
	VLD1.P 8(R13), V1.D[1]
	VLD1.P 64(R2), [V4.B16, V5.B16, V6.B16, V7.B16]
	VLD1.P 64(R2), [V8.B16, V9.B16, V10.B16, V11.B16]
	MROWS(0, 16)
	MROWS(1, 24)
	SUBS   $1, R19, R19
	BNE    mloop

	UNPAIR(V16, V17)
	UNPAIR(V18, V19)
	UNPAIR(V20, V21)
	UNPAIR(V22, V23)
	UNPAIR(V24, V25)
	UNPAIR(V26, V27)
	UNPAIR(V28, V29)
	UNPAIR(V30, V31)

	QLOAD(R4, 0)
	REQUANT(16)
	REQUANT(17)
	REQUANT(24)
	REQUANT(25)
	QLOAD(R4, 16)
	REQUANT(18)
	REQUANT(19)
	REQUANT(26)
	REQUANT(27)
	QLOAD(R4, 288)
	REQUANT(20)
	REQUANT(21)
	REQUANT(28)
	REQUANT(29)
	QLOAD(R4, 304)
	REQUANT(22)
	REQUANT(23)
	REQUANT(30)
	REQUANT(31)

	MOVD R5, R9
	STORE(V16, V18, V20, V22, R9)
	ADD  R6, R9
	STORE(V17, V19, V21, V23, R9)
	ADD  R6, R9
	STORE(V24, V26, V28, V30, R9)
	ADD  R6, R9
	STORE(V25, V27, V29, V31, R9)

	ADD  $576, R4
	ADD  $16, R5
	SUBS $1, R7, R7
	BNE  mblock
	RET
