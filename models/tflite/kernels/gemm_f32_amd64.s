//go:build amd64 && !purego

#include "textflag.h"

// func dotF32x2x4FMA(x0, x1, w *float32, k, n int, a, c *[4]float32)
// a[j] = Σ x0[i]*w[j*k+i], c[j] = Σ x1[i]*w[j*k+i] over i < 8n: eight lanes of partial sums
// per output (lane l takes taps l, l+8, …), fused multiply-adds, then a fixed reduction tree.
TEXT ·dotF32x2x4FMA(SB), NOSPLIT, $0-56
	MOVQ x0+0(FP), SI
	MOVQ x1+8(FP), DI
	MOVQ w+16(FP), AX
	MOVQ k+24(FP), BX
	MOVQ n+32(FP), CX
	MOVQ a+40(FP), R8
	MOVQ c+48(FP), R9
	SHLQ $2, BX
	LEAQ (AX)(BX*1), R10
	LEAQ (R10)(BX*1), R11
	LEAQ (R11)(BX*1), R12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ DX, DX
	TESTQ CX, CX
	JZ   reduce2

loop2:
	VMOVUPS (SI)(DX*1), Y8
	VMOVUPS (DI)(DX*1), Y9
	VMOVUPS (AX)(DX*1), Y10
	VMOVUPS (R10)(DX*1), Y11
	VFMADD231PS Y8, Y10, Y0
	VFMADD231PS Y9, Y10, Y4
	VMOVUPS (R11)(DX*1), Y12
	VFMADD231PS Y8, Y11, Y1
	VFMADD231PS Y9, Y11, Y5
	VMOVUPS (R12)(DX*1), Y13
	VFMADD231PS Y8, Y12, Y2
	VFMADD231PS Y9, Y12, Y6
	VFMADD231PS Y8, Y13, Y3
	VFMADD231PS Y9, Y13, Y7
	ADDQ $32, DX
	DECQ CX
	JNZ  loop2

reduce2:
	// [s0 s1 s2 s3] from four 8-lane sums: pairwise adds within each 128-bit half, then the
	// two halves.
	VHADDPS Y1, Y0, Y0
	VHADDPS Y3, Y2, Y2
	VHADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (R8)
	VHADDPS Y5, Y4, Y4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS X5, X4, X4
	VMOVUPS X4, (R9)
	VZEROUPPER
	RET

// func dotF32x1x4FMA(x0, w *float32, k, n int, a *[4]float32)
// dotF32x2x4FMA for one row of taps, with the same lanes and reduction.
TEXT ·dotF32x1x4FMA(SB), NOSPLIT, $0-40
	MOVQ x0+0(FP), SI
	MOVQ w+8(FP), AX
	MOVQ k+16(FP), BX
	MOVQ n+24(FP), CX
	MOVQ a+32(FP), R8
	SHLQ $2, BX
	LEAQ (AX)(BX*1), R10
	LEAQ (R10)(BX*1), R11
	LEAQ (R11)(BX*1), R12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ DX, DX
	TESTQ CX, CX
	JZ   reduce1

loop1:
	VMOVUPS (SI)(DX*1), Y8
	VFMADD231PS (AX)(DX*1), Y8, Y0
	VFMADD231PS (R10)(DX*1), Y8, Y1
	VFMADD231PS (R11)(DX*1), Y8, Y2
	VFMADD231PS (R12)(DX*1), Y8, Y3
	ADDQ $32, DX
	DECQ CX
	JNZ  loop1

reduce1:
	VHADDPS Y1, Y0, Y0
	VHADDPS Y3, Y2, Y2
	VHADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (R8)
	VZEROUPPER
	RET

// func fmaF32(y, x, w *float32, n int)
// y[i] += x[i]*w[i] (fused) for i < 8n.
TEXT ·fmaF32(SB), NOSPLIT, $0-32
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), AX
	MOVQ n+24(FP), CX
	XORQ DX, DX
	TESTQ CX, CX
	JZ   fdone

floop:
	VMOVUPS (SI)(DX*1), Y0
	VMOVUPS (DI)(DX*1), Y1
	VFMADD231PS (AX)(DX*1), Y0, Y1
	VMOVUPS Y1, (DI)(DX*1)
	ADDQ $32, DX
	DECQ CX
	JNZ  floop

fdone:
	VZEROUPPER
	RET

// func dwPixelF32FMA(y *float32, taps *[maxDWTaps]*float32, ntaps int, wp *float32, c8 int, lo, hi float32)
// One interior output pixel of a float32 depthwise layer (depth multiplier 1), 8 channels a
// step: acc = x0*w0, then acc += xt*wt (fused) for the taps in order, + bias, clamp to
// [lo, hi]. taps[t] points at tap t's input pixel; wp holds per 8-channel block the ntaps
// weight vectors then the bias vector (packDWF32).
TEXT ·dwPixelF32FMA(SB), NOSPLIT, $0-48
	MOVQ y+0(FP), DI
	MOVQ taps+8(FP), SI
	MOVQ ntaps+16(FP), R9
	MOVQ wp+24(FP), CX
	MOVQ c8+32(FP), R10
	VBROADCASTSS lo+40(FP), Y14
	VBROADCASTSS hi+44(FP), Y15
	XORQ DX, DX

dwblk:
	MOVQ (SI), AX
	VMOVUPS (AX)(DX*1), Y1
	VMULPS (CX), Y1, Y0
	ADDQ $32, CX
	MOVQ $1, R11

dwtap:
	CMPQ R11, R9
	JGE  dwtapsdone
	MOVQ (SI)(R11*8), AX
	VMOVUPS (AX)(DX*1), Y1
	VFMADD231PS (CX), Y1, Y0
	ADDQ $32, CX
	INCQ R11
	JMP  dwtap

dwtapsdone:
	VADDPS (CX), Y0, Y0
	ADDQ $32, CX
	VMAXPS Y14, Y0, Y0
	VMINPS Y15, Y0, Y0
	VMOVUPS Y0, (DI)(DX*1)
	ADDQ $32, DX
	DECQ R10
	JNZ  dwblk
	VZEROUPPER
	RET
