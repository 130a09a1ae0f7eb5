package main

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// threadCPU returns a clock of the CPU time the calling thread has used, in nanoseconds, so
// `model bench` can report compute time that waiting for a busy machine's cores leaves out.
// The caller locks its goroutine to the thread (lockThread).
func threadCPU() (int64, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return ts.Nano(), true
}

func lockThread() (unlock func()) {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}
