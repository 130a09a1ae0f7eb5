package pgstore

import "testing"

// TestAdvisoryLockKeysDistinct: two features sharing an advisory lock key deadlock each other
// (the alert election once held the key the TUF repository's changes wait on, so a registry
// push on the alert leader timed out).
func TestAdvisoryLockKeysDistinct(t *testing.T) {
	keys := map[string]int64{
		"migrationLock":    migrationLock,
		"RolloutLeaderKey": RolloutLeaderKey,
		"AlertLeaderKey":   AlertLeaderKey,
		"TUFRepoKey":       TUFRepoKey,
	}
	seen := map[int64]string{}
	for name, k := range keys {
		if other, ok := seen[k]; ok {
			t.Errorf("%s and %s share advisory lock key %#x", name, other, k)
		}
		seen[k] = name
	}
}
