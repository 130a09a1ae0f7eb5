package pgstore_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/pgstore/pgtest"
	"github.com/outpost-ml/outpost/fleet/tufrepo"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// TestTUFRepoShared: a repository created on disk is imported into PostgreSQL once; two
// repositories opened on two stores (two replicas) then publish at once under the lock, each
// sees the other's targets, versions never collide, and a package is read back by offset.
func TestTUFRepoShared(t *testing.T) {
	url := pgtest.Start(t, pgtest.Options{}).NewDB(t)
	ctx := context.Background()
	_, rootKey, _ := ed25519.GenerateKey(rand.Reader)
	_, targetsKey, _ := ed25519.GenerateKey(rand.Reader)
	dir := filepath.Join(t.TempDir(), "tuf")
	if _, err := tufrepo.Init(dir, []ed25519.PrivateKey{rootKey}, []ed25519.PrivateKey{targetsKey}, tufrepo.Options{}); err != nil {
		t.Fatal(err)
	}
	var repos [2]*tufrepo.Repo
	for i := range repos {
		s, err := pgstore.Open(ctx, url, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		copied, err := tufrepo.Import(s.TUFFiles(), tufrepo.DirStorage(dir))
		if err != nil {
			t.Fatal(err)
		}
		if copied != (i == 0) {
			t.Errorf("store %d: import copied %v, want only the first", i, copied)
		}
		if repos[i], err = tufrepo.OpenStorage(s.TUFFiles(), tufrepo.Options{TargetsKeys: []ed25519.PrivateKey{targetsKey}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := repos[0].Meta("9.root.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing metadata: %v, want fs.ErrNotExist", err)
	}

	// Releases 1..8, alternating replicas, two at a time.
	pkg := func(rel int) []byte { return bytes.Repeat([]byte{byte(rel)}, 5000+rel) }
	var g errgroup.Group
	for i := range repos {
		g.Go(func() error {
			for rel := 1 + i; rel <= 8; rel += 2 {
				c := wire.TargetCustom{Name: fmt.Sprintf("m%d", i), Version: fmt.Sprintf("1.%d.0", rel), Release: uint64(rel), Ops: []string{"FULLY_CONNECTED"}}
				if err := repos[i].AddTarget(fmt.Sprintf("m-%d.opkg", rel), pkg(rel), c); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// Each replica reloads before a change, so a refresh brings it up to date; nothing is
	// due, so nothing is re-signed.
	for i, r := range repos {
		if renewed, err := r.RefreshTimestamp(time.Now()); err != nil || renewed {
			t.Fatalf("repo %d refresh: %v, %v", i, renewed, err)
		}
		st := r.Status()
		if len(st.Targets) != 8 || st.Roles[1].Version != 9 {
			t.Errorf("repo %d: %d targets at targets v%d, want 8 at v9 (one version per publication)", i, len(st.Targets), st.Roles[1].Version)
		}
	}
	// Served by either replica, by offset.
	want := pkg(5)
	sum := sha256.Sum256(want)
	ra, size, err := repos[0].Open(wire.FetchTargetPrefix + hex.EncodeToString(sum[:]) + ".m-5.opkg")
	if err != nil || size != int64(len(want)) {
		t.Fatalf("open target: %d bytes, %v", size, err)
	}
	buf := make([]byte, 4096)
	if n, err := ra.ReadAt(buf, 4096); n != len(want)-4096 || err != io.EOF || !bytes.Equal(buf[:n], want[4096:]) {
		t.Errorf("ReadAt tail: %d bytes, %v", n, err)
	}
	if n, err := ra.ReadAt(buf[:100], 10); n != 100 || err != nil || !bytes.Equal(buf[:100], want[10:110]) {
		t.Errorf("ReadAt middle: %d bytes, %v", n, err)
	}
}
