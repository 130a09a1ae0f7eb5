//go:build !linux

package exepages

// Release does nothing outside Linux.
func Release() (Stats, error) { return Stats{}, ErrUnsupported }
