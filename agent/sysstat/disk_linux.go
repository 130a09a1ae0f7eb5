package sysstat

import (
	"fmt"
	"syscall"
)

// DiskFree returns the bytes that an unprivileged process can still write on the filesystem
// holding path (statfs f_bavail, which excludes the blocks reserved for root: the agent does
// not run as root, and the reserve is of no use to it).
func DiskFree(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	// Block counts are in fragment-size units; f_frsize is 0 on old kernels, then f_bsize.
	unit := uint64(st.Frsize)
	if unit == 0 {
		unit = uint64(st.Bsize)
	}
	return uint64(st.Bavail) * unit, nil
}
