package kernels

import (
	"math"

	"github.com/outpost-ml/outpost/models/tensor"
)

// The flat (same-shaped, no broadcast) int8 and uint8 ADD/SUB: addSubGeneral's integers with
// every branch of the fixed-point helpers folded away at Prepare. For each element the
// reference computes
//
//	a   = RDBPOT(SRDHM((x+off1)<<20, m1), r1)          (the same for b, from y)
//	raw = a ± b
//	out = clamp(RDBPOT(SRDHM(raw, mo), ro) + outOff, qMin, qMax)
//
// and every step is exact in the forms below as long as no operand can reach the single
// saturating case of SRDHM (both operands MinInt32) and every shift is a right shift of at
// most 31 bits, which Prepare checks (prepareAddSubFlat):
//
//   - SRDHM(v, m) = floor((v*m + 2^30) / 2^31) for every v*m but MinInt32², because the
//     reference's nudge of 1-2^30 for a negative product, followed by a division truncating
//     toward zero, is the floor of (v*m + 2^30) / 2^31 (adding 2^31-1 turns the truncation
//     of a negative quotient into a floor);
//   - RDBPOT(v, r) = (v + (2^r>>1) + (r > 0 && v < 0 ? -1 : 0)) >> r (arithmetic), which
//     needs v + 2^(r-1) to fit in int32: every |v| here is below 2^29.
//
// |x+off| ≤ 255, so (x+off)<<20 < 2^28 in magnitude, a and b are below 2^28 (the multipliers
// are below 1), raw below 2^29 and every 64-bit product below 2^60.
//
// The Go form looks each input's term up in a 256-entry table of its byte (the term depends
// on the byte alone); the amd64 and arm64 forms compute the terms in 32-bit lanes (see
// addsub_flat_amd64.s and addsub_flat_arm64.s: SQRDMULH is SRDHM itself, and AVX2 splits
// the input multipliers so that a term needs no 64-bit product). All give addSubGeneral's
// bytes exactly, for any split across workers.

// Indices of addSubPrep.vec: each a constant broadcast to the eight int32 lanes of a YMM
// register (a shift count sits in lane 0 alone, as VPSRAD reads a 64-bit count).
const (
	asvXor      = iota // 0x80 for int8 (the bytes are loaded zero-extended), 0 for uint8
	asvAdd1            // input 1's offset, less asvXor
	asvM1              // input 1's multiplier
	asvHalf1           // 2^r1 >> 1
	asvAdj1            // -1 if r1 > 0: the rounding of a negative value
	asvR1              // r1, the right shift (lane 0)
	asvAdd2            // the same for input 2
	asvM2              //
	asvHalf2           //
	asvAdj2            //
	asvR2              //
	asvSign2           // +1 for ADD, -1 for SUB (VPSIGND)
	asvMo              // the output's multiplier, rounding and shift
	asvHalfO           //
	asvAdjO            //
	asvRO              //
	asvOutOff          // output zero point
	asvQMin            // activation range
	asvQMax            //
	asvNudge           // 2^30 in each 64-bit lane
	asvByteMask        // 0xff in each lane
	// The arm64 form's: the byte 0x80 (int8) or 0 (uint8) in each byte, and minus each
	// right shift in every lane (SRSHL).
	asvXorB
	asvNegR1
	asvNegR2
	asvNegRO
	// The amd64 form's input multipliers split as m = q*2^11 + rem (0 ≤ rem < 2^11), and
	// 2^10: SRDHM(v<<20, m) = floor((v*m + 2^10) / 2^11) = v*q + (v*rem + 2^10) >> 11,
	// exactly, in 32-bit lanes (|v| ≤ 255).
	asvQ1
	asvRem1
	asvQ2
	asvRem2
	asvK1024
	asvCount
)

// addSubPrep is a flat int8/uint8 ADD or SUB prepared for the fast forms.
type addSubPrep struct {
	vec [asvCount][8]int32
	// The Go form: each input's term by its byte (input 2's negated for SUB), and the
	// output rescaling.
	t1, t2                  [256]int32
	mo, halfO, adjO, outOff int32
	qMin, qMax              int32
	ro                      uint
}

