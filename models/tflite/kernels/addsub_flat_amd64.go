//go:build amd64 && !purego

package kernels

// haveAddSubSIMD says whether this CPU runs the AVX2 form of flat int8/uint8 ADD/SUB;
// useAddSubSIMD, whether it is used (not forced portable).
var haveAddSubSIMD = haveSIMD

func useAddSubSIMD() bool { return useSIMD() }

// addSubFlatSIMD runs the AVX2 form over the longest multiple of 16 elements and returns
// how many it did; len(x) and len(y) are len(z).
func addSubFlatSIMD(p *addSubPrep, x, y, z []byte) int {
	n := len(z) &^ 15
	if n == 0 {
		return 0
	}
	addSubFlatAVX2(&x[0], &y[0], &z[0], n, &p.vec)
	return n
}

//go:noescape
func addSubFlatAVX2(x, y, z *byte, n int, vec *[asvCount][8]int32)
