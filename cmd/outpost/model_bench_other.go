//go:build !linux

package main

// threadCPU has no per-thread CPU clock here; `model bench` then omits cpu_ms.
func threadCPU() (int64, bool) { return 0, false }

func lockThread() (unlock func()) { return func() {} }
