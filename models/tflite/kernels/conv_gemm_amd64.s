//go:build amd64 && !purego

#include "textflag.h"

// VPSHUFB control: byte 0 of each dword of a 128-bit lane to bytes 0..3 of the lane.
DATA packb<>+0(SB)/8, $0x808080800c080400
DATA packb<>+8(SB)/8, $0x8080808080808080
DATA packb<>+16(SB)/8, $0x808080800c080400
DATA packb<>+24(SB)/8, $0x8080808080808080
GLOBL packb<>(SB), RODATA|NOPTR, $32

// VPERMD indices: dword 0 (lane 0's bytes) then dword 4 (lane 1's).
DATA packd<>+0(SB)/8, $0x0000000400000000
DATA packd<>+8(SB)/8, $0
DATA packd<>+16(SB)/8, $0
DATA packd<>+24(SB)/8, $0
GLOBL packd<>(SB), RODATA|NOPTR, $32

// The rounding term of the high multiply, 2^30, as a qword.
DATA round30<>+0(SB)/8, $0x40000000
GLOBL round30<>(SB), RODATA|NOPTR, $8

// SETUP loads the constants REQUANT needs: Y5 = 2^30 in each qword, Y6 and Y7 the byte packing
// controls. (All VEX-encoded: a legacy SSE write to an XMM register would stall on the dirty
// upper halves.)
#define SETUP \
	VPBROADCASTQ round30<>(SB), Y5; \
	VMOVDQU packb<>(SB), Y6; \
	VMOVDQU packd<>(SB), Y7

// REQUANT turns the 8 int32 accumulators in A (XA is its low half) into 8 int8 at DST, with
// the quantTable group at P (bias 0, multiplier 32, left 64, right 96, mask 128, mask>>1 160,
// output offset 192, min 224, max 256), exactly as requantInt32:
//   x = (acc + bias) << left
//   h = bits 31..62 of x*q + 2^30 (SaturatingRoundingDoublingHighMul; q >= 0, no saturation)
//   r = (h >> right) + (h & mask > (mask>>1) + [h < 0])  (RoundingDivideByPOT)
//   clamp(r + output offset, min, max)
// VPMULDQ multiplies the even lanes; the odd lanes are shifted down to multiply, and their
// result shifted up to the high dword, then blended. Clobbers Y0-Y3.
#define REQUANT(A, XA, P, DST) \
	VPADDD 0(P), A, A; \
	VPSLLVD 64(P), A, A; \
	VMOVDQU 32(P), Y0; \
	VPMULDQ Y0, A, Y1; \
	VPSRLQ $32, A, Y2; \
	VPSRLQ $32, Y0, Y3; \
	VPMULDQ Y3, Y2, Y2; \
	VPADDQ Y5, Y1, Y1; \
	VPADDQ Y5, Y2, Y2; \
	VPSRLQ $31, Y1, Y1; \
	VPSLLQ $1, Y2, Y2; \
	VPBLENDD $0xAA, Y2, Y1, A; \
	VPAND 128(P), A, Y1; \
	VPSRAD $31, A, Y2; \
	VMOVDQU 160(P), Y3; \
	VPSUBD Y2, Y3, Y3; \
	VPSRAVD 96(P), A, A; \
	VPCMPGTD Y3, Y1, Y1; \
	VPSUBD Y1, A, A; \
	VPADDD 192(P), A, A; \
	VPMAXSD 224(P), A, A; \
	VPMINSD 256(P), A, A; \
	VPSHUFB Y6, A, A; \
	VPERMD A, Y7, A; \
	VMOVQ XA, DST

// func gemmRow4AVX2(x *int16, strideBytes uintptr, w *int8, pairs int, q *int32, y *int8, yStride uintptr, blocks int)
//
// For each of blocks 16-channel blocks (weights w + j*32*pairs bytes, channels 0..7 in the
// first half and 8..15 in the second; quantTable groups q + j*576 bytes; output y + 16j), and
// rows r = 0..3 at x + r*strideBytes: acc = Σ_i x[r][2i]*w[c][2i] + x[r][2i+1]*w[c][2i+1]
// over i < pairs, in wrapping int32, then REQUANT into y + r*yStride + c. Each weight vector
// holds one tap pair of 8 channels, [8][2]int8 widened to int16 by VPMOVSXBW as it is
// loaded (the packed weights stay one byte each); VPBROADCASTD copies a row's tap pair to all
// 8 lanes and VPMADDWD forms the two products and their int32 sum (exact: each is at most
// 2^14 in magnitude).
TEXT ·gemmRow4AVX2(SB), NOSPLIT, $0-64
	SETUP
	MOVQ strideBytes+8(FP), BX
	MOVQ w+16(FP), DI
	MOVQ pairs+24(FP), DX
	MOVQ q+32(FP), R11
	MOVQ y+40(FP), R12
	MOVQ blocks+56(FP), R13
	MOVQ DX, R10
	SHLQ $4, R10            // bytes of one half block: 16*pairs

