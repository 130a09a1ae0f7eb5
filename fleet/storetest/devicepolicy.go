package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// testDevicePolicies is the contract of fleet.PolicyStore.
func testDevicePolicies(t *testing.T, newStore Factory) {
	ctx := context.Background()
	open := newStore(t)
	s := mustOpen(t, open)
	if ps, err := s.DevicePolicies(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("DevicePolicies() on an empty store = %v, %v", ps, err)
	}
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	d2 := fleet.DevicePolicy{Device: "d2", Updated: t0, MonitorSettings: fleet.MonitorSettings{
		Drift: &wire.DriftOverrides{PSI: 0.4, Window: 500}}}
	d1 := fleet.DevicePolicy{Device: "d1", Updated: t0, MonitorSettings: fleet.MonitorSettings{
		Capture: &wire.CapturePolicy{Random: 0.1, LowConfidence: 1, Band: 0.05, MaxPerHour: 60}}}
	for _, p := range []fleet.DevicePolicy{d2, d1} {
		if err := s.PutDevicePolicy(ctx, p); err != nil {
			t.Fatalf("PutDevicePolicy(%s): %v", p.Device, err)
		}
	}
	// Refused whole: a bad device id, an out-of-range value.
	for _, bad := range []fleet.DevicePolicy{
		{Device: "bad/id", MonitorSettings: d1.MonitorSettings},
		{Device: "d3", MonitorSettings: fleet.MonitorSettings{Drift: &wire.DriftOverrides{KS: 2}}},
		{Device: "d3", MonitorSettings: fleet.MonitorSettings{Capture: &wire.CapturePolicy{Random: -1}}},
	} {
		if err := s.PutDevicePolicy(ctx, bad); err == nil {
			t.Errorf("PutDevicePolicy(%+v) accepted", bad)
		}
	}
	want := []fleet.DevicePolicy{d1, d2}
	if ps, err := s.DevicePolicies(ctx); err != nil || !reflect.DeepEqual(ps, want) {
		t.Fatalf("DevicePolicies() = %+v, %v; want %+v", ps, err, want)
	}
	// Replace d2, delete d1 with empty settings.
	d2.MonitorSettings = fleet.MonitorSettings{Drift: &wire.DriftOverrides{KS: 0.2}, Capture: &wire.CapturePolicy{Drift: 1, DriftHoldS: 60}}
	d2.Updated = t0.Add(time.Minute)
	if err := s.PutDevicePolicy(ctx, d2); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDevicePolicy(ctx, fleet.DevicePolicy{Device: "d1"}); err != nil {
		t.Fatal(err)
	}

	// Desired states outside a rollout: the last one given for a device wins, with its base;
	// other devices' states are untouched.
	base := &fleet.MonitorSettings{Drift: &wire.DriftOverrides{PSI: 0.3}}
	if err := s.PutRollout(ctx, fleet.Rollout{ID: "r1", State: fleet.RolloutCompleted, Created: t0},
		[]fleet.DeviceDesired{{Device: "d0", Desired: wire.Desired{V: 1, Generation: 1, Rollout: "r1"}}}); err != nil {
		t.Fatal(err)
	}
	des := []fleet.DeviceDesired{
		{Device: "d2", Desired: wire.Desired{V: 1, Generation: 1, Drift: d2.Drift, Time: t0}},
		{Device: "d2", Desired: wire.Desired{V: 1, Generation: 2, Drift: &wire.DriftOverrides{PSI: 0.3, KS: 0.2}, Capture: d2.Capture, Time: t0}, Base: base},
	}
	if err := s.PutDesired(ctx, des); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDesired(ctx, []fleet.DeviceDesired{{Device: "bad/id"}}); err == nil {
		t.Error("PutDesired accepted a bad device id")
	}
	if err := s.PutDesired(ctx, nil); err != nil {
		t.Errorf("PutDesired(nil) = %v", err)
	}
	check := func(s fleet.Store) {
		t.Helper()
		if ps, err := s.DevicePolicies(ctx); err != nil || !reflect.DeepEqual(ps, []fleet.DevicePolicy{d2}) {
			t.Fatalf("DevicePolicies() = %+v, %v; want only d2's", ps, err)
		}
		got, err := s.Desired(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantDes := []fleet.DeviceDesired{{Device: "d0", Desired: wire.Desired{V: 1, Generation: 1, Rollout: "r1"}}, des[1]}
		if !reflect.DeepEqual(got, wantDes) {
			t.Fatalf("Desired() = %+v\nwant %+v", got, wantDes)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, open)
	check(s)
}
