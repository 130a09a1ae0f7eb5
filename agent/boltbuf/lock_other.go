//go:build !unix

package boltbuf

import (
	"os"
	"time"
)

// acquireLock is a no-op where flock is missing: bbolt's own lock on the file is all there is.
func acquireLock(string, time.Duration) (*os.File, error) { return nil, nil }

func releaseLock(*os.File) {}