gblock:
	MOVQ x+0(FP), SI
	LEAQ (SI)(BX*2), R9
	LEAQ (DI)(R10*1), R8
	MOVQ DX, CX

	VPXOR Y8, Y8, Y8
	VPXOR Y9, Y9, Y9
	VPXOR Y10, Y10, Y10
	VPXOR Y11, Y11, Y11
	VPXOR Y12, Y12, Y12
	VPXOR Y13, Y13, Y13
	VPXOR Y14, Y14, Y14
	VPXOR Y15, Y15, Y15

	// Y0-Y4 only: Y5-Y7 hold SETUP's constants for the whole call.
gloop:
	VPMOVSXBW (DI), Y0
	VPMOVSXBW (R8), Y1

	VPBROADCASTD (SI), Y2
	VPBROADCASTD (SI)(BX*1), Y3
	VPMADDWD Y0, Y2, Y4
	VPADDD Y4, Y8, Y8
	VPMADDWD Y1, Y2, Y4
	VPADDD Y4, Y9, Y9
	VPMADDWD Y0, Y3, Y4
	VPADDD Y4, Y10, Y10
	VPMADDWD Y1, Y3, Y4
	VPADDD Y4, Y11, Y11

	VPBROADCASTD (R9), Y2
	VPBROADCASTD (R9)(BX*1), Y3
	VPMADDWD Y0, Y2, Y4
	VPADDD Y4, Y12, Y12
	VPMADDWD Y1, Y2, Y4
	VPADDD Y4, Y13, Y13
	VPMADDWD Y0, Y3, Y4
	VPADDD Y4, Y14, Y14
	VPMADDWD Y1, Y3, Y4
	VPADDD Y4, Y15, Y15

	ADDQ $4, SI
	ADDQ $4, R9
	ADDQ $16, DI
	ADDQ $16, R8
	DECQ CX
	JNZ  gloop

	// DI has reached the second half block; the next block starts after it.
	MOVQ R8, DI
	LEAQ 288(R11), R8
	MOVQ yStride+48(FP), AX
	MOVQ R12, SI
	REQUANT(Y8, X8, R11, (SI))
	REQUANT(Y9, X9, R8, 8(SI))
	ADDQ AX, SI
	REQUANT(Y10, X10, R11, (SI))
	REQUANT(Y11, X11, R8, 8(SI))
	ADDQ AX, SI
	REQUANT(Y12, X12, R11, (SI))
	REQUANT(Y13, X13, R8, 8(SI))
	ADDQ AX, SI
	REQUANT(Y14, X14, R11, (SI))
	REQUANT(Y15, X15, R8, 8(SI))

	ADDQ $576, R11
	ADDQ $16, R12
	DECQ R13
	JNZ  gblock
	VZEROUPPER
	RET

// func gemmRow4AVXVNNI(x *byte, strideBytes uintptr, w *int8, quads int, q *int32, y *int8, yStride uintptr, blocks int)
// func gemmRow4AVX512VNNI(same)
//
// gemmRow4AVX2's loop with byte quads (conv_gemm_dot.go): each weight vector holds one quad of
// taps of 8 channels, [8][4]int8; VPBROADCASTD copies a row's quad of offset taps (uint8) to
// all 8 lanes and VPDPBUSD adds the four products to each channel's int32 (wrapping, no
// saturation). The AVX-VNNI form is VEX-encoded by hand (the Go assembler only knows the EVEX
// one): C4, RXB.0F38, W0.vvvv(x).L1.66, 50, ModRM(acc, w).
TEXT ·gemmRow4AVXVNNI(SB), NOSPLIT, $0-64
	SETUP
	MOVQ strideBytes+8(FP), BX
	MOVQ w+16(FP), DI
	MOVQ quads+24(FP), DX
	MOVQ q+32(FP), R11
	MOVQ y+40(FP), R12
	MOVQ blocks+56(FP), R13
	MOVQ DX, R10
	SHLQ $5, R10            // bytes of one half block: 32*quads

