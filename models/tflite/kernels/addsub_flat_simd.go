//go:build (amd64 || arm64) && !purego

package kernels

// haveAddSubSIMD says whether this CPU runs the vector form of flat int8/uint8 ADD/SUB (AVX2
// on amd64, NEON on arm64); useAddSubSIMD, whether it is used (not forced portable).
var haveAddSubSIMD = haveSIMD

func useAddSubSIMD() bool { return useSIMD() }

// addSubFlatSIMD runs the vector form over the longest multiple of 16 elements and returns
// how many it did; len(x) and len(y) are len(z).
func addSubFlatSIMD(p *addSubPrep, x, y, z []byte) int {
	n := len(z) &^ 15
	if n == 0 {
		return 0
	}
	addSubFlatVec(&x[0], &y[0], &z[0], n, &p.vec)
	return n
}

// addSubFlatVec is addsub_flat_amd64.s (AVX2) or addsub_flat_arm64.s (NEON): n a positive
// multiple of 16.
//
//go:noescape
func addSubFlatVec(x, y, z *byte, n int, vec *[asvCount][8]int32)
