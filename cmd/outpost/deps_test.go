package main

import (
	"os/exec"
	"strings"
	"testing"
)

// goListDeps returns the import paths that pkg links (tests excluded).
func goListDeps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %v: %v", pkgs, err)
	}
	return strings.Fields(string(out))
}

// TestDependencyRules enforces the one-way dependency rules of docs/architecture.md: they keep
// the agent binary small and the interpreter free of I/O.
func TestDependencyRules(t *testing.T) {
	const mod = "github.com/outpost-ml/outpost/"
	rules := []struct {
		name      string
		pkgs      []string
		forbidden []string
	}{
		{
			name: "agent binary links no broker, web, PostgreSQL or controller code",
			pkgs: []string{"./cmd/outpost-agent"},
			forbidden: []string{
				"github.com/mochi-mqtt/", "net/http/pprof", "html/template", "github.com/jackc/",
				"github.com/lib/pq", "github.com/prometheus/", "github.com/spf13/cobra",
				mod + "fleet/broker", mod + "fleet/boltstore", mod + "fleet/pgstore",
				mod + "fleet/httpapi", mod + "fleet/ingest", mod + "cmd/outpost/",
			},
		},
		{
			name:      "agent packages import no controller code",
			pkgs:      []string{"./agent/..."},
			forbidden: []string{"github.com/mochi-mqtt/", mod + "fleet/broker", mod + "fleet/boltstore", mod + "fleet/ingest", mod + "fleet/httpapi"},
		},
		{
			// go-tuf's module also holds a CLI and its sigstore dependency cloud KMS
			// clients; the device links only the metadata client (about 4 MiB, measured
			// in docs/updates.md, "Footprint").
			name: "agent trust links go-tuf's client, no web, database, RPC or cloud stack",
			pkgs: []string{"./agent/trust"},
			forbidden: []string{
				"github.com/spf13/cobra", "database/sql", "html/template", "net/http/pprof", "google.golang.org/grpc",
				"github.com/sigstore/sigstore/pkg/signature/kms", "github.com/google/go-containerregistry/pkg/v1",
				"github.com/go-logr/", "gopkg.in/yaml", mod + "fleet/tufrepo", mod + "fleet/broker",
			},
		},
		{
			name:      "models import no agent, fleet, MQTT, bbolt or periph code",
			pkgs:      []string{"./models/..."},
			forbidden: []string{mod + "agent", mod + "fleet", mod + "cmd", "github.com/eclipse/paho", "github.com/mochi-mqtt/", "go.etcd.io/bbolt", "periph.io/"},
		},
		{
			name:      "fleet never imports agent",
			pkgs:      []string{"./fleet/..."},
			forbidden: []string{mod + "agent", mod + "cmd"},
		},
	}
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			for _, dep := range goListDeps(t, r.pkgs...) {
				for _, f := range r.forbidden {
					if dep == strings.TrimSuffix(f, "/") || strings.HasPrefix(dep, f) || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/") {
						t.Errorf("%v links %s (forbidden: %s)", r.pkgs, dep, f)
					}
				}
			}
		})
	}
}