gblockv:
	MOVQ x+0(FP), SI
	LEAQ (SI)(BX*2), R9
	LEAQ (DI)(R10*1), R8
	MOVQ DX, CX

	VPXOR Y8, Y8, Y8
	VPXOR Y9, Y9, Y9
	VPXOR Y10, Y10, Y10
	VPXOR Y11, Y11, Y11
	VPXOR Y12, Y12, Y12
	VPXOR Y13, Y13, Y13
	VPXOR Y14, Y14, Y14
	VPXOR Y15, Y15, Y15

	// Y0-Y4 only: Y5-Y7 hold SETUP's constants for the whole call.
gloopv:
	VMOVDQU (DI), Y0
	VMOVDQU (R8), Y1

	VPBROADCASTD (SI), Y2
	VPBROADCASTD (SI)(BX*1), Y3
	BYTE $0xC4; BYTE $0x62; BYTE $0x6D; BYTE $0x50; BYTE $0xC0 // VPDPBUSD Y0, Y2, Y8
	BYTE $0xC4; BYTE $0x62; BYTE $0x6D; BYTE $0x50; BYTE $0xC9 // VPDPBUSD Y1, Y2, Y9
	BYTE $0xC4; BYTE $0x62; BYTE $0x65; BYTE $0x50; BYTE $0xD0 // VPDPBUSD Y0, Y3, Y10
	BYTE $0xC4; BYTE $0x62; BYTE $0x65; BYTE $0x50; BYTE $0xD9 // VPDPBUSD Y1, Y3, Y11

	VPBROADCASTD (R9), Y2
	VPBROADCASTD (R9)(BX*1), Y3
	BYTE $0xC4; BYTE $0x62; BYTE $0x6D; BYTE $0x50; BYTE $0xE0 // VPDPBUSD Y0, Y2, Y12
	BYTE $0xC4; BYTE $0x62; BYTE $0x6D; BYTE $0x50; BYTE $0xE9 // VPDPBUSD Y1, Y2, Y13
	BYTE $0xC4; BYTE $0x62; BYTE $0x65; BYTE $0x50; BYTE $0xF0 // VPDPBUSD Y0, Y3, Y14
	BYTE $0xC4; BYTE $0x62; BYTE $0x65; BYTE $0x50; BYTE $0xF9 // VPDPBUSD Y1, Y3, Y15

	ADDQ $4, SI
	ADDQ $4, R9
	ADDQ $32, DI
	ADDQ $32, R8
	DECQ CX
	JNZ  gloopv

	// DI has reached the second half block; the next block starts after it.
	MOVQ R8, DI
	LEAQ 288(R11), R8
	MOVQ yStride+48(FP), AX
	MOVQ R12, SI
	REQUANT(Y8, X8, R11, (SI))
	REQUANT(Y9, X9, R8, 8(SI))
	ADDQ AX, SI
	REQUANT(Y10, X10, R11, (SI))
	REQUANT(Y11, X11, R8, 8(SI))
	ADDQ AX, SI
	REQUANT(Y12, X12, R11, (SI))
	REQUANT(Y13, X13, R8, 8(SI))
	ADDQ AX, SI
	REQUANT(Y14, X14, R11, (SI))
	REQUANT(Y15, X15, R8, 8(SI))

	ADDQ $576, R11
	ADDQ $16, R12
	DECQ R13
	JNZ  gblockv
	VZEROUPPER
	RET

TEXT ·gemmRow4AVX512VNNI(SB), NOSPLIT, $0-64
	SETUP
	MOVQ strideBytes+8(FP), BX
	MOVQ w+16(FP), DI
	MOVQ quads+24(FP), DX
	MOVQ q+32(FP), R11
	MOVQ y+40(FP), R12
	MOVQ blocks+56(FP), R13
	MOVQ DX, R10
	SHLQ $5, R10            // bytes of one half block: 32*quads

gblocke:
	MOVQ x+0(FP), SI
	LEAQ (SI)(BX*2), R9
	LEAQ (DI)(R10*1), R8
	MOVQ DX, CX

	VPXOR Y8, Y8, Y8
	VPXOR Y9, Y9, Y9
	VPXOR Y10, Y10, Y10
	VPXOR Y11, Y11, Y11
	VPXOR Y12, Y12, Y12
	VPXOR Y13, Y13, Y13
	VPXOR Y14, Y14, Y14
	VPXOR Y15, Y15, Y15

	// Y0-Y4 only: Y5-Y7 hold SETUP's constants for the whole call.
