//go:build !linux

package sysstat

import (
	"errors"
	"fmt"
)

// DiskFree is implemented on Linux only, the agent's target; elsewhere it reports an error
// and the health report leaves the figure out.
func DiskFree(path string) (uint64, error) {
	return 0, fmt.Errorf("statfs %s: %w", path, errors.ErrUnsupported)
}
