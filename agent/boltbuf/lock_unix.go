//go:build unix

package boltbuf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// acquireLock takes an exclusive flock on path (created if missing), waiting up to timeout for
// another holder, and writes this process's id into it so that the next one to try can name
// the holder. The lock lives as long as the open file: it is released by releaseLock, or by
// the kernel when the process dies, so a crash never leaves a stale lock behind.
//
// bbolt locks buffer.db itself, but only while the file is open: it is unlocked while a
// compaction swaps files, and the stale compaction file is removed before bbolt's lock could
// be taken. This lock covers the whole life of the Buffer.
func acquireLock(path string, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			holder := readHolder(f)
			f.Close()
			return nil, fmt.Errorf("in use by another agent (%s, lock %s); one agent per data dir", holder, path)
		}
		time.Sleep(min(50*time.Millisecond, timeout))
	}
	// The id is information for the error above, not part of the lock: failing to write it
	// leaves the lock held and the holder unnamed.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// readHolder names the process id written in the lock file, if any.
func readHolder(f *os.File) string {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(string(bytes.TrimSpace(buf[:n])))
	if err != nil || pid <= 0 {
		return "pid unknown"
	}
	return "pid " + strconv.Itoa(pid)
}

func releaseLock(f *os.File) {
	if f == nil {
		return
	}
	// Unlock before close so the next holder never sees our pid with the lock free for long;
	// close would release it anyway.
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	_ = f.Close()
}