gloope:
	VMOVDQU (DI), Y0
	VMOVDQU (R8), Y1

	VPBROADCASTD (SI), Y2
	VPBROADCASTD (SI)(BX*1), Y3
	VPDPBUSD Y0, Y2, Y8
	VPDPBUSD Y1, Y2, Y9
	VPDPBUSD Y0, Y3, Y10
	VPDPBUSD Y1, Y3, Y11

	VPBROADCASTD (R9), Y2
	VPBROADCASTD (R9)(BX*1), Y3
	VPDPBUSD Y0, Y2, Y12
	VPDPBUSD Y1, Y2, Y13
	VPDPBUSD Y0, Y3, Y14
	VPDPBUSD Y1, Y3, Y15

	ADDQ $4, SI
	ADDQ $4, R9
	ADDQ $32, DI
	ADDQ $32, R8
	DECQ CX
	JNZ  gloope

	// DI has reached the second half block; the next block starts after it.
	MOVQ R8, DI
	LEAQ 288(R11), R8
	MOVQ yStride+48(FP), AX
	MOVQ R12, SI
	REQUANT(Y8, X8, R11, (SI))
	REQUANT(Y9, X9, R8, 8(SI))
	ADDQ AX, SI
	REQUANT(Y10, X10, R11, (SI))
	REQUANT(Y11, X11, R8, 8(SI))
	ADDQ AX, SI
	REQUANT(Y12, X12, R11, (SI))
	REQUANT(Y13, X13, R8, 8(SI))
	ADDQ AX, SI
	REQUANT(Y14, X14, R11, (SI))
	REQUANT(Y15, X15, R8, 8(SI))

	ADDQ $576, R11
	ADDQ $16, R12
	DECQ R13
	JNZ  gblocke
	VZEROUPPER
	RET

// The byte 0x80 in every position, for flip32AVX2.
DATA signbytes<>+0(SB)/8, $0x8080808080808080
GLOBL signbytes<>(SB), RODATA|NOPTR, $8

// func flip32AVX2(dst *byte, src *int8, n32 int): dst[i] = src[i] XOR 0x80 (x + 128 as a
// byte) for i < 32*n32.
TEXT ·flip32AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n32+16(FP), CX
	VPBROADCASTQ signbytes<>(SB), Y1

floop:
	VPXOR (SI), Y1, Y0
	VMOVDQU Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  floop
	VZEROUPPER
	RET

// func widen16AVX2(dst *int16, src *int8, n16 int): dst[i] = src[i] for i < 16*n16.
TEXT ·widen16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n16+16(FP), CX

wloop:
	VPMOVSXBW (SI), Y0
	VMOVDQU Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  wloop
	VZEROUPPER
	RET

// func fillQuantAVX2(t, bias, mult *int32, shift *int8, groups, outOff, qMin, qMax int)
//
// fillQuantTableGo for groups whole groups of 8 channels: per group, bias, mult, left =
// max(shift, 0), right = max(-shift, 0), mask = (1 << right) - 1, mask >> 1, then the output
// offset and the activation bounds broadcast (the low 32 bits of those arguments).
TEXT ·fillQuantAVX2(SB), NOSPLIT, $0-64
	MOVQ t+0(FP), DI
	MOVQ bias+8(FP), SI
	MOVQ mult+16(FP), R8
	MOVQ shift+24(FP), R9
	MOVQ groups+32(FP), CX
	VPBROADCASTD outOff+40(FP), Y5
	VPBROADCASTD qMin+48(FP), Y6
	VPBROADCASTD qMax+56(FP), Y7
	VPXOR    Y4, Y4, Y4
	VPCMPEQD Y3, Y3, Y3
	VPSRLD   $31, Y3, Y3 // 1 in every lane

fqloop:
	VMOVDQU   (SI), Y0
	VMOVDQU   Y0, 0(DI)
	VMOVDQU   (R8), Y0
	VMOVDQU   Y0, 32(DI)
	VPMOVSXBD (R9), Y0
	VPMAXSD   Y4, Y0, Y1
	VMOVDQU   Y1, 64(DI)
	VPSUBD    Y0, Y4, Y1
	VPMAXSD   Y4, Y1, Y1
	VMOVDQU   Y1, 96(DI)
	VPSLLVD   Y1, Y3, Y2
	VPSUBD    Y3, Y2, Y2
	VMOVDQU   Y2, 128(DI)
	VPSRLD    $1, Y2, Y2
	VMOVDQU   Y2, 160(DI)
	VMOVDQU   Y5, 192(DI)
	VMOVDQU   Y6, 224(DI)
	VMOVDQU   Y7, 256(DI)
	ADDQ      $32, SI
	ADDQ      $32, R8
	ADDQ      $8, R9
	ADDQ      $288, DI
	DECQ      CX
	JNZ       fqloop
	VZEROUPPER
	RET

