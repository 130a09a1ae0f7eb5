//go:build !(amd64 || arm64) || purego

package kernels

// Flat int8/uint8 ADD/SUB has no SIMD form here: the branch-free Go form does it all.

const haveAddSubSIMD = false

func useAddSubSIMD() bool { return false }

func addSubFlatSIMD(p *addSubPrep, x, y, z []byte) int { return 0 }
