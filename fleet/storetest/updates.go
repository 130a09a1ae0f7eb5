package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// runUpdates is the contract of fleet.UpdateStore.
func runUpdates(t *testing.T, newStore Factory) {
	t.Run("Models", func(t *testing.T) { testModels(t, newStore) })
	t.Run("Rollouts", func(t *testing.T) { testRollouts(t, newStore) })
	t.Run("Tags", func(t *testing.T) { testTags(t, openOne(t, newStore)) })
	t.Run("DevicePolicies", func(t *testing.T) { testDevicePolicies(t, newStore) })
}

func testModels(t *testing.T, newStore Factory) {
	ctx := context.Background()
	open := newStore(t)
	s := mustOpen(t, open)
	if ms, err := s.Models(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("Models() on an empty store = %v, %v; want none, nil", ms, err)
	}
	if _, err := s.Model(ctx, "vib", "1.0.0"); !errors.Is(err, fleet.ErrNotFound) {
		t.Fatalf("Model(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.Package(ctx, "00"); !errors.Is(err, fleet.ErrNotFound) {
		t.Fatalf("Package(unknown) error = %v, want ErrNotFound", err)
	}
	t0 := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	mk := func(name, version string, release uint64, sha string) fleet.Model {
		return fleet.Model{Name: name, Version: version, SHA256: sha, PackageSize: 3, Target: name + "-" + version + ".opkg",
			Release: release, Ops: []string{"FULLY_CONNECTED"}, MinAgentVersion: "0.1.0", Pushed: t0, Published: true,
			Manifest: []byte(`{"name":"` + name + `"}`)}
	}
	in := []fleet.Model{mk("vib", "1.1.0", 2, "bb"), mk("act", "1.0.0", 1, "cc"), mk("vib", "1.0.0", 1, "aa")}
	for _, m := range in {
		if err := s.PutModel(ctx, m, []byte("pkg"+m.SHA256)); err != nil {
			t.Fatalf("PutModel(%s@%s): %v", m.Name, m.Version, err)
		}
	}
	if err := s.PutModel(ctx, fleet.Model{Name: "x"}, nil); err == nil {
		t.Error("PutModel without version and digest = nil error, want one")
	}
	s.Close()
	s = mustOpen(t, open)
	got, err := s.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []fleet.Model{in[1], in[2], in[0]}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Models() after reopen = %+v\nwant %+v", got, want)
	}
	m, err := s.Model(ctx, "vib", "1.1.0")
	if err != nil || !reflect.DeepEqual(m, in[0]) {
		t.Fatalf("Model(vib@1.1.0) = %+v, %v", m, err)
	}
	p, err := s.Package(ctx, "bb")
	if err != nil || string(p) != "pkgbb" {
		t.Fatalf("Package(bb) = %q, %v", p, err)
	}
}

func testRollouts(t *testing.T, newStore Factory) {
	ctx := context.Background()
	open := newStore(t)
	s := mustOpen(t, open)
	if rs, err := s.Rollouts(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("Rollouts() on an empty store = %v, %v", rs, err)
	}
	if _, err := s.Rollout(ctx, "r1"); !errors.Is(err, fleet.ErrNotFound) {
		t.Fatalf("Rollout(unknown) error = %v, want ErrNotFound", err)
	}
	t0 := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	r2 := fleet.Rollout{ID: "r2", State: fleet.RolloutRunning, Created: t0.Add(time.Hour),
		Spec: fleet.RolloutSpec{Model: "vib@1.1.0", Canary: 0.1, Waves: []float64{0.5, 1}, Probation: time.Minute,
			Gates: fleet.Gates{MaxFailure: 0.02, MinShadowAgreement: 0.95}},
		Waves: []fleet.Wave{{Name: "canary", Percent: 0.1, State: fleet.WaveRunning, Devices: []fleet.RolloutDevice{
			{ID: "d1", Generation: 4, Phase: wire.PhaseProbation, Probation: &wire.ProbationStats{Windows: 9, LatencyRatio: 1.2}},
		}}}}
	r10 := fleet.Rollout{ID: "r10", State: fleet.RolloutCompleted, Created: t0.Add(2 * time.Hour)}
	r1 := fleet.Rollout{ID: "r1", State: fleet.RolloutHalted, Reason: "gate", Created: t0}
	des := []fleet.DeviceDesired{{Device: "d1", Desired: wire.Desired{V: 1, Generation: 4, Rollout: "r2",
		Model: &wire.DesiredModel{Name: "vib", Version: "1.1.0", Target: "vib-1.1.0.opkg"}, ProbationS: 60}}}
	for _, r := range []fleet.Rollout{r10, r2, r1} {
		var d []fleet.DeviceDesired
		if r.ID == "r2" {
			d = des
		}
		if err := s.PutRollout(ctx, r, d); err != nil {
			t.Fatalf("PutRollout(%s): %v", r.ID, err)
		}
	}
	if err := s.PutRollout(ctx, r1, []fleet.DeviceDesired{{Device: "bad/id"}}); err == nil {
		t.Error("PutRollout with an invalid device id = nil error, want one")
	}
	// Replace r1: the latest write wins.
	r1.Reason = "gate: failure rate 10% > 2%"
	if err := s.PutRollout(ctx, r1, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, open)
	got, err := s.Rollouts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []fleet.Rollout{r1, r2, r10}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Rollouts() after reopen = %+v\nwant %+v", got, want)
	}
	one, err := s.Rollout(ctx, "r2")
	if err != nil || !reflect.DeepEqual(one, r2) {
		t.Fatalf("Rollout(r2) = %+v, %v", one, err)
	}
	gotDes, err := s.Desired(ctx)
	if err != nil || !reflect.DeepEqual(gotDes, des) {
		t.Fatalf("Desired() = %+v, %v\nwant %+v", gotDes, err, des)
	}
}

func testTags(t *testing.T, s fleet.Store) {
	ctx := context.Background()
	if err := s.SetDeviceTags(ctx, "d1", map[string]string{"site": "north", "line": "3"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDeviceTags(ctx, "d2", map[string]string{"site": "south"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDeviceTags(ctx, "d2", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDeviceTags(ctx, "a b", map[string]string{"x": "y"}); err == nil {
		t.Error("SetDeviceTags with an invalid device id = nil error, want one")
	}
	got, err := s.DeviceTags(ctx)
	want := map[string]map[string]string{"d1": {"site": "north", "line": "3"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("DeviceTags() = %v, %v; want %v", got, err, want)
	}
}