// func widen32AVX2(dst *int32, src *int8, n8 int): dst[i] = src[i] for i < 8*n8.
TEXT ·widen32AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n8+16(FP), CX

w32loop:
	VPMOVSXBD (SI), Y0
	VMOVDQU Y0, (DI)
	ADDQ $8, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  w32loop
	VZEROUPPER
	RET

// DWTAP adds tap T of the 8 channels at byte offset DX: A += sign-extended x * w.
#define DWTAP(T, A) \
	MOVQ (T*8)(R11), R9; \
	VPMOVSXBD (R9)(DX*1), Y9; \
	VPMULLD (T*32)(SI), Y9, Y9; \
	VPADDD Y9, A, A

// DWPAIR adds taps T0 and T1 of 16 channels at byte offset DX, their weights at OFF(SI) (two
// vectors, dwPackWeights): each tap's 16 bytes widened to int16 (VPMOVSXBW), the two taps'
// words interleaved per channel (VPUNPCKLWD: channels 0-3 and 8-11; VPUNPCKHWD: 4-7 and
// 12-15), and VPMADDWD forms x0*w0 + x1*w1 per channel, exactly (each product is at most
// 2^14 in magnitude). Y12 and Y13 accumulate the two halves.
#define DWPAIR(T0, T1, OFF, OFF2) \
	MOVQ (T0*8)(R11), R9; \
	VPMOVSXBW (R9)(DX*1), Y9; \
	MOVQ (T1*8)(R11), R9; \
	VPMOVSXBW (R9)(DX*1), Y10; \
	VPUNPCKHWD Y10, Y9, Y11; \
	VPUNPCKLWD Y10, Y9, Y9; \
	VPMADDWD OFF(SI), Y9, Y9; \
	VPMADDWD OFF2(SI), Y11, Y11; \
	VPADDD Y9, Y12, Y12; \
	VPADDD Y11, Y13, Y13

// DWPACK writes tap pair (T0, T1) of the 16 channels at SI (group g) and BX (group g+1) as
// dwPackWeights lays it out, at OFF(DI) and OFF+32(DI): the same widening and interleaving
// dw3x3RowAVX2 applies to the inputs.
#define DWPACK(T0, T1, OFF, OFF2) \
	VMOVQ (T0*8)(SI), X0; \
	VPINSRQ $1, (T0*8)(BX), X0, X0; \
	VPMOVSXBW X0, Y0; \
	VMOVQ (T1*8)(SI), X1; \
	VPINSRQ $1, (T1*8)(BX), X1, X1; \
	VPMOVSXBW X1, Y1; \
	VPUNPCKLWD Y1, Y0, Y2; \
	VPUNPCKHWD Y1, Y0, Y3; \
	VMOVDQU Y2, OFF(DI); \
	VMOVDQU Y3, OFF2(DI)

// func dwPackAVX2(dst *int32, w8 *int8, pairs int)
//
// dwPackWeights for pairs pairs of groups: 144 bytes of w8 into 320 of dst each.
TEXT ·dwPackAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ w8+8(FP), SI
	MOVQ pairs+16(FP), CX

dwpack:
	LEAQ 72(SI), BX
	DWPACK(0, 1, 0, 32)
	DWPACK(2, 3, 64, 96)
	DWPACK(4, 5, 128, 160)
	DWPACK(6, 7, 192, 224)
	// Tap 8 with no partner: its second weight 0.
	VMOVQ 64(SI), X0
	VPINSRQ $1, 64(BX), X0, X0
	VPMOVSXBW X0, Y0
	VPXOR Y1, Y1, Y1
	VPUNPCKLWD Y1, Y0, Y2
	VPUNPCKHWD Y1, Y0, Y3
	VMOVDQU Y2, 256(DI)
	VMOVDQU Y3, 288(DI)
	ADDQ $144, SI
	ADDQ $320, DI
	DECQ CX
	JNZ  dwpack
	VZEROUPPER
	RET