// prepareAddSubFlat builds the fast form of d's int8/uint8 ADD or SUB (d.lut1 and d.lut2 hold
// the inputs' terms), or returns nil when an operand is outside what the fast forms compute
// exactly; the node then keeps the reference loop.
func prepareAddSubFlat(d *binaryData, dt tensor.DType) *addSubPrep {
	if d.lut1 == nil || d.leftShift != 20 {
		return nil
	}
	// Every shift must be a right shift of 0..31 (quantizeMultiplierSmallerThanOne gives
	// no other, but a left shift or a wider one is not folded). SRDHM saturates only for
	// MinInt32 times MinInt32, and no operand here reaches MinInt32 (they are below 2^29
	// in magnitude), so a MinInt32 multiplier would be exact too; it is refused all the
	// same, as nothing produces one.
	right := func(s int) (int32, bool) { return int32(-s), s <= 0 && s >= -31 }
	r1, ok1 := right(d.in1Shift)
	r2, ok2 := right(d.in2Shift)
	ro, ok3 := right(d.outShift)
	if !ok1 || !ok2 || !ok3 || d.outMult == math.MinInt32 || d.in1Mult == math.MinInt32 || d.in2Mult == math.MinInt32 {
		return nil
	}
	p := &addSubPrep{}
	half := func(r int32) int32 { return int32(uint32(1) << r >> 1) } // 2^30 for r = 31
	adj := func(r int32) int32 {
		if r > 0 {
			return -1
		}
		return 0
	}
	var xor int32
	if dt == tensor.Int8 {
		xor = 0x80
	}
	sign := int32(1)
	if d.op == binSub {
		sign = -1
	}
	set := func(i int, v int32) {
		for l := range p.vec[i] {
			p.vec[i][l] = v
		}
	}
	set(asvXor, xor)
	set(asvAdd1, d.in1Off-xor)
	set(asvM1, d.in1Mult)
	set(asvHalf1, half(r1))
	set(asvAdj1, adj(r1))
	p.vec[asvR1][0] = r1
	set(asvAdd2, d.in2Off-xor)
	set(asvM2, d.in2Mult)
	set(asvHalf2, half(r2))
	set(asvAdj2, adj(r2))
	p.vec[asvR2][0] = r2
	set(asvSign2, sign)
	set(asvMo, d.outMult)
	set(asvHalfO, half(ro))
	set(asvAdjO, adj(ro))
	p.vec[asvRO][0] = ro
	set(asvOutOff, d.outOff)
	set(asvQMin, d.qMin)
	set(asvQMax, d.qMax)
	for l := 0; l < 8; l += 2 {
		p.vec[asvNudge][l] = 1 << 30
	}
	set(asvByteMask, 0xff)
	set(asvXorB, xor*0x01010101)
	set(asvNegR1, -r1)
	set(asvNegR2, -r2)
	set(asvNegRO, -ro)
	set(asvQ1, d.in1Mult>>11)
	set(asvRem1, d.in1Mult&(1<<11-1))
	set(asvQ2, d.in2Mult>>11)
	set(asvRem2, d.in2Mult&(1<<11-1))
	set(asvK1024, 1<<10)
	p.t1 = *d.lut1
	for i, v := range d.lut2 {
		p.t2[i] = sign * v
	}
	p.mo, p.halfO, p.adjO, p.ro = d.outMult, half(ro), adj(ro), uint(ro)
	p.outOff, p.qMin, p.qMax = d.outOff, d.qMin, d.qMax
	return p
}

// addSubFlat computes z from the bytes x and y (int8 or uint8, as prepared): the bulk in the
// SIMD form where there is one, the rest in Go.
func addSubFlat(p *addSubPrep, x, y, z []byte) {
	x, y = x[:len(z)], y[:len(z)]
	done := 0
	if useAddSubSIMD() {
		done = addSubFlatSIMD(p, x, y, z)
	}
	addSubFlatGo(p, x[done:], y[done:], z[done:])
}

// addSubFlatGo is the branch-free Go form.
func addSubFlatGo(p *addSubPrep, x, y, z []byte) {
	t1, t2 := &p.t1, &p.t2
	m, half, adj, off, lo, hi, r := int64(p.mo), p.halfO, p.adjO, p.outOff, p.qMin, p.qMax, p.ro&31
	x, y = x[:len(z)], y[:len(z)]
	for i := range z {
		raw := t1[x[i]] + t2[y[i]]
		v := int32((int64(raw)*m + 1<<30) >> 31)
		v = (v + half + (v>>31)&adj) >> r
		z[i] = byte(min(max(v+off, lo), hi))
	}
}
