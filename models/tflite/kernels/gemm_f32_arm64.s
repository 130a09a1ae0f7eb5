//go:build arm64 && !purego

#include "textflag.h"

// NEON forms of the float32 SIMD kernels (gemm_f32_amd64.s has the AVX2/FMA ones). Each
// output's 8 lanes (lane l takes taps l, l+8, …) live in two 4S registers, lanes 0-3 and 4-7,
// and are reduced by three rounds of FADDP into the AVX2 kernels' tree:
// ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)). Go's assembler lacks the vector FADD, FADDP, FMUL,
// FMAX and FMIN, so those are WORDs from the A64 encodings ("Advanced SIMD three same", 4S),
// checked by disassembling the object with llvm-objdump.

#define FADD4S 0x4e20d400
#define FADDP4S 0x6e20d400
#define FMUL4S 0x6e20dc00
#define FMAX4S 0x4e20f400
#define FMIN4S 0x4ea0f400
#define F3S(op, d, n, m) WORD $((op) | ((m)<<16) | ((n)<<5) | (d))

// REDUCE4 writes [s0 s1 s2 s3] for the four outputs whose lanes are in register pairs
// (A, A+1), (A+2, A+3), (A+4, A+5), (A+6, A+7), to (P); clobbers V12-V14.
#define REDUCE4(A, P) \
	F3S(FADDP4S, A, A, A+1); \
	F3S(FADDP4S, A+2, A+2, A+3); \
	F3S(FADDP4S, A+4, A+4, A+5); \
	F3S(FADDP4S, A+6, A+6, A+7); \
	F3S(FADDP4S, 12, A, A+2); \
	F3S(FADDP4S, 13, A+4, A+6); \
	F3S(FADDP4S, 14, 12, 13); \
	FMOVQ F14, (P)

// func dotF32x2x4FMA(x0, x1, w *float32, k, n int, a, c *[4]float32)
// a[j] = Σ x0[i]*w[j*k+i], c[j] = Σ x1[i]*w[j*k+i] over i < 8n, in 8 lanes per output with
// fused multiply-adds (VFMLA), then the fixed reduction. Accumulators: output j of x0 in
// V(16+2j), V(17+2j); of x1 in V(24+2j), V(25+2j).
TEXT ·dotF32x2x4FMA(SB), NOSPLIT, $0-56
	MOVD x0+0(FP), R0
	MOVD x1+8(FP), R1
	MOVD w+16(FP), R2
	MOVD k+24(FP), R3
	MOVD n+32(FP), R4
	MOVD a+40(FP), R5
	MOVD c+48(FP), R6
	LSL  $2, R3
	ADD  R3, R2, R7
	ADD  R3, R7, R8
	ADD  R3, R8, R9
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
	CBZ  R4, reduce2

loop2:
	VLD1.P 32(R0), [V0.S4, V1.S4]
	VLD1.P 32(R1), [V2.S4, V3.S4]
	VLD1.P 32(R2), [V4.S4, V5.S4]
	VLD1.P 32(R7), [V6.S4, V7.S4]
	VLD1.P 32(R8), [V8.S4, V9.S4]
	VLD1.P 32(R9), [V10.S4, V11.S4]
	VFMLA  V0.S4, V4.S4, V16.S4
	VFMLA  V1.S4, V5.S4, V17.S4
	VFMLA  V2.S4, V4.S4, V24.S4
	VFMLA  V3.S4, V5.S4, V25.S4
	VFMLA  V0.S4, V6.S4, V18.S4
	VFMLA  V1.S4, V7.S4, V19.S4
	VFMLA  V2.S4, V6.S4, V26.S4
	VFMLA  V3.S4, V7.S4, V27.S4
	VFMLA  V0.S4, V8.S4, V20.S4
	VFMLA  V1.S4, V9.S4, V21.S4
	VFMLA  V2.S4, V8.S4, V28.S4
	VFMLA  V3.S4, V9.S4, V29.S4
	VFMLA  V0.S4, V10.S4, V22.S4
	VFMLA  V1.S4, V11.S4, V23.S4
	VFMLA  V2.S4, V10.S4, V30.S4
	VFMLA  V3.S4, V11.S4, V31.S4
	SUBS   $1, R4, R4
	BNE    loop2

reduce2:
	REDUCE4(16, R5)
	REDUCE4(24, R6)
	RET