// func dw3x3RowAVX2(taps *[9]*int8, steps *[9]uintptr, w *int32, q *int32, y *int8, groups, npix int)
//
// npix output pixels of a 3x3 depthwise convolution with depth multiplier 1, along a row:
// acc = Σ_t x_t * w_t over the 9 taps (taps[t] points at the input pixel of tap t, or at a
// row of input zero points), then REQUANT (whose bias has the input offset folded in) into y;
// then y moves on by groups*8 bytes and each tap pointer by its step (0 for pad taps). w is
// laid out by dwPackWeights: pairs of groups 16 channels at a time (320 bytes), tap pairs
// through VPMADDWD; an odd last group 8 channels at a time, [9][8]int32 (288 bytes), through
// VPMULLD. q is a quantTable of groups groups. Taking 16 channels and two taps at a time needs
// 6 loads per two taps where 8 channels and one tap needed 3 per tap (the tap's pointer, its
// bytes, its weights), and loads were what bound the kernel. The tap pointers (the caller's
// scratch array) are only moved between pixels, so they stay inside the input.
TEXT ·dw3x3RowAVX2(SB), NOSPLIT, $0-56
	SETUP
	MOVQ taps+0(FP), R11
	MOVQ steps+8(FP), R12
	MOVQ w+16(FP), R13
	MOVQ q+24(FP), BX
	MOVQ y+32(FP), DI
	MOVQ npix+48(FP), R10

dwpix:
	MOVQ groups+40(FP), CX
	MOVQ R13, SI
	MOVQ BX, R8
	XORQ DX, DX
	SHRQ $1, CX
	JZ   dwodd

dw16:
	VPXOR Y12, Y12, Y12
	VPXOR Y13, Y13, Y13
	DWPAIR(0, 1, 0, 32)
	DWPAIR(2, 3, 64, 96)
	DWPAIR(4, 5, 128, 160)
	DWPAIR(6, 7, 192, 224)
	// Tap 8 alone: paired with itself, its second weight 0.
	MOVQ 64(R11), R9
	VPMOVSXBW (R9)(DX*1), Y9
	VPUNPCKHWD Y9, Y9, Y11
	VPUNPCKLWD Y9, Y9, Y9
	VPMADDWD 256(SI), Y9, Y9
	VPMADDWD 288(SI), Y11, Y11
	VPADDD Y9, Y12, Y12
	VPADDD Y11, Y13, Y13
	// Channels 0-7 are the low halves of Y12 (0-3) and Y13 (4-7), 8-15 the high halves.
	VPERM2I128 $0x20, Y13, Y12, Y8
	VPERM2I128 $0x31, Y13, Y12, Y10
	REQUANT(Y8, X8, R8, (DI)(DX*1))
	ADDQ $8, DX
	ADDQ $288, R8
	REQUANT(Y10, X10, R8, (DI)(DX*1))
	ADDQ $8, DX
	ADDQ $288, R8
	ADDQ $320, SI
	DECQ CX
	JNZ  dw16

dwodd:
	MOVQ groups+40(FP), CX
	ANDQ $1, CX
	JZ   dwnext
	MOVQ 0(R11), R9
	VPMOVSXBD (R9)(DX*1), Y8
	VPMULLD 0(SI), Y8, Y8
	MOVQ 8(R11), R9
	VPMOVSXBD (R9)(DX*1), Y10
	VPMULLD 32(SI), Y10, Y10
	DWTAP(2, Y8)
	DWTAP(3, Y10)
	DWTAP(4, Y8)
	DWTAP(5, Y10)
	DWTAP(6, Y8)
	DWTAP(7, Y10)
	DWTAP(8, Y8)
	VPADDD Y10, Y8, Y8
	REQUANT(Y8, X8, R8, (DI)(DX*1))
	ADDQ $8, DX

dwnext:
	DECQ R10
	JZ   dwdone
	ADDQ DX, DI
	MOVQ 0(R12), AX
	ADDQ AX, 0(R11)
	MOVQ 8(R12), AX
	ADDQ AX, 8(R11)
	MOVQ 16(R12), AX
	ADDQ AX, 16(R11)
	MOVQ 24(R12), AX
	ADDQ AX, 24(R11)
	MOVQ 32(R12), AX
	ADDQ AX, 32(R11)
	MOVQ 40(R12), AX
	ADDQ AX, 40(R11)
	MOVQ 48(R12), AX
	ADDQ AX, 48(R11)
	MOVQ 56(R12), AX
	ADDQ AX, 56(R11)
	MOVQ 64(R12), AX
	ADDQ AX, 64(R11)
	JMP  dwpix

dwdone:
	VZEROUPPER
	RET
