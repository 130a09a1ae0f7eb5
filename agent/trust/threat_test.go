package trust_test

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/outpost-ml/outpost/agent/trust"
	"github.com/outpost-ml/outpost/fleet/tufrepo"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// The threat tests follow TUF's list of attacks (spec section 1.5.2) as the issue names them.
// Each plays the attacker against the real repository code and the real go-tuf client and
// checks that the device refuses, with a one-line reason, and that nothing unverified
// becomes visible through Lookup. docs/updates.md ("Threat model") has the table these tests back.

// refused asserts err is a one-line refusal and the device then offers nothing to install.
func refused(t *testing.T, dev *trust.Client, err error, wantSubstr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Refresh succeeded, want a refusal mentioning %q", wantSubstr)
	}
	t.Logf("refused: %v", err)
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("reason is not one line: %q", err)
	}
	if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(wantSubstr)) {
		t.Errorf("Refresh = %q, want it to mention %q", err, wantSubstr)
	}
	if _, lerr := dev.Lookup("vib-1.0.0.opkg"); !errors.Is(lerr, trust.ErrNotRefreshed) {
		t.Errorf("after a refused refresh Lookup = %v, want ErrNotRefreshed", lerr)
	}
}

func meta(t *testing.T, r *tufrepo.Repo, name string) []byte {
	t.Helper()
	data, err := r.Meta(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// current returns the names of the snapshot and targets files the current timestamp leads to.
func current(t *testing.T, r *tufrepo.Repo) (snapshot, targets string) {
	t.Helper()
	ts, err := metadata.Timestamp().FromBytes(meta(t, r, "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	sv := ts.Signed.Meta["snapshot.json"].Version
	snapshot = itoa(sv) + ".snapshot.json"
	s, err := metadata.Snapshot().FromBytes(meta(t, r, snapshot))
	if err != nil {
		t.Fatal(err)
	}
	return snapshot, itoa(s.Signed.Meta["targets.json"].Version) + ".targets.json"
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// serve replaces the answer for one metadata name.
func serve(name string, data []byte) func(string, []byte, error) ([]byte, error) {
	return func(n string, d []byte, err error) ([]byte, error) {
		if n == name {
			return data, nil
		}
		return d, err
	}
}

func TestArbitraryPackage(t *testing.T) {
	w := newWorld(t)
	name := w.publish("1.0.0", 1, "the real package")
	dev := w.device()
	mustRefresh(t, dev)

	t.Run("target the fleet never signed", func(t *testing.T) {
		if _, err := dev.Lookup("evil.opkg"); !errors.Is(err, trust.ErrUnknown) {
			t.Errorf("Lookup(evil.opkg) = %v, want ErrUnknown", err)
		}
	})
	t.Run("other bytes under a signed name", func(t *testing.T) {
		tg, err := dev.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		for _, content := range []string{"the evil package", "the real packagf", "the real package plus"} {
			p := filepath.Join(dir, "pkg")
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := dev.VerifyFile(tg, p); !errors.Is(err, trust.ErrMismatch) || strings.Contains(err.Error(), "\n") {
				t.Errorf("VerifyFile(%q) = %v, want a one-line ErrMismatch", content, err)
			}
		}
		p := filepath.Join(dir, "good")
		if err := os.WriteFile(p, []byte("the real package"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := dev.VerifyFile(tg, p); err != nil {
			t.Errorf("VerifyFile(real package) = %v", err)
		}
	})
	t.Run("an entry added to signed targets", func(t *testing.T) {
		snap, targetsName := current(t, w.repo)
		_ = snap
		tm, err := metadata.Targets().FromBytes(meta(t, w.repo, targetsName))
		if err != nil {
			t.Fatal(err)
		}
		evil, err := metadata.TargetFile().FromBytes("evil.opkg", []byte("evil"), "sha256")
		if err != nil {
			t.Fatal(err)
		}
		tm.Signed.Targets["evil.opkg"] = evil
		forged, err := tm.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}
		fresh := w.deviceWith(w.rootJSON(), t0dir(t), w.clock)
		w.net.setTamper(serve(targetsName, forged))
		defer w.net.setTamper(nil)
		refused(t, fresh, refresh(t, fresh), "targets")
	})
	t.Run("a whole repository under the attacker's keys", func(t *testing.T) {
		evil := newWorld(t)
		evil.publish("1.0.0", 1, "the evil package")
		fresh := w.deviceWith(w.rootJSON(), t0dir(t), w.clock)
		w.net.setTamper(func(n string, _ []byte, _ error) ([]byte, error) { return evil.repo.Meta(n) })
		defer w.net.setTamper(nil)
		refused(t, fresh, refresh(t, fresh), "signatures")
	})
}

func TestRollback(t *testing.T) {
	w := newWorld(t)
	w.publish("1.0.0", 1, "release one")
	oldTS := meta(t, w.repo, "timestamp.json")
	w.advance(time.Hour)
	v2 := w.publish("2.0.0", 2, "release two")
	dev := w.device()
	mustRefresh(t, dev)

	t.Run("older metadata replayed", func(t *testing.T) {
		// oldTS is validly signed and not expired; only the version counter the device
		// cached says it is old.
		w.net.setTamper(serve("timestamp.json", oldTS))
		defer w.net.setTamper(nil)
		refused(t, dev, refresh(t, dev), "version")
	})
	t.Run("older metadata replayed after a reboot", func(t *testing.T) {
		// The cache lives in the trust directory, so a new Client on it remembers.
		w.net.setTamper(serve("timestamp.json", oldTS))
		defer w.net.setTamper(nil)
		dir := t0dir(t)
		first := w.deviceWith(w.rootJSON(), dir, w.clock)
		w.net.setTamper(nil)
		mustRefresh(t, first)
		w.net.setTamper(serve("timestamp.json", oldTS))
		again := w.deviceWith(w.rootJSON(), dir, w.clock)
		refused(t, again, refresh(t, again), "version")
	})
	t.Run("older package still listed", func(t *testing.T) {
		mustRefresh(t, dev)
		one, err := dev.Lookup("vib-1.0.0.opkg")
		if err != nil {
			t.Fatal(err)
		}
		two, err := dev.Lookup(v2)
		if err != nil {
			t.Fatal(err)
		}
		if err := dev.CheckRelease(one); err != nil {
			t.Errorf("CheckRelease(release 1) before any commit = %v", err)
		}
		if err := dev.RecordRelease(two); err != nil {
			t.Fatal(err)
		}
		if err := dev.CheckRelease(one); !errors.Is(err, trust.ErrRollback) || !strings.Contains(err.Error(), "release 1") {
			t.Errorf("CheckRelease(release 1) after committing 2 = %v, want ErrRollback", err)
		}
		if err := dev.CheckRelease(two); err != nil {
			t.Errorf("CheckRelease(release 2) after committing 2 = %v, want nil (reinstall)", err)
		}
		if err := dev.RecordRelease(one); err != nil {
			t.Fatal(err)
		}
		if err := dev.CheckRelease(one); !errors.Is(err, trust.ErrRollback) {
			t.Errorf("recording a lower release lowered the floor: CheckRelease(1) = %v", err)
		}
	})
	t.Run("release floor survives a restart", func(t *testing.T) {
		dir := t0dir(t)
		first := w.deviceWith(w.rootJSON(), dir, w.clock)
		mustRefresh(t, first)
		two, _ := first.Lookup(v2)
		if err := first.RecordRelease(two); err != nil {
			t.Fatal(err)
		}
		again := w.deviceWith(w.rootJSON(), dir, w.clock)
		mustRefresh(t, again)
		one, _ := again.Lookup("vib-1.0.0.opkg")
		if err := again.CheckRelease(one); !errors.Is(err, trust.ErrRollback) {
			t.Errorf("after restart CheckRelease(release 1) = %v, want ErrRollback", err)
		}
	})
}

// TestFreeze: the attacker (or a broken path) keeps serving the last metadata the device
// saw, so it never learns of newer packages (a fix for a flaw, say). The short-lived
// timestamp bounds how long that can go unnoticed, by the device's clock.
func TestFreeze(t *testing.T) {
	w := newWorld(t)
	w.publish("1.0.0", 1, "release one")
	dev := w.device()
	mustRefresh(t, dev)
	frozen := meta(t, w.repo, "timestamp.json")
	w.net.setTamper(serve("timestamp.json", frozen))

	w.advance(time.Hour)
	fix := w.publish("1.0.1", 2, "the fix")
	w.advance(11 * time.Hour)
	if _, err := w.repo.RefreshTimestamp(w.clock()); err != nil {
		t.Fatal(err)
	}
	// Within the timestamp's lifetime a freeze cannot be told from a quiet fleet.
	mustRefresh(t, dev)
	if _, err := dev.Lookup(fix); !errors.Is(err, trust.ErrUnknown) {
		t.Fatalf("frozen device sees the fix: %v", err)
	}
	// Past it, the device refuses to act on what it holds.
	w.advance(12*time.Hour + time.Minute)
	if _, err := w.repo.RefreshTimestamp(w.clock()); err != nil {
		t.Fatal(err)
	}
	err := refresh(t, dev)
	refused(t, dev, err, "expired")
	if !errors.Is(err, trust.ErrExpired) {
		t.Errorf("Refresh = %v, want ErrExpired", err)
	}
	// The controller kept re-signing; once the path is clear the device catches up.
	w.net.setTamper(nil)
	mustRefresh(t, dev)
	if _, err := dev.Lookup(fix); err != nil {
		t.Errorf("after the freeze Lookup(fix) = %v", err)
	}
}

// TestFreezeWithoutRTC: a device without a real-time clock boots with its clock at an old
// date. What it can detect depends on the clock floor it persists in the trust directory.
func TestFreezeWithoutRTC(t *testing.T) {
	w := newWorld(t)
	w.publish("1.0.0", 1, "release one")
	frozen := meta(t, w.repo, "timestamp.json") // expires at epoch + 24 h
	boot := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	uptime := func(d *time.Duration) func() time.Time { return func() time.Time { return boot.Add(*d) } }

	// First boot: the clock is right once (set by NTP at provisioning, say).
	dir := t0dir(t)
	first := w.deviceWith(w.rootJSON(), dir, w.clock)
	mustRefresh(t, first)
	w.net.setTamper(serve("timestamp.json", frozen))

	t.Run("detects a freeze after a day of uptime", func(t *testing.T) {
		// Power cut; the clock restarts at 1970. The floor keeps the device at epoch.
		var up time.Duration
		dev := w.deviceWith(w.rootJSON(), dir, uptime(&up))
		if got := dev.Now(); !got.Equal(epoch) {
			t.Fatalf("Now after reboot = %v, want the floor %v", got, epoch)
		}
		up = 23 * time.Hour
		mustRefresh(t, dev) // cannot tell yet
		up = 24*time.Hour + time.Minute
		refused(t, dev, refresh(t, dev), "expired")
	})
	t.Run("cannot count time spent switched off", func(t *testing.T) {
		// Switched off for two days (the frozen timestamp expired a day ago in truth) and
		// back for a minute: the device believes a minute passed since its floor.
		dir2 := t0dir(t)
		mustRefresh(t, w.deviceWith(w.rootJSON(), dir2, func() time.Time { return epoch })) // floor: epoch
		w.advance(48 * time.Hour)
		up := time.Minute
		dev := w.deviceWith(w.rootJSON(), dir2, uptime(&up))
		if err := refresh(t, dev); err != nil {
			t.Errorf("Refresh = %v; a device without an RTC cannot know it was off for two days (test premise)", err)
		}
		// A device whose clock was never right has no floor at all: 1970 is before every
		// expiry, so it cannot detect a freeze however long it runs.
		never := w.deviceWith(w.rootJSON(), t0dir(t), uptime(&up))
		up = 30 * 24 * time.Hour
		if err := refresh(t, never); err != nil {
			t.Errorf("Refresh = %v; a device whose clock was never set cannot see expiry (test premise)", err)
		}
	})
}

// TestMixAndMatch: files of different repository states combined, each validly signed.
func TestMixAndMatch(t *testing.T) {
	w := newWorld(t)
	w.publish("1.0.0", 1, "release one")
	snapA, targetsA := current(t, w.repo)
	w.publish("2.0.0", 2, "release two")
	snapB, targetsB := current(t, w.repo)
	if snapA == snapB || targetsA == targetsB {
		t.Fatalf("states not distinct: %s %s / %s %s", snapA, targetsA, snapB, targetsB)
	}
	for _, tc := range []struct {
		name, serveAs, from, want string
	}{
		{"old targets with the new snapshot", targetsB, targetsA, "targets"},
		{"old snapshot with the new timestamp", snapB, snapA, "snapshot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := w.device()
			w.net.setTamper(serve(tc.serveAs, meta(t, w.repo, tc.from)))
			defer w.net.setTamper(nil)
			refused(t, dev, refresh(t, dev), tc.want)
		})
	}
	t.Run("device asks for the versions the signed chain names", func(t *testing.T) {
		dev := w.device()
		mustRefresh(t, dev)
		for _, n := range []string{"timestamp.json", snapB, targetsB} {
			if w.net.maxLen(n) == 0 {
				t.Errorf("device never asked for %s", n)
			}
		}
	})
}

// TestEndlessData: an attacker answers with more bytes than the metadata can hold. Every
// fetch carries a limit: the signed length where metadata states one, a fixed cap where
// nothing signed does (root, timestamp).
func TestEndlessData(t *testing.T) {
	w := newWorld(t)
	w.publish("1.0.0", 1, "release one")
	snap, targets := current(t, w.repo)
	t.Run("limits asked for", func(t *testing.T) {
		dev := w.device()
		mustRefresh(t, dev)
		for n, want := range map[string]int64{
			"timestamp.json": trust.MaxTimestampBytes,
			"2.root.json":    trust.MaxRootBytes,
			snap:             int64(len(meta(t, w.repo, snap))),
			targets:          int64(len(meta(t, w.repo, targets))),
		} {
			if got := w.net.maxLen(n); got != want {
				t.Errorf("maxLen(%s) = %d, want %d", n, got, want)
			}
		}
	})
	pad := func(name string, n int) func(string, []byte, error) ([]byte, error) {
		return func(got string, d []byte, err error) ([]byte, error) {
			if got == name {
				// Whitespace keeps the JSON valid and the signature too (it covers the
				// canonical form of "signed"): only the length gives it away.
				return append(append([]byte{}, d...), []byte(strings.Repeat(" ", n))...), nil
			}
			return d, err
		}
	}
	for _, tc := range []struct {
		name      string
		tamper    func(string, []byte, error) ([]byte, error)
		noEnforce bool
		want      string
	}{
		{"endless timestamp", pad("timestamp.json", 1<<20), false, "timestamp"},
		{"endless root", pad("2.root.json", 1<<20), false, "root"},
		{"snapshot one byte longer than signed", pad(snap, 1), false, "snapshot"},
		{"endless targets, fetcher forgets the limit", pad(targets, 1<<20), true, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := w.device()
			w.net.setTamper(tc.tamper)
			w.net.mu.Lock()
			w.net.noEnforce = tc.noEnforce
			w.net.mu.Unlock()
			defer func() {
				w.net.setTamper(nil)
				w.net.mu.Lock()
				w.net.noEnforce = false
				w.net.mu.Unlock()
			}()
			refused(t, dev, refresh(t, dev), tc.want)
		})
	}
	t.Run("target longer than signed is never read", func(t *testing.T) {
		dev := w.device()
		mustRefresh(t, dev)
		tg, err := dev.Lookup("vib-1.0.0.opkg")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "big")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		// A sparse 1 GiB file: VerifyFile must refuse on its size without reading it.
		if err := f.Truncate(1 << 30); err != nil {
			t.Fatal(err)
		}
		f.Close()
		start := time.Now()
		if err := dev.VerifyFile(tg, p); !errors.Is(err, trust.ErrMismatch) || !strings.Contains(err.Error(), "signed length") {
			t.Errorf("VerifyFile(1 GiB) = %v, want a length mismatch", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("VerifyFile took %v: it read the file", d)
		}
	})
}

// TestKeyCompromise: keys leak; the key holders rotate them through a new root, and devices
// follow the chain of roots from the one they were provisioned with.
func TestKeyCompromise(t *testing.T) {
	t.Run("targets key alone cannot publish", func(t *testing.T) {
		w := newWorld(t)
		w.publish("1.0.0", 1, "release one")
		_, targetsName := current(t, w.repo)
		tm, err := metadata.Targets().FromBytes(meta(t, w.repo, targetsName))
		if err != nil {
			t.Fatal(err)
		}
		evil, _ := metadata.TargetFile().FromBytes("evil.opkg", []byte("evil"), "sha256")
		tm.Signed.Targets["evil.opkg"] = evil
		signWith(t, tm, w.targetsKey) // a valid targets signature...
		forged, _ := tm.ToBytes(false)
		dev := w.device()
		w.net.setTamper(serve(targetsName, forged))
		defer w.net.setTamper(nil)
		refused(t, dev, refresh(t, dev), "targets") // ...that the online snapshot does not vouch for
	})

	t.Run("controller compromise, then rotation of targets and online keys", func(t *testing.T) {
		w := newWorld(t)
		w.publish("1.0.0", 1, "release one")
		dir := t0dir(t)
		dev := w.deviceWith(w.rootJSON(), dir, w.clock)
		mustRefresh(t, dev)

		// The attacker copies the controller's disk (online keys included) and holds the
		// targets key: that is a full compromise, and devices believe it.
		stolen := copyRepo(t, w.repo.Dir())
		evilRepo, err := tufrepo.Open(stolen, tufrepo.Options{TargetsKeys: []ed25519.PrivateKey{w.targetsKey}, Now: w.clock})
		if err != nil {
			t.Fatal(err)
		}
		if err := evilRepo.AddTarget("evil.opkg", []byte("evil"), wire.TargetCustom{Name: "vib", Version: "6.6.6", Release: 99}); err != nil {
			t.Fatal(err)
		}
		// Fast-forward: the attacker pushes the version counters far ahead.
		for i := 0; i < 5; i++ {
			w.advance(13 * time.Hour)
			if _, err := evilRepo.RefreshTimestamp(w.clock()); err != nil {
				t.Fatal(err)
			}
		}
		w.net.setTamper(func(n string, _ []byte, _ error) ([]byte, error) { return evilRepo.Meta(n) })
		mustRefresh(t, dev)
		if _, err := dev.Lookup("evil.opkg"); err != nil {
			t.Fatalf("the compromise did not take (test premise): %v", err)
		}

		// The key holders rotate: new targets key, new online keys, root v2 signed by
		// the (uncompromised, offline) root key.
		newTargets := newKey(t)
		if err := w.repo.UpdateRoot(tufrepo.RootUpdate{TargetsKeys: []ed25519.PublicKey{newTargets.Public().(ed25519.PublicKey)}, RotateOnline: true},
			[]ed25519.PrivateKey{w.rootKey, newTargets}); err != nil {
			t.Fatal(err)
		}
		_, _ = w.repo.RefreshTimestamp(w.clock())
		// The attacker keeps serving its own metadata but cannot forge root v2's keys.
		w.net.setTamper(func(n string, d []byte, err error) ([]byte, error) {
			if strings.HasSuffix(n, ".root.json") {
				return d, err
			}
			return evilRepo.Meta(n)
		})
		refused(t, dev, refresh(t, dev), "signatures")
		// With the attacker gone, the device recovers although the attacker's timestamp
		// version is far ahead of the controller's (TUF 5.3.11, fast-forward recovery).
		w.net.setTamper(nil)
		mustRefresh(t, dev)
		if _, err := dev.Lookup("evil.opkg"); !errors.Is(err, trust.ErrUnknown) {
			t.Errorf("after rotation Lookup(evil) = %v, want ErrUnknown", err)
		}
		if _, err := dev.Lookup("vib-1.0.0.opkg"); err != nil {
			t.Errorf("after rotation Lookup(real) = %v", err)
		}
		// Publishing needs the new targets key now; the old one is revoked.
		if err := w.repo.AddTarget("vib-2.0.0.opkg", []byte("two"), wire.TargetCustom{Name: "vib", Version: "2.0.0", Release: 2}); !errors.Is(err, tufrepo.ErrNoTargetsKey) {
			t.Errorf("AddTarget with the revoked key = %v, want ErrNoTargetsKey", err)
		}
	})

	t.Run("root key rotation and a revoked root key", func(t *testing.T) {
		w := newWorld(t)
		w.publish("1.0.0", 1, "release one")
		pinned := w.rootJSON() // v1, what devices were provisioned with
		k2, k3 := newKey(t), newKey(t)
		for _, step := range []struct{ old, next ed25519.PrivateKey }{{w.rootKey, k2}, {k2, k3}} {
			u := tufrepo.RootUpdate{RootKeys: []ed25519.PublicKey{step.next.Public().(ed25519.PublicKey)}}
			if err := w.repo.UpdateRoot(u, []ed25519.PrivateKey{step.next}); err == nil {
				t.Fatal("UpdateRoot signed by the new key alone succeeded")
			}
			if err := w.repo.UpdateRoot(u, []ed25519.PrivateKey{step.old, step.next}); err != nil {
				t.Fatal(err)
			}
		}
		// A device provisioned with v1 walks v2 and v3.
		dev := w.deviceWith(pinned, t0dir(t), w.clock)
		mustRefresh(t, dev)
		if _, err := dev.Lookup("vib-1.0.0.opkg"); err != nil {
			t.Fatal(err)
		}
		// The attacker holds the revoked v1 key and forges v4 with their own key.
		attacker := newKey(t)
		v3, err := metadata.Root().FromBytes(meta(t, w.repo, "3.root.json"))
		if err != nil {
			t.Fatal(err)
		}
		v3.Signed.Version = 4
		ak, _ := metadata.KeyFromPublicKey(attacker.Public())
		aid, _ := ak.ID()
		v3.Signed.Keys[aid] = ak
		v3.Signed.Roles[metadata.ROOT].KeyIDs = []string{aid}
		signWith(t, v3, w.rootKey, attacker)
		forged, _ := v3.ToBytes(false)
		w.net.setTamper(func(n string, d []byte, err error) ([]byte, error) {
			if n == "4.root.json" {
				return forged, nil
			}
			return d, err
		})
		defer w.net.setTamper(nil)
		refused(t, dev, refresh(t, dev), "root")
	})
}

func signWith[T metadata.Roles](t *testing.T, m *metadata.Metadata[T], keys ...ed25519.PrivateKey) {
	t.Helper()
	m.ClearSignatures()
	for _, k := range keys {
		s, err := signature.LoadED25519Signer(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
}

func copyRepo(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "stolen")
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return dst
}
