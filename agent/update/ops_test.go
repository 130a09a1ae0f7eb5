package update

import (
	"testing"

	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

func TestMissingOp(t *testing.T) {
	all, none := kernels.Builtins(), kernels.NewResolver()
	tests := []struct {
		name string
		ops  []string
		want string
	}{
		{"all present", []string{"FULLY_CONNECTED", "LOGISTIC", "SOFTMAX"}, ""},
		{"unknown name", []string{"FULLY_CONNECTED", "TELEPORT"}, "TELEPORT"},
		{"none listed", nil, ""},
	}
	for _, tt := range tests {
		if got := missingOp(all, tt.ops); got != tt.want {
			t.Errorf("%s: missingOp(builtins, %v) = %q, want %q", tt.name, tt.ops, got, tt.want)
		}
	}
	if got := missingOp(none, []string{"FULLY_CONNECTED"}); got != "FULLY_CONNECTED" {
		t.Errorf("empty resolver: %q", got)
	}
}
