package fleet

import "time"

// SetCapturePruneEvery sets how often retention runs, for tests; it returns the restore.
func SetCapturePruneEvery(d time.Duration) (restore func()) {
	old := capturePruneEvery
	capturePruneEvery = d
	return func() { capturePruneEvery = old }
}
