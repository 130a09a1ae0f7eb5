package trust_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/outpost-ml/outpost/agent/trust"
	"github.com/outpost-ml/outpost/fleet/tufrepo"
)

func TestNewRefusesBadRoots(t *testing.T) {
	w := newWorld(t)
	good := w.rootJSON()
	unsigned, err := metadata.Root().FromBytes(good)
	if err != nil {
		t.Fatal(err)
	}
	unsigned.ClearSignatures()
	unsignedJSON, _ := unsigned.ToBytes(false)
	tampered := []byte(strings.Replace(string(good), `"version":1`, `"version":7`, 1))
	for _, tc := range []struct {
		name string
		root []byte
		want string
	}{
		{"empty", nil, "pinned root"},
		{"not json", []byte("hello"), "pinned root"},
		{"not a root", []byte(`{"signed":{"_type":"targets"},"signatures":[]}`), "pinned root"},
		{"unsigned", unsignedJSON, "signatures"},
		{"changed after signing", tampered, "signatures"},
		{"too large", make([]byte, trust.MaxRootBytes+1), "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := trust.New(t0dir(t), tc.root, w.net, w.clock)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("New = %v, want a one-line error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLookupNeedsRefresh(t *testing.T) {
	w := newWorld(t)
	name := w.publish("1.0.0", 1, "x")
	dev := w.device()
	if _, err := dev.Lookup(name); !errors.Is(err, trust.ErrNotRefreshed) {
		t.Errorf("Lookup before Refresh = %v, want ErrNotRefreshed", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := dev.Refresh(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Refresh(cancelled) = %v, want context.Canceled", err)
	}
	mustRefresh(t, dev)
	if _, err := dev.Lookup(name); err != nil {
		t.Errorf("Lookup after Refresh = %v", err)
	}
}

// TestPinnedRootAfterFirmwareUpdate: the cached root is preferred (it is newer than the
// pinned one after rotations), unless a firmware update pins a root newer still.
func TestPinnedRootAfterFirmwareUpdate(t *testing.T) {
	w := newWorld(t)
	w.publish("1.0.0", 1, "x")
	v1 := w.rootJSON()
	k2 := newKey(t)
	if err := w.repo.UpdateRoot(rootKeys(k2), []ed25519.PrivateKey{w.rootKey, k2}); err != nil {
		t.Fatal(err)
	}
	// Device A walked to v2 and caches it; restarted with v1 still pinned, it starts from v2.
	dirA := t0dir(t)
	mustRefresh(t, w.deviceWith(v1, dirA, w.clock))
	cached, err := os.ReadFile(filepath.Join(dirA, "meta", "root.json"))
	if err != nil || !strings.Contains(string(cached), `"version":2`) {
		t.Fatalf("cached root after rotation: %v %.80s", err, cached)
	}

	// Device B last refreshed at v1. Root v3 rotates the online keys; then the controller
	// stops serving old roots (say, a restored backup). With v3 pinned by a firmware update
	// B must start from v3: from its cached v1 it could not verify the new timestamp.
	dirB := t0dir(t)
	mustRefresh(t, w.deviceWith(v1, dirB, w.clock)) // caches v2; put v1 back as if B had stopped there
	if err := os.WriteFile(filepath.Join(dirB, "meta", "root.json"), v1, 0o644); err != nil {
		t.Fatal(err)
	}
	k3 := newKey(t)
	u := rootKeys(k3)
	u.RotateOnline = true
	if err := w.repo.UpdateRoot(u, []ed25519.PrivateKey{k2, k3}); err != nil {
		t.Fatal(err)
	}
	v3 := w.rootJSON()
	w.net.setTamper(func(n string, d []byte, err error) ([]byte, error) {
		if n == "2.root.json" || n == "3.root.json" {
			return nil, os.ErrNotExist
		}
		return d, err
	})
	defer w.net.setTamper(nil)
	if err := refresh(t, w.deviceWith(v1, dirB, w.clock)); err == nil {
		t.Fatal("a device at v1 verified v3's online keys without the roots between (test premise)")
	}
	mustRefresh(t, w.deviceWith(v3, dirB, w.clock))
}

// TestClockFloor: Now never goes back across restarts, and the floor follows the device
// clock up to the time the newest accepted timestamp was signed.
func TestClockFloor(t *testing.T) {
	w := newWorld(t)
	dir := t0dir(t)
	dev := w.deviceWith(w.rootJSON(), dir, w.clock)
	mustRefresh(t, dev)
	w.advance(13 * time.Hour) // the controller re-signs the timestamp: issued epoch+13h
	if _, err := w.repo.RefreshTimestamp(w.clock()); err != nil {
		t.Fatal(err)
	}
	w.advance(time.Hour)
	mustRefresh(t, dev) // device clock epoch+14h, capped at the issue time
	var up time.Duration
	back := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	again := w.deviceWith(w.rootJSON(), dir, func() time.Time { return back.Add(up) })
	if got, want := again.Now(), epoch.Add(13*time.Hour); !got.Equal(want) {
		t.Errorf("Now after reboot = %v, want %v", got, want)
	}
	up = 10 * time.Minute
	if got, want := again.Now(), epoch.Add(13*time.Hour+10*time.Minute); !got.Equal(want) {
		t.Errorf("Now 10 min after reboot = %v, want %v", got, want)
	}
	// A clock ahead of the floor (NTP synced) wins.
	ahead := epoch.Add(100 * time.Hour)
	synced := w.deviceWith(w.rootJSON(), dir, func() time.Time { return ahead })
	if got := synced.Now(); !got.Equal(ahead) {
		t.Errorf("Now with a synced clock = %v, want %v", got, ahead)
	}
	if err := os.WriteFile(filepath.Join(dir, "clock.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An unreadable floor is dropped rather than stopping updates.
	if _, err := trust.New(dir, w.rootJSON(), w.net, w.clock); err != nil {
		t.Errorf("New with a corrupt clock.json = %v, want it to start without a floor", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "releases.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An unreadable release floor is not dropped: that would reopen package rollback.
	if _, err := trust.New(dir, w.rootJSON(), w.net, w.clock); err == nil || !strings.Contains(err.Error(), "releases.json") {
		t.Errorf("New with a corrupt releases.json = %v, want an error naming it", err)
	}
}

// FuzzNew feeds arbitrary pinned roots: New must refuse or accept without panicking, and
// accept only roots signed by their own keys.
func FuzzNew(f *testing.F) {
	f.Add([]byte(`{"signed":{"_type":"root","spec_version":"1.0.31","version":1,"expires":"2030-01-01T00:00:00Z","keys":{},"roles":{},"consistent_snapshot":true},"signatures":[]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"signed":{"_type":"root","roles":{"root":{"keyids":[],"threshold":0}}},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, root []byte) {
		dir := t.TempDir()
		c, err := trust.New(dir, root, nil, time.Now)
		if err != nil {
			return
		}
		r, err := metadata.Root().FromBytes(root)
		if err != nil {
			t.Fatalf("New accepted a root go-tuf cannot parse: %v", err)
		}
		if err := r.VerifyDelegate(metadata.ROOT, r); err != nil {
			t.Fatalf("New accepted a root not signed by its own keys: %v", err)
		}
		_ = c
	})
}

func rootKeys(keys ...ed25519.PrivateKey) (u rootUpdate) {
	for _, k := range keys {
		u.RootKeys = append(u.RootKeys, k.Public().(ed25519.PublicKey))
	}
	return u
}

// TestCorruptCache: a power cut can leave a cached metadata file empty or torn; the device
// must still refresh (go-tuf alone would fail on it forever).
func TestCorruptCache(t *testing.T) {
	w := newWorld(t)
	w.publish("1.0.0", 1, "x")
	for _, name := range []string{"timestamp.json", "snapshot.json", "targets.json", "root.json"} {
		for _, content := range []string{"", `{"signed":{"_type":"tim`, "\x00\x00\x00\x00"} {
			dir := t0dir(t)
			mustRefresh(t, w.deviceWith(w.rootJSON(), dir, w.clock))
			if err := os.WriteFile(filepath.Join(dir, "meta", name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			dev := w.deviceWith(w.rootJSON(), dir, w.clock)
			if err := refresh(t, dev); err != nil {
				t.Errorf("%s holding %q: Refresh = %v", name, content, err)
			}
			if _, err := dev.Lookup("vib-1.0.0.opkg"); err != nil {
				t.Errorf("%s holding %q: Lookup = %v", name, content, err)
			}
		}
	}
}

// TestClockJumpAhead: a clock that once reads years ahead (a bad RTC battery, a mistyped
// date) must not carry that date into the floor: the floor stops at the time the newest
// accepted timestamp was signed, so the device works as soon as its clock is right again.
func TestClockJumpAhead(t *testing.T) {
	w := newWorld(t)
	w.publish("1.0.0", 1, "x")
	dir := t0dir(t)
	mustRefresh(t, w.deviceWith(w.rootJSON(), dir, w.clock))

	future := time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
	wrong := w.deviceWith(w.rootJSON(), dir, func() time.Time { return future })
	if err := refresh(t, wrong); !errors.Is(err, trust.ErrExpired) {
		t.Fatalf("Refresh at 2035 = %v, want ErrExpired (the clock says so)", err)
	}

	w.advance(2 * time.Hour)
	dev := w.deviceWith(w.rootJSON(), dir, w.clock)
	if got := dev.Now(); !got.Equal(w.clock()) {
		t.Fatalf("after the clock came back, Now = %v, want the clock's %v: the 2035 reading leaked into the floor", got, w.clock())
	}
	mustRefresh(t, dev)
}

// TestNoFloorBeforeFirstRefresh: a device whose clock is wrong at first boot persists
// nothing, so correcting the clock is enough.
func TestNoFloorBeforeFirstRefresh(t *testing.T) {
	w := newWorld(t)
	w.publish("1.0.0", 1, "x")
	dir := t0dir(t)
	wrong := w.deviceWith(w.rootJSON(), dir, func() time.Time { return time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC) })
	if err := refresh(t, wrong); err == nil {
		t.Fatal("Refresh at 2035 succeeded")
	}
	mustRefresh(t, w.deviceWith(w.rootJSON(), dir, w.clock))
}

// TestIssuedTimeIsSigned: the issue time caps the clock floor, so it must be covered by the
// timestamp key's signature, and agent/trust must read the field tufrepo writes.
func TestIssuedTimeIsSigned(t *testing.T) {
	if tufrepo.IssuedField != "x-outpost-issued" {
		t.Fatalf("tufrepo.IssuedField = %q; agent/trust reads \"x-outpost-issued\"", tufrepo.IssuedField)
	}
	w := newWorld(t)
	w.publish("1.0.0", 1, "x")
	ts := meta(t, w.repo, "timestamp.json")
	want := `"` + tufrepo.IssuedField + `":"` + epoch.Format(time.RFC3339) + `"`
	if !strings.Contains(string(ts), want) {
		t.Fatalf("timestamp.json lacks %s: %s", want, ts)
	}
	forged := strings.Replace(string(ts), epoch.Format(time.RFC3339), "2099-01-01T00:00:00Z", 1)
	dev := w.device()
	w.net.setTamper(serve("timestamp.json", []byte(forged)))
	defer w.net.setTamper(nil)
	refused(t, dev, refresh(t, dev), "signatures")
}
