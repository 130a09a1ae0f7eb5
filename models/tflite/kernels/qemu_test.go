package kernels

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestKernelsUnderQemu cross-compiles this package's tests for linux/arm64 and runs the ones
// about the arm64 kernels under qemu-user on three CPU models, each of which must pick its own
// int8 path at run time and give the reference's bytes on every form:
//   - max: Advanced SIMD, DotProd and I8MM, so SMMLA (and the SDOT assembly, forced; the
//     amd64 VNNI forms run on their Go kernels there, as every form the CPU lacks);
//   - cortex-a76 (Raspberry Pi 5): DotProd without I8MM, so SDOT;
//   - cortex-a53 (Raspberry Pi 3): neither, so the int16 NEON form (the dot forms run on their
//     Go kernels only when forced).
//
// qemu's speed says nothing about a
// board's, so nothing here is timed. `make test-kernels` runs the whole package under qemu's
// default CPU as well.
func TestKernelsUnderQemu(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		// On arm64 the package's own tests are the arm64 run (and test-kernels already runs
		// this package under qemu: no nested emulation).
		t.Skip("cross-runs arm64 from an amd64 host")
	}
	if testing.Short() {
		t.Skip("cross-compiles the package and runs it under qemu three times")
	}
	if os.Getenv("OUTPOST_PORTABLE") == "1" {
		t.Skip("the arm64 paths are the point: runs in the pass without OUTPOST_PORTABLE")
	}
	qemu := qemuAArch64(t)
	bin := filepath.Join(t.TempDir(), "kernels.test")
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c for arm64: %v\n%s", err, out)
	}
	// Each CPU model runs what it alone can show: the SMMLA and SDOT assembly on max (where
	// the Paths tests force every form), the choice of SDOT on cortex-a76, the int16 form, the int8
	// depthwise row kernel and the float32 kernels on cortex-a53 (the float kernels are plain Advanced SIMD, the same
	// instructions on every model).
	path := "TestKernelPathARM64"
	for _, c := range []struct {
		cpu, path string
		tests     []string
	}{
		{"max", "neon-i8mm", []string{path, "TestConvInt8PathsMatchReference", "TestFCInt8PathsMatchReference", "TestGemmRowDotExtremes", "TestDotKernelsMatchPortable"}},
		{"cortex-a76", "neon-dotprod", []string{path, "TestFCInt8PathsMatchReference"}},
		{"cortex-a53", "neon", []string{path, "TestConvInt8PathsMatchReference", "TestDwRowMatchesPortable", "TestFCF32SIMD", "TestConvF32SIMD", "TestDepthwiseF32SIMD", "TestAddSubFlatMatchesReference", "TestAddSubFlatPortable"}},
	} {
		t.Run(c.cpu, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, qemu, "-cpu", c.cpu, bin, "-test.v", "-test.short", "-test.count=1",
				"-test.run", "^("+strings.Join(c.tests, "|")+")$")
			cmd.Env = append(withoutEnv(os.Environ(), "OUTPOST_PORTABLE"), "OUTPOST_WANT_KERNEL_PATH="+c.path)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("qemu -cpu %s: %v\n%s", c.cpu, err, tail(out, 4000))
			}
			// Every named test must have run and passed, none skipped.
			for _, name := range c.tests {
				if !regexp.MustCompile(`(?m)^--- PASS: ` + name + ` `).Match(out) {
					t.Errorf("qemu -cpu %s: %s did not pass:\n%s", c.cpu, name, tail(out, 4000))
				}
			}
		})
	}
}

// qemuAArch64 finds qemu-user for arm64; in CI its absence fails the test (scripts/ensure-deps
// installs qemu-user-static), elsewhere it skips.
func qemuAArch64(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"qemu-aarch64-static", "qemu-aarch64"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("qemu-aarch64-static not found: scripts/ensure-deps installs qemu-user-static")
	}
	t.Skip("qemu-aarch64-static not found (scripts/ensure-deps installs it); skipping outside CI")
	return ""
}

func withoutEnv(env []string, name string) []string {
	var kept []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			kept = append(kept, kv)
		}
	}
	return kept
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
