package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// linkTrust is compiled into the agent by TestArm64BinarySizeWithTrust (through go build
// -overlay) so the size budget is checked with the TUF client linked, before the update
// state machine wires it in. It calls every exported entry point behind a condition the
// linker cannot see through, so none of it is dead-code eliminated.
const linkTrust = `package main

import (
	"context"
	"os"
	"time"

	"github.com/outpost-ml/outpost/agent/trust"
)

func init() {
	dir := os.Getenv("OUTPOST_LINK_TRUST")
	if dir == "" {
		return
	}
	c, err := trust.New(dir, nil, nil, time.Now)
	if err != nil {
		return
	}
	_ = c.Refresh(context.Background())
	t, _ := c.Lookup(dir)
	_ = c.VerifyFile(t, dir)
	_ = c.CheckRelease(t)
	_ = c.RecordRelease(t)
}
`

// TestArm64BinarySizeWithTrust holds the stripped linux/arm64 agent to its budget with
// agent/trust (go-tuf v2 and its sigstore, protobuf and x/crypto dependencies) linked.
// Measured at 11.81 MiB, 4.06 MiB above the agent without it. Once the update state
// machine links agent/trust, TestArm64BinarySize covers this and this test can go.
func TestArm64BinarySizeWithTrust(t *testing.T) {
	if testing.Short() {
		t.Skip("cross build skipped in -short mode")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "linktrust.go")
	if err := os.WriteFile(src, []byte(linkTrust), 0o644); err != nil {
		t.Fatal(err)
	}
	here, err := filepath.Abs("zz_linktrust.go")
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay.json")
	spec, err := json.Marshal(map[string]map[string]string{"Replace": {here: src}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(overlay, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	holdArm64Size(t, "outpost-agent with agent/trust", "-overlay", overlay)
}

// holdArm64Size cross-builds the agent the way `make cross` does, with extra build flags,
// logs its size and fails the test when it is over the budget.
func holdArm64Size(t *testing.T, what string, buildFlags ...string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "outpost-agent-linux-arm64")
	args := append(append([]string{"build", "-trimpath", "-ldflags=-s -w"}, buildFlags...), "-o", out, ".")
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cross build: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stripped linux/arm64 %s: %d bytes (%.2f MiB, budget %d MiB)", what, fi.Size(), float64(fi.Size())/(1<<20), maxBinaryBytes>>20)
	if fi.Size() > maxBinaryBytes {
		t.Fatalf("stripped linux/arm64 %s is %d bytes, over the %d byte budget", what, fi.Size(), maxBinaryBytes)
	}
}
