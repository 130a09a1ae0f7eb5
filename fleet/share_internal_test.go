package fleet

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestShareGroupFilters: a replica shares only the result and capture topics (each batch to one replica)
// and keeps state and health as plain subscriptions (every replica sees the whole registry).
func TestShareGroupFilters(t *testing.T) {
	tests := []struct {
		group string
		want  []string
	}{
		{"", []string{"outpost/v1/d/+/capture", "outpost/v1/d/+/drift", "outpost/v1/d/+/health", "outpost/v1/d/+/results", "outpost/v1/d/+/results.z", "outpost/v1/d/+/state"}},
		{"outpost", []string{"$share/outpost/outpost/v1/d/+/capture", "$share/outpost/outpost/v1/d/+/results", "$share/outpost/outpost/v1/d/+/results.z", "outpost/v1/d/+/drift", "outpost/v1/d/+/health", "outpost/v1/d/+/state"}},
	}
	for _, tt := range tests {
		c := &Controller{opts: Options{ShareGroup: tt.group}}
		got := slices.Sorted(maps.Keys(c.filters()))
		if !slices.Equal(got, tt.want) {
			t.Errorf("group %q: filters %v, want %v", tt.group, got, tt.want)
		}
	}
	if err := validShareGroup("outpost"); err != nil {
		t.Errorf("validShareGroup(outpost) = %v", err)
	}
	for _, bad := range []string{"a/b", "a+", "#"} {
		if err := validShareGroup(bad); err == nil || !strings.Contains(err.Error(), "must not contain") {
			t.Errorf("validShareGroup(%q) = %v, want an error", bad, err)
		}
	}
}
