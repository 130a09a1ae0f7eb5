package kernels

// HalfToFloat32 exports halfToFloat32 to the external tests.
var HalfToFloat32 = halfToFloat32
