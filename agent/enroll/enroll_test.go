package enroll

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/fleet/wire"
)

func TestIdentityFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, IdentityFile)
	if _, ok, err := LoadIdentity(path); ok || err != nil {
		t.Fatalf("no file: ok=%v err=%v, want neither", ok, err)
	}
	want := wire.Identity{V: 1, DeviceID: "dev-1", Secret: "s3cret"}
	if err := SaveIdentity(path, want); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode %v, %v; want 0600", st.Mode(), err)
	}
	got, ok, err := LoadIdentity(path)
	if err != nil || !ok || got != want {
		t.Fatalf("LoadIdentity = %+v %v %v", got, ok, err)
	}
	for _, damaged := range []string{"", "{\"v\":1,\"id\":\"dev-1\"", "{\"v\":1,\"id\":\"a b\",\"secret\":\"s\"}", strings.Repeat("x", wire.MaxEnrollMessage+10)} {
		if err := os.WriteFile(path, []byte(damaged), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := LoadIdentity(path); ok || err == nil || !strings.Contains(err.Error(), "new enrollment token") || strings.Contains(err.Error(), "\n") {
			t.Errorf("damaged %.20q: ok=%v err=%v, want one line telling what to do", damaged, ok, err)
		}
	}
}

func TestEnrollRejectsBadTokenBeforeConnecting(t *testing.T) {
	// No broker listens on port 1: a bad token must be refused before any dial.
	_, err := Enroll(t.Context(), Options{Broker: "tcp://127.0.0.1:1", Token: "oet1.nope"})
	if err != wire.ErrTokenFormat {
		t.Errorf("Enroll with a malformed token: %v, want ErrTokenFormat", err)
	}
}