// func dotF32x1x4FMA(x0, w *float32, k, n int, a *[4]float32)
// dotF32x2x4FMA for one row of taps, with the same lanes and reduction.
TEXT ·dotF32x1x4FMA(SB), NOSPLIT, $0-40
	MOVD x0+0(FP), R0
	MOVD w+8(FP), R2
	MOVD k+16(FP), R3
	MOVD n+24(FP), R4
	MOVD a+32(FP), R5
	LSL  $2, R3
	ADD  R3, R2, R7
	ADD  R3, R7, R8
	ADD  R3, R8, R9
	VEOR V16.B16, V16.B16, V16.B16
	VEOR V17.B16, V17.B16, V17.B16
	VEOR V18.B16, V18.B16, V18.B16
	VEOR V19.B16, V19.B16, V19.B16
	VEOR V20.B16, V20.B16, V20.B16
	VEOR V21.B16, V21.B16, V21.B16
	VEOR V22.B16, V22.B16, V22.B16
	VEOR V23.B16, V23.B16, V23.B16
	CBZ  R4, reduce1

loop1:
	VLD1.P 32(R0), [V0.S4, V1.S4]
	VLD1.P 32(R2), [V4.S4, V5.S4]
	VLD1.P 32(R7), [V6.S4, V7.S4]
	VLD1.P 32(R8), [V8.S4, V9.S4]
	VLD1.P 32(R9), [V10.S4, V11.S4]
	VFMLA  V0.S4, V4.S4, V16.S4
	VFMLA  V1.S4, V5.S4, V17.S4
	VFMLA  V0.S4, V6.S4, V18.S4
	VFMLA  V1.S4, V7.S4, V19.S4
	VFMLA  V0.S4, V8.S4, V20.S4
	VFMLA  V1.S4, V9.S4, V21.S4
	VFMLA  V0.S4, V10.S4, V22.S4
	VFMLA  V1.S4, V11.S4, V23.S4
	SUBS   $1, R4, R4
	BNE    loop1

reduce1:
	REDUCE4(16, R5)
	RET

// func fmaF32(y, x, w *float32, n int)
// y[i] += x[i]*w[i] (fused) for i < 8n.
TEXT ·fmaF32(SB), NOSPLIT, $0-32
	MOVD y+0(FP), R0
	MOVD x+8(FP), R1
	MOVD w+16(FP), R2
	MOVD n+24(FP), R3
	CBZ  R3, fdone

floop:
	VLD1   (R0), [V0.S4, V1.S4]
	VLD1.P 32(R1), [V2.S4, V3.S4]
	VLD1.P 32(R2), [V4.S4, V5.S4]
	VFMLA  V2.S4, V4.S4, V0.S4
	VFMLA  V3.S4, V5.S4, V1.S4
	VST1.P [V0.S4, V1.S4], 32(R0)
	SUBS   $1, R3, R3
	BNE    floop

fdone:
	RET

// func dwPixelF32FMA(y *float32, taps *[maxDWTaps]*float32, ntaps int, wp *float32, c8 int, lo, hi float32)
// One interior output pixel of a float32 depthwise layer (depth multiplier 1), 8 channels a
// step, as the AVX2 kernel: acc = x0*w0, then acc += xt*wt (fused) for the taps in order,
// + bias, then max with lo and min with hi. FMAX/FMIN pass a NaN on, as the portable clamp
// does. wp is packDWF32's layout.
TEXT ·dwPixelF32FMA(SB), NOSPLIT, $0-48
	MOVD  y+0(FP), R0
	MOVD  taps+8(FP), R1
	MOVD  ntaps+16(FP), R2
	MOVD  wp+24(FP), R3
	MOVD  c8+32(FP), R4
	FMOVS lo+40(FP), F30
	FMOVS hi+44(FP), F31
	VDUP  V30.S[0], V30.S4
	VDUP  V31.S[0], V31.S4
	MOVD  ZR, R5 // byte offset of the block in every pixel

dwblk:
	MOVD   (R1), R6
	ADD    R5, R6
	VLD1   (R6), [V2.S4, V3.S4]
	VLD1.P 32(R3), [V4.S4, V5.S4]
	F3S(FMUL4S, 0, 2, 4)
	F3S(FMUL4S, 1, 3, 5)
	MOVD   $1, R7

dwtap:
	CMP    R2, R7
	BGE    dwtapsdone
	MOVD   (R1)(R7<<3), R6
	ADD    R5, R6
	VLD1   (R6), [V2.S4, V3.S4]
	VLD1.P 32(R3), [V4.S4, V5.S4]
	VFMLA  V2.S4, V4.S4, V0.S4
	VFMLA  V3.S4, V5.S4, V1.S4
	ADD    $1, R7
	B      dwtap

dwtapsdone:
	VLD1.P 32(R3), [V4.S4, V5.S4]
	F3S(FADD4S, 0, 0, 4)
	F3S(FADD4S, 1, 1, 5)
	F3S(FMAX4S, 0, 0, 30)
	F3S(FMAX4S, 1, 1, 30)
	F3S(FMIN4S, 0, 0, 31)
	F3S(FMIN4S, 1, 1, 31)
	VST1.P [V0.S4, V1.S4], 32(R0)
	ADD    $32, R5
	SUBS   $1, R4, R4
	BNE    dwblk
	RET
