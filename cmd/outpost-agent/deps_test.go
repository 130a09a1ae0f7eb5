package main_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent binary must stay small and must not drag in controller-side code: no broker,
// no CLI framework, no database drivers, nothing of fleet but its wire contract.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{
		"github.com/mochi-mqtt/",
		"github.com/spf13/cobra",
		"github.com/jackc/",
		"github.com/lib/pq",
		"database/sql",
		"github.com/outpost-ml/outpost/cmd/outpost",
		"github.com/outpost-ml/outpost/fleet/",
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "github.com/outpost-ml/outpost/fleet/wire" || pkg == "github.com/outpost-ml/outpost/cmd/outpost-agent" {
			continue
		}
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("outpost-agent depends on %s", pkg)
			}
		}
	}
}
